"""Request bodies read as they stream in, never held whole: a JSON track request parsed into arrays frame by frame
(ijson), a multipart upload written straight into its job folder — each refused (413) the moment it passes a frame,
track or size limit, and refused (507) the moment it would pass the storage cap (:class:`DiskBudget`), its partial
file removed by the caller with the job folder.

Memory: a JSON request costs its arrays (float32 positions, bool visibility) and one frame's Python objects at a time,
whatever its length; an upload costs one chunk.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import ijson
import numpy as np
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from .inputs import InputProblem

__all__ = ["DiskBudget", "DiskFull", "JsonTracks", "read_json_tracks", "read_multipart", "json_body_limit",
           "UPLOAD_PART"]

JSON_BYTES_PER_ENTRY = 96    # a track entry at its longest: "[-1234.5678901234567,-1234.5678901234567]," and "false,"
JSON_OVERHEAD = 1 << 20      # the other fields, whitespace
MAX_FIELDS = 40              # multipart fields besides the file
MAX_FIELD_BYTES = 4096       # each
MAX_FIELD_EVENTS = 1000      # parse events of a JSON member besides the arrays (intrinsics: 13)
UPLOAD_PART = "upload.part"  # the file being received, renamed once its type is known


class DiskFull(Exception):
    """The upload would take the job storage over its cap."""


class DiskBudget:
    """The storage cap shared by the uploads in flight: each adds what it writes (:meth:`add`), which raises
    :class:`DiskFull` when the stored jobs and the uploads in flight would pass ``cap_bytes``; :meth:`release` when an
    upload ends (its file is then counted with the stored jobs, or removed). The stored jobs' size is measured when
    an upload begins."""

    def __init__(self, usage, cap_bytes: int):
        self._usage, self.cap = usage, cap_bytes
        self._lock = threading.Lock()
        self._flight: dict[int, int] = {}
        self._stored = 0

    def begin(self) -> int:
        """A new upload's token; DiskFull when the storage is already over the cap."""
        stored = self._usage()
        with self._lock:
            self._stored = stored
            token = max(self._flight, default=0) + 1
            self._flight[token] = 0
            if stored + sum(self._flight.values()) > self.cap:
                del self._flight[token]
                raise DiskFull()
            return token

    def add(self, token: int, size: int) -> None:
        with self._lock:
            if self._stored + sum(self._flight.values()) + size > self.cap:
                raise DiskFull()
            self._flight[token] += size

    def release(self, token: int) -> None:
        with self._lock:
            self._flight.pop(token, None)


def json_body_limit(max_frames: int, max_tracks: int) -> int:
    """The longest JSON track request the frame and track limits allow (bytes)."""
    return max_frames * max_tracks * JSON_BYTES_PER_ENTRY + JSON_OVERHEAD


class _Outline:
    """basic_parse events → the body's outline as it streams: frames and tracks counted event by event (InputProblem
    at the first past a limit, before an item parser builds the rest of that frame), and the top-level members other
    than ``tracks`` and ``visible`` rebuilt as Python values (each at most ``MAX_FIELD_EVENTS`` events). The two
    arrays themselves are built by their own item parsers, a frame at a time."""

    def __init__(self, max_frames: int, max_tracks: int):
        self.max_frames, self.max_tracks = max_frames, max_tracks
        self.values: dict = {}
        self.depth = 0
        self.key: str | None = None
        self.builder: ijson.ObjectBuilder | None = None
        self.top_is_map: bool | None = None
        self.rows = self.entries = self.numbers = self.events = 0

    def send(self, event) -> None:
        kind, value = event
        if self.top_is_map is None:
            self.top_is_map = kind == "start_map"
        opens, closes = kind in ("start_map", "start_array"), kind in ("end_map", "end_array")
        self.depth += opens - closes
        if self.depth == 1 and kind == "map_key":
            self.key, self.builder = value, None if value in ("tracks", "visible") else ijson.ObjectBuilder()
            self.rows = self.events = 0
            return
        if self.key in ("tracks", "visible") and self.depth >= 2:
            self._count(kind)
        elif self.builder is not None and (self.depth >= 2 or not (closes and self.depth == 0)):
            self.events += 1
            if self.events > MAX_FIELD_EVENTS:
                raise InputProblem(413, f"the member '{str(self.key)[:40]}' is too large")
            self.builder.event(kind, value)
            if self.depth == 1:                      # the value ended
                self.values[self.key] = self.builder.value
                self.builder = None

    def _count(self, kind: str) -> None:
        """Frames (depth 3) and entries (depth 4 in tracks, scalars at depth 3 in visible) as they open."""
        name, depth = self.key, self.depth
        if kind == "start_array" and depth == 3:
            self.rows += 1
            self.entries = 0
            if self.rows > self.max_frames:
                raise InputProblem(413, f"too many frames: more than {self.max_frames}")
        elif (name == "tracks" and kind == "start_array" and depth == 4) or \
                (name == "visible" and depth == 3 and not kind.startswith(("start", "end"))):
            self.entries += 1
            self.numbers = 0
            if self.entries > self.max_tracks:
                raise InputProblem(413, f"too many tracks: more than {self.max_tracks}")
        elif name == "tracks" and depth == 4 and kind == "number":
            self.numbers += 1
            if self.numbers > 2:
                raise InputProblem(422, "tracks must be N×P×2: an entry holds more than [x, y]")
        if depth > (4 if name == "tracks" else 3):
            raise InputProblem(422, f"{name} must be {'N×P×2' if name == 'tracks' else 'N×P'}: nested too deep")


@dataclass
class JsonTracks:
    """A JSON track request as arrays: tracks (N, P, 2) float32 · visible (N, P) bool · fields: the other members."""

    tracks: np.ndarray
    visible: np.ndarray
    fields: dict


def _array(item) -> np.ndarray | None:
    """A parsed JSON list as an array, None when it is not a list or is ragged."""
    try:
        return np.asarray(item) if isinstance(item, list) else None
    except (ValueError, TypeError):
        return None


def _frame(item, p: int | None, max_tracks: int, index: int) -> np.ndarray:
    row = _array(item)
    if row is None or row.dtype.kind not in "fi" or row.ndim != 2 or row.shape[1] != 2:
        raise InputProblem(422, f"tracks must be N×P×2 numbers: frame {index} is not a list of [x, y] pairs")
    if row.shape[0] > max_tracks:
        raise InputProblem(413, f"too many tracks: {row.shape[0]} > {max_tracks}")
    if p is not None and row.shape[0] != p:
        raise InputProblem(422, f"tracks must hold the same P tracks in every frame: frame {index} has "
                                f"{row.shape[0]}, frame 0 has {p}")
    return row.astype(np.float32)


def _visibility(item, p: int | None, index: int) -> np.ndarray:
    row = _array(item)
    if row is None or row.ndim != 1 or row.dtype.kind not in "bi" or not np.isin(row, (0, 1)).all():
        raise InputProblem(422, f"visible must be N×P booleans: row {index} is not a list of true/false")
    if p is not None and row.shape[0] != p:
        raise InputProblem(422, f"visible must be N×P = {p} per row: row {index} has {row.shape[0]}")
    return row.astype(bool)


async def read_json_tracks(stream: AsyncIterator[bytes], max_frames: int, max_tracks: int) -> JsonTracks:
    """The JSON body of ``stream`` as :class:`JsonTracks`; InputProblem 413 as soon as it holds more frames or tracks
    than allowed, 422 when it is not JSON or not N×P×2 / N×P."""
    rows, shown, fields = ijson.sendable_list(), ijson.sendable_list(), _Outline(max_frames, max_tracks)
    parsers = [ijson.basic_parse_coro(fields, use_float=True),          # first: it refuses before a frame is built
               ijson.items_coro(rows, "tracks.item", use_float=True), ijson.items_coro(shown, "visible.item")]
    frames: list[np.ndarray] = []
    visible: list[np.ndarray] = []
    try:
        async for chunk in stream:
            if not chunk:                      # an empty chunk would tell the parsers the input ended
                continue
            for parser in parsers:
                parser.send(chunk)
            for item in rows:
                if len(frames) == max_frames:
                    raise InputProblem(413, f"too many frames: more than {max_frames}")
                frames.append(_frame(item, frames[0].shape[0] if frames else None, max_tracks, len(frames)))
            for item in shown:
                if len(visible) == max_frames:
                    raise InputProblem(413, f"too many frames: more than {max_frames}")
                visible.append(_visibility(item, visible[0].shape[0] if visible else None, len(visible)))
            del rows[:], shown[:]
        for parser in parsers:
            parser.close()
    except ijson.JSONError as exc:
        raise InputProblem(422, f"the body is not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    if not fields.top_is_map:
        raise InputProblem(422, "the body must be a JSON object with tracks and visible")
    if len(frames) < 2:
        raise InputProblem(422, "tracks must hold N ≥ 2 frames of P ≥ 1 [x, y] pairs")
    if len(visible) != len(frames) or visible[0].shape[0] != frames[0].shape[0]:
        raise InputProblem(422, f"visible must be N×P = {[len(frames), frames[0].shape[0]]}, got "
                                f"{[len(visible), visible[0].shape[0] if visible else 0]}")
    if frames[0].shape[0] == 0:
        raise InputProblem(422, "tracks must hold P ≥ 1 tracks")
    return JsonTracks(np.stack(frames), np.stack(visible), fields.values)


async def read_multipart(stream: AsyncIterator[bytes], content_type: str, folder: Path, budget: DiskBudget,
                         token: int) -> tuple[dict[str, str], Path | None]:
    """The multipart body of ``stream``: (the form fields, the ``file`` part written to ``folder``/UPLOAD_PART, or
    None without one). InputProblem 422 for a malformed body, too many or too long fields or a second file; DiskFull
    as soon as the file would pass the storage cap."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InputProblem(422, "unusable multipart body: no boundary in its Content-Type")
    fields: dict[str, str] = {}
    state = {"name": None, "header": b"", "value": b"", "headers": {}, "data": bytearray()}
    target = folder / UPLOAD_PART
    out = None

    def on_header_field(data, start, end):
        state["header"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["header"].lower()] = state["value"]
        state["header"], state["value"] = b"", b""

    def on_headers_finished():
        nonlocal out
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = params.get(b"name", b"").decode("latin-1")
        state["name"] = name
        if name == "file":
            if out is not None:
                raise InputProblem(422, "unusable multipart body: more than one field 'file'")
            out = open(target, "wb")
        elif len(fields) >= MAX_FIELDS:
            raise InputProblem(422, f"unusable multipart body: more than {MAX_FIELDS} fields")

    def on_part_data(data, start, end):
        if state["name"] == "file":
            budget.add(token, end - start)
            out.write(data[start:end])
        else:
            state["data"] += data[start:end]
            if len(state["data"]) > MAX_FIELD_BYTES:
                raise InputProblem(422, f"unusable multipart body: the field '{state['name'][:40]}' is longer "
                                        f"than {MAX_FIELD_BYTES} bytes")

    def on_part_end():
        if state["name"] not in (None, "file"):
            fields[state["name"]] = state["data"].decode("utf-8", errors="replace")
        state.update(name=None, headers={}, data=bytearray())

    parser = MultipartParser(boundary, {"on_header_field": on_header_field, "on_header_value": on_header_value,
                                        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
                                        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InputProblem(422, f"unusable multipart body: {exc}") from None
    finally:
        if out is not None:
            out.close()
    return fields, target if out is not None else None
