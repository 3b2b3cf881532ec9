"""COP3D for training (``tracks4d-train --data cop3d``): read the annotations, track every sequence once into a
cache of track files, and sample windows from them exactly as from a track folder.

Annotations come from ``ROOT/<category>/frame_annotations.jgz`` (gzipped JSON list of FrameAnnotations) or from
``ROOT/metadata.sqlite`` (tables ``frame_annots`` / ``sequence_annots``, viewpoint fields as packed float32 blobs,
image size as packed int32 (H, W)); image paths are relative to ROOT. Frames are ordered by ``frame_number``;
frames without a viewpoint are skipped and counted.

Cameras are converted to the project's conventions (OpenCV: x right, y down, z forward, world-to-camera matrices):
PyTorch3D row-vector world-to-view (``X_cam = X_world @ R + T``, +X left, +Y up) → OpenCV ``R_cv = D Rᵀ``,
``t_cv = D T`` with D = diag(−1, −1, 1);
NDC intrinsics → pixel K with pixel centres at integer coordinates (PyTorch3D's NDC ±1 are the image edges, so the
principal point is ``size/2 − p·scale − 0.5``).
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import cv2
import numpy as np
from tqdm import tqdm

from tracks4d.contracts import ContractError, GroundTruth, TrackSet
from tracks4d.geometry import pose_matrix
from tracks4d.tracking import TrackerConfig, track_clip
from tracks4d.io.video import Clip

from .datasets import ClipDataset, DatasetError, register_dataset

__all__ = ["Cop3dError", "Cop3dFrame", "Cop3dSequence", "Cop3dIndex", "Cop3dCache", "Cop3dDataset",
           "INTRINSICS_FORMATS", "ndc_to_pixel_intrinsics", "rescale_intrinsics", "pytorch3d_to_opencv",
           "read_cop3d", "track_sequence", "cache_sequences"]

INTRINSICS_FORMATS = ("ndc_isotropic", "ndc_norm_image_bounds")
_FLIP_XY = np.diag([-1.0, -1.0, 1.0])


class Cop3dError(ValueError):
    """One sequence (or one metadata file) is unusable; the message names the file or frame and the problem."""


@dataclass(frozen=True)
class Cop3dFrame:
    """One annotated frame. image: absolute path · image_size: (W, H) · intrinsics: (3, 3) float64 pixel K in this
    frame's own size · world_to_camera: (4, 4) float64 OpenCV."""

    frame_number: int
    image: Path
    image_size: tuple[int, int]
    intrinsics: np.ndarray
    world_to_camera: np.ndarray


@dataclass(frozen=True)
class Cop3dSequence:
    """The usable frames of one sequence, ordered by frame number; ``null_viewpoints`` frames had no camera."""

    category: str
    name: str
    frames: tuple[Cop3dFrame, ...]
    null_viewpoints: int = 0

    @property
    def key(self) -> str:
        return f"{self.category}/{self.name}"


@dataclass
class Cop3dIndex:
    """What the annotations hold: usable sequences and one line per skipped sequence or metadata file."""

    root: Path
    source: str
    sequences: list[Cop3dSequence]
    problems: list[str] = field(default_factory=list)

    @property
    def null_viewpoints(self) -> int:
        return sum(s.null_viewpoints for s in self.sequences)


# --------------------------------------------------------------------------------------------- conversions
def ndc_to_pixel_intrinsics(focal_length, principal_point, intrinsics_format: str,
                            image_size: tuple[int, int]) -> np.ndarray:
    """PyTorch3D NDC focal length (2,) and principal point (2,) → (3, 3) float64 pixel K for an image of
    ``image_size`` = (W, H). ``ndc_isotropic`` scales both axes by min(W, H)/2, ``ndc_norm_image_bounds`` x by W/2
    and y by H/2."""
    half = np.asarray(image_size, dtype=np.float64) / 2.0
    if intrinsics_format == "ndc_isotropic":
        scale = np.full(2, half.min())
    elif intrinsics_format == "ndc_norm_image_bounds":
        scale = half
    else:
        raise Cop3dError(f"unknown intrinsics_format {intrinsics_format!r} "
                         f"(expected {' or '.join(INTRINSICS_FORMATS)})")
    f = np.asarray(focal_length, dtype=np.float64) * scale
    c = half - np.asarray(principal_point, dtype=np.float64) * scale - 0.5
    return np.array([[f[0], 0.0, c[0]], [0.0, f[1], c[1]], [0.0, 0.0, 1.0]])


def rescale_intrinsics(intrinsics: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) K of an image of ``from_size`` (W, H) → K of the same image resized to ``to_size``."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    k = np.array(intrinsics, dtype=np.float64)
    k[0] *= sx
    k[1] *= sy
    k[0, 2] += 0.5 * sx - 0.5
    k[1, 2] += 0.5 * sy - 0.5
    return k


def pytorch3d_to_opencv(R, T) -> np.ndarray:
    """PyTorch3D world-to-view R (3, 3), T (3,) (``X_cam = X_world @ R + T``) → (4, 4) float64 OpenCV
    world_to_camera."""
    R = np.asarray(R, dtype=np.float64)
    return pose_matrix(_FLIP_XY @ R.T, _FLIP_XY @ np.asarray(T, dtype=np.float64))


# --------------------------------------------------------------------------------------------- annotations
def _vector(value, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise Cop3dError(f"viewpoint.{name} has shape {arr.shape}, expected {shape}")
    if not np.isfinite(arr).all():
        raise Cop3dError(f"viewpoint.{name} holds NaN/inf")
    return arr


def _frame(root: Path, record: Mapping) -> tuple[int, Cop3dFrame | None]:
    """One FrameAnnotation (dict) → (frame_number, frame), frame None when the viewpoint is null."""
    number = record.get("frame_number", "?")
    try:
        number = int(record["frame_number"])
        h, w = (int(v) for v in record["image"]["size"])
        if w <= 0 or h <= 0:
            raise Cop3dError(f"image.size must be positive, got [H, W] = [{h}, {w}]")
        path = root / str(record["image"]["path"])
        vp = record.get("viewpoint")
        if vp is None:
            return number, None
        R = _vector(vp["R"], (3, 3), "R")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-3):
            raise Cop3dError("viewpoint.R is not a rotation")
        focal = _vector(vp["focal_length"], (2,), "focal_length")
        if (focal <= 0).any():
            raise Cop3dError(f"viewpoint.focal_length must be positive, got {focal.tolist()}")
        k = ndc_to_pixel_intrinsics(focal, _vector(vp["principal_point"], (2,), "principal_point"),
                                    vp.get("intrinsics_format", "ndc_norm_image_bounds"), (w, h))
        return number, Cop3dFrame(number, path, (w, h), k, pytorch3d_to_opencv(R, _vector(vp["T"], (3,), "T")))
    except KeyError as exc:
        raise Cop3dError(f"frame {number}: missing field {exc}") from None
    except (Cop3dError, TypeError, ValueError) as exc:
        raise Cop3dError(f"frame {number}: {exc}") from None


def _sequence(root: Path, category: str, name: str, records: Iterable[Mapping]) -> Cop3dSequence:
    parsed = sorted((_frame(root, r) for r in records), key=lambda item: item[0])
    repeated = [a for (a, _), (b, _) in zip(parsed, parsed[1:]) if a == b]
    if repeated:
        raise Cop3dError(f"frame_number {repeated[0]} appears more than once")
    frames = tuple(f for _, f in parsed if f is not None)
    if len(frames) < 2:
        raise Cop3dError(f"{len(frames)} of {len(parsed)} frames have a viewpoint; at least 2 needed")
    return Cop3dSequence(category, name, frames, len(parsed) - len(frames))


def _read_jgz(path: Path) -> list:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            records = json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Cop3dError(f"{path}: cannot read gzipped JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "sequence_name" in r for r in records):
        raise Cop3dError(f"{path}: expected a JSON list of frame annotations with 'sequence_name'")
    return records


def _jgz_groups(root: Path, categories: list[str] | None, problems: list[str]) -> dict[tuple[str, str], list]:
    """(category, sequence) → frame annotation dicts, from ``ROOT/<category>/frame_annotations.jgz``."""
    available = sorted(p.parent.name for p in root.glob("*/frame_annotations.jgz"))
    groups: dict[tuple[str, str], list] = {}
    for category in _chosen(categories, available, root):
        path = root / category / "frame_annotations.jgz"
        try:
            records = _read_jgz(path)
        except Cop3dError as exc:
            problems.append(f"{category}: category skipped: {exc}")
            continue
        for r in records:
            groups.setdefault((category, str(r["sequence_name"])), []).append(r)
    return groups


_SQL_FRAMES = (
    "SELECT s.category, f.sequence_name, f.frame_number, f._image_path, f._image_size, f._viewpoint_R, "
    "f._viewpoint_T, f._viewpoint_focal_length, f._viewpoint_principal_point, f._viewpoint_intrinsics_format "
    "FROM frame_annots f JOIN sequence_annots s ON s.sequence_name = f.sequence_name")


def _unpack(blob, fmt: str, count: int, name: str) -> list:
    """A packed little-endian blob of ``count`` values ('f' float32, 'i' int32) → list."""
    if not isinstance(blob, bytes) or len(blob) != 4 * count:
        size = len(blob) if isinstance(blob, bytes) else type(blob).__name__
        raise Cop3dError(f"{name}: expected {count} packed {'float32' if fmt == 'f' else 'int32'} values, got {size}")
    return list(struct.unpack(f"<{count}{fmt}", blob))


def _sql_record(row: tuple) -> dict:
    """A ``frame_annots`` row → the FrameAnnotation dict that ``frame_annotations.jgz`` would hold."""
    _, sequence, number, path, size, R, T, focal, principal, fmt = row
    record = {"sequence_name": sequence, "frame_number": number,
              "image": {"path": path, "size": _unpack(size, "i", 2, f"frame {number}: _image_size")},
              "viewpoint": None}
    if R is not None:
        record["viewpoint"] = {
            "R": np.reshape(_unpack(R, "f", 9, f"frame {number}: _viewpoint_R"), (3, 3)),
            "T": _unpack(T, "f", 3, f"frame {number}: _viewpoint_T"),
            "focal_length": _unpack(focal, "f", 2, f"frame {number}: _viewpoint_focal_length"),
            "principal_point": _unpack(principal, "f", 2, f"frame {number}: _viewpoint_principal_point"),
            "intrinsics_format": fmt or "ndc_norm_image_bounds"}
    return record


def _sqlite_groups(path: Path, categories: list[str] | None) -> dict[tuple[str, str], list]:
    """(category, sequence) → raw ``frame_annots`` rows of ``metadata.sqlite`` (decoded later, per sequence)."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as con:
            available = [c for (c,) in con.execute("SELECT DISTINCT category FROM sequence_annots ORDER BY 1")]
            chosen = _chosen(categories, available, path)
            rows = con.execute(f"{_SQL_FRAMES} WHERE s.category IN ({','.join('?' * len(chosen))})",
                               chosen).fetchall()
    except sqlite3.DatabaseError as exc:
        raise DatasetError(f"{path}: not a readable COP3D metadata.sqlite ({exc})") from None
    groups: dict[tuple[str, str], list] = {}
    for row in rows:
        groups.setdefault((row[0], row[1]), []).append(row)
    return groups


def _chosen(categories: list[str] | None, available: list[str], where: Path) -> list[str]:
    if not available:
        raise DatasetError(f"{where}: holds no COP3D categories")
    unknown = sorted(set(categories or ()) - set(available))
    if unknown:
        raise DatasetError(f"{where}: no category {', '.join(unknown)} (has: {', '.join(available)})")
    return sorted(set(categories)) if categories else available


def _set_list_sequences(path: Path, split: str) -> set[str]:
    """Names of the sequences with a frame in ``split`` of a set-list JSON ({split: [[sequence, frame, path], …]})."""
    try:
        lists = json.loads(Path(path).read_text())
        return {str(entry[0]) for entry in lists[split]}
    except KeyError:
        raise DatasetError(f"{path}: no split {split!r} (has: {', '.join(lists)})") from None
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise DatasetError(f"{path}: not a set-list JSON ({type(exc).__name__}: {exc})") from None


def read_cop3d(root: str | Path, categories: list[str] | None = None, *, source: str = "auto",
               set_list: str | Path | None = None, split: str = "train") -> Cop3dIndex:
    """Index a COP3D folder: usable sequences (sorted by category, name) and one line per skipped one.

    source: "jgz", "sqlite" or "auto" (per-category jgz files when present, else ``metadata.sqlite``) ·
    set_list: optional set-list JSON; only sequences with a frame in ``split`` are kept (with all their frames).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--root {root}: not a folder")
    if source == "auto":
        source = "jgz" if any(root.glob("*/frame_annotations.jgz")) else "sqlite"
    problems: list[str] = []
    if source == "jgz":
        groups, parse, meta = _jgz_groups(root, categories, problems), dict, "{}/frame_annotations.jgz"
    elif source == "sqlite":
        db = root / "metadata.sqlite"
        if not db.is_file():
            raise DatasetError(f"--root {root}: no COP3D metadata (neither <category>/frame_annotations.jgz "
                               f"nor metadata.sqlite)")
        groups, parse, meta = _sqlite_groups(db, categories), _sql_record, "metadata.sqlite"
    else:
        raise ValueError(f"source must be 'auto', 'jgz' or 'sqlite', got {source!r}")
    keep = None if set_list is None else _set_list_sequences(Path(set_list), split)
    sequences = []
    for (category, name), records in sorted(groups.items()):
        if keep is not None and name not in keep:
            continue
        try:
            sequences.append(_sequence(root, category, name, [parse(r) for r in records]))
        except Cop3dError as exc:
            problems.append(f"{category}/{name}: skipped: {exc} (in {meta.format(category)})")
    return Cop3dIndex(root, source, sequences, problems)


# --------------------------------------------------------------------------------------------- tracking + cache
def _working_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    s = min(1.0, long_side / max(size))
    return max(1, round(size[0] * s)), max(1, round(size[1] * s))


def _load_frames(seq: Cop3dSequence, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames of ``seq``, each resized to ``size`` = (W, H)."""
    out = np.empty((len(seq.frames), size[1], size[0], 3), np.uint8)
    for i, frame in enumerate(seq.frames):
        if not frame.image.is_file():
            raise Cop3dError(f"{frame.image}: missing image")
        bgr = cv2.imread(str(frame.image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise Cop3dError(f"{frame.image}: not a readable image")
        h, w = bgr.shape[:2]
        if (w, h) != frame.image_size:
            raise Cop3dError(f"{frame.image}: image is {w}x{h}, its annotation says "
                             f"{frame.image_size[0]}x{frame.image_size[1]}")
        if (w, h) != size:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return out


def track_sequence(seq: Cop3dSequence, config: TrackerConfig = TrackerConfig(), long_side: int = 640) -> TrackSet:
    """Track one sequence with the built-in tracker at a working resolution (long side ≤ ``long_side``).

    Returns tracks (N, P, 2) in the first frame's pixels, per-frame intrinsics (N, 3, 3) for frames resized to the
    first frame's size, image_size (W, H) of the first frame, and the COP3D cameras as ground truth."""
    size = seq.frames[0].image_size
    frames = _load_frames(seq, _working_size(size, long_side))
    clip = Clip(frames, np.array([f.frame_number for f in seq.frames]), None, size)
    try:
        tracked = track_clip(clip, config)
    except ValueError as exc:
        raise Cop3dError(f"tracking failed ({exc})") from None
    intrinsics = np.stack([rescale_intrinsics(f.intrinsics, f.image_size, size) for f in seq.frames])
    cameras = GroundTruth(world_to_camera=np.stack([f.world_to_camera for f in seq.frames]))
    return TrackSet(tracked.tracks, tracked.visible, intrinsics, tracked.image_size, tracked.query_frame, cameras,
                    source=seq.key)


@dataclass
class Cop3dCache:
    """Result of :func:`cache_sequences`: the usable clips with their files, how many were tracked now and how
    many came from the cache, and one line per skipped sequence."""

    clips: list[TrackSet]
    files: list[Path]
    tracked: int = 0
    reused: int = 0
    problems: list[str] = field(default_factory=list)


def cache_path(cache_dir: Path, seq: Cop3dSequence) -> Path:
    """Where the track file of ``seq`` lives: ``CACHE/<category>/<sequence>.npz``."""
    return Path(cache_dir) / seq.category / f"{seq.name}.npz"


def _cached(path: Path, seq: Cop3dSequence) -> TrackSet | None:
    """The cached track set of ``seq`` when a complete one for the same frames is there, else None."""
    if not path.is_file():
        return None
    try:
        clip = TrackSet.load(path)
    except ContractError:
        return None
    return clip if clip.n_frames == len(seq.frames) else None


def cache_sequences(index: Cop3dIndex, cache_dir: str | Path, config: TrackerConfig = TrackerConfig(),
                    long_side: int = 640, progress: bool = True) -> Cop3dCache:
    """Track every sequence of ``index`` that has no usable cache file yet and write it atomically (a partially
    written file is never picked up; an unreadable or stale one is tracked again). A damaged sequence is reported
    on stderr and skipped."""
    cache_dir = Path(cache_dir)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"{cache_dir}: cannot create the track cache ({exc}); choose another with --cache") from None
    result = Cop3dCache([], [])
    for seq in tqdm(index.sequences, desc="COP3D tracking", unit="seq", disable=not progress):
        path = cache_path(cache_dir, seq)
        clip = _cached(path, seq)
        if clip is not None:
            result.reused += 1
        else:
            try:
                clip = track_sequence(seq, config, long_side)
            except Cop3dError as exc:
                result.problems.append(f"{seq.key}: skipped: {exc}")
                tqdm.write(f"warning: COP3D {result.problems[-1]}", file=sys.stderr)
                continue
            try:
                clip.save(path)
            except OSError as exc:
                raise DatasetError(f"{path}: cannot write the track cache ({exc})") from None
            result.tracked += 1
        result.clips.append(clip)
        result.files.append(path)
    return result


class Cop3dDataset(ClipDataset):
    """COP3D sequences tracked once into ``cache_dir`` (default ``ROOT/.tracks4d_cache``); windows are sampled as
    by :class:`ClipDataset`. ``index`` and ``cache`` say what was read, tracked, reused and skipped."""

    def __init__(self, root: str | Path, categories: list[str] | None = None, *, cache_dir: str | Path | None = None,
                 source: str = "auto", set_list: str | Path | None = None, split: str = "train",
                 config: TrackerConfig = TrackerConfig(), long_side: int = 640, progress: bool = True):
        root = Path(root)
        self.index = read_cop3d(root, categories, source=source, set_list=set_list, split=split)
        for line in self.index.problems:
            print(f"warning: COP3D {line}", file=sys.stderr)
        self.cache = cache_sequences(self.index, root / ".tracks4d_cache" if cache_dir is None else Path(cache_dir),
                                     config, long_side, progress)
        super().__init__(self.cache.clips)
        self.skipped = self.index.problems + self.cache.problems
        if not self.clips:
            first = f"; first: {self.skipped[0]}" if self.skipped else ""
            raise DatasetError(f"--root {root}: no usable COP3D sequence ({len(self.skipped)} skipped{first})")
        print(f"COP3D {root} ({self.index.source}): {len(self.clips)} sequences ({self.cache.tracked} tracked now, "
              f"{self.cache.reused} from the cache), {len(self.skipped)} skipped, "
              f"{self.index.null_viewpoints} frames without a viewpoint left out", flush=True)


@register_dataset("cop3d")
def _cop3d(args) -> Cop3dDataset:
    if not getattr(args, "root", None):
        raise DatasetError("--data cop3d needs --root DIR (a COP3D folder)")
    categories = getattr(args, "categories", None)
    names = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    return Cop3dDataset(args.root, names, cache_dir=getattr(args, "cache", None),
                        progress=not getattr(args, "no_progress", False))
