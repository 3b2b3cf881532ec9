"""What a request brings: the uploaded file's type from its first bytes (never its name), size limits, and checks
of track arrays and videos before a job is queued. Problems raise :class:`InputProblem` (an HTTP status and a
message naming the problem)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from tracks4d.contracts import TrackSet
from tracks4d.io.video import VideoError, probe_video, read_video

from .schemas import MAX_IMAGE_SIDE
from .settings import Settings

__all__ = ["InputProblem", "sniff", "check_tracks", "check_track_file", "check_video", "tracks_from_arrays"]


class InputProblem(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sniff(head: bytes) -> str | None:
    """'npz', or a video container suffix ('.mp4', '.webm', '.avi', '.mpg'), from a file's first bytes; None for
    anything else."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head[4:8] == b"ftyp":
        return ".mp4"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return ".webm"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return ".mpg"
    return None


def _check_counts(n: int, p: int, settings: Settings) -> None:
    if n > settings.max_frames:
        raise InputProblem(413, f"too many frames: {n} > {settings.max_frames}")
    if p > settings.max_tracks:
        raise InputProblem(413, f"too many tracks: {p} > {settings.max_tracks}")


def _check_finite(xy: np.ndarray, visible: np.ndarray) -> None:
    bad = ~np.isfinite(xy).all(-1) & visible
    if bad.any():
        t, i = np.argwhere(bad)[0]
        raise InputProblem(422, f"tracks hold NaN or inf at {int(bad.sum())} visible entries "
                                f"(first: frame {t}, track {i})")


def check_tracks(tracks: TrackSet, settings: Settings) -> TrackSet:
    """Frame and track counts within the limits, every visible position finite, an image size and intrinsics that a
    camera could have."""
    _check_counts(tracks.n_frames, tracks.n_points, settings)
    _check_finite(tracks.tracks, tracks.visible)
    if tracks.image_size is not None:
        size = np.asarray(tracks.image_size, dtype=np.float64)
        if size.shape != (2,) or not ((size >= 1) & (size <= MAX_IMAGE_SIDE)).all():
            raise InputProblem(422, f"image_size must be [W, H] between 1 and {MAX_IMAGE_SIDE} pixels")
    if tracks.intrinsics is not None:
        k = np.asarray(tracks.intrinsics, dtype=np.float64)
        if not np.isfinite(k).all() or not (np.abs(k) < 1e7).all():
            raise InputProblem(422, "intrinsics must be finite pixel values (|K| < 1e7)")
    return tracks


TRACK_MEMBERS = ("tracks", "visible", "intrinsics", "image_size", "query_frame",
                 "pred_tracks", "pred_visibility", "started_at", "Ks_all")
"""The members of a track .npz the service reads (our layout and the official one); any other is never unpacked."""


def _read_header(fh) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran order) of an open ``.npy`` stream, left at the start of its data."""
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(fh)
    return shape, dtype, fortran


def _member_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran order) from a ``.npy`` member's header alone — no data is unpacked."""
    with archive.open(info) as fh:
        return _read_header(fh)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shape, dtype: np.dtype, fortran: bool,
                 name: str) -> np.ndarray:
    """The member's array, unpacking no more than its header announces (a bomb stops there)."""
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with archive.open(info) as fh:
        _read_header(fh)
        data = fh.read(size + 1)
    if len(data) != size:
        raise InputProblem(422, f"not a usable track file: the array '{name}' is truncated or corrupt "
                                f"({len(data)} bytes of data for shape {list(shape)} {dtype})")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")


def _budget(settings: Settings) -> int:
    """Bytes the named members may unpack to at the limits: float64 tracks, visibility, per-frame K and a track
    index each, plus headers."""
    n, p = settings.max_frames, settings.max_tracks
    return n * p * (2 * 8 + 8) + n * 9 * 8 + p * 8 + 4096


def check_track_file(path: Path, settings: Settings) -> TrackSet:
    """The upload as a checked :class:`TrackSet`. Only the :data:`TRACK_MEMBERS` are read; their ``.npy`` headers
    (shape × dtype) are checked against the frame and track limits before anything is unpacked, and the total
    against what those limits allow."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise InputProblem(422, "not a usable track file: not a zip archive (.npz)") from None
    with archive:
        members = {Path(i.filename).stem: i for i in archive.infolist()
                   if i.filename.endswith(".npy") and Path(i.filename).stem in TRACK_MEMBERS}
        headers = {}
        try:
            for name, info in members.items():
                headers[name] = _member_header(archive, info)
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise InputProblem(422, f"not a usable track file: the array '{name}' has no valid .npy header "
                                    f"({type(exc).__name__})") from None
        for name, (shape, dtype, _) in headers.items():
            if dtype.hasobject:
                raise InputProblem(422, f"not a usable track file: the array '{name}' holds Python objects "
                                        "(needs pickle), refused")
        main = headers.get("tracks") or headers.get("pred_tracks")
        if main is not None and len(main[0]) >= 3:
            frames, tracks = main[0][-3], main[0][-2]
            _check_counts(frames, tracks, settings)
        total = sum(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype, _ in headers.values())
        if total > _budget(settings):
            raise InputProblem(413, f"the track file's arrays unpack to {total / 2**20:.1f} MB, over the "
                                    f"{_budget(settings) / 2**20:.1f} MB that {settings.max_frames} frames × "
                                    f"{settings.max_tracks} tracks need")
        try:
            arrays = {name: _read_member(archive, members[name], *headers[name], name) for name in headers}
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
            raise InputProblem(422, f"not a usable track file: a corrupt archive ({type(exc).__name__})") from None
    try:
        tracks = TrackSet.from_arrays(arrays, "upload")
    except ValueError as exc:
        raise InputProblem(422, f"not a usable track file: {exc}") from None
    return check_tracks(tracks, settings)


def tracks_from_arrays(xy: np.ndarray, visible: np.ndarray, intrinsics, image_size, settings: Settings) -> TrackSet:
    """A checked :class:`TrackSet` from a JSON request's arrays (tracks N×P×2, visible N×P) and its optional
    intrinsics (3×3) and image_size ([W, H]), already validated as lists."""
    k = None if intrinsics is None else np.asarray(intrinsics, dtype=np.float64)
    size = None if image_size is None else np.asarray(image_size, dtype=np.int64)
    _check_finite(xy, visible)                          # before the unseen entries are zeroed
    try:
        tracks = TrackSet(np.nan_to_num(xy).astype(np.float32), visible, k, size, source="request")
    except ValueError as exc:
        raise InputProblem(422, str(exc)) from None
    return check_tracks(tracks, settings)


def check_video(path: Path, settings: Settings, max_frames: int | None, stride: int) -> int:
    """Frames the job will reconstruct; the video must open and decode its first frame."""
    limit = settings.max_frames * stride if max_frames is None else max_frames * stride
    try:
        info = probe_video(path, count_limit=limit)  # a header without a count: demuxed up to the limit, no more
        read_video(path, max_frames=1, long_side=64)
    except VideoError as exc:
        raise InputProblem(422, f"undecodable video: {str(exc).replace(str(path), 'upload')}") from None
    n = -(-info.n_frames // stride)
    if max_frames is not None:
        n = min(n, max_frames)
    if n > settings.max_frames:
        raise InputProblem(413, f"too many frames: {n} > {settings.max_frames} (send max_frames or stride)")
    if n < 2:
        raise InputProblem(422, f"the video has {n} frame; need at least 2")
    return n
