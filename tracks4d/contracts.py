"""Data contracts: :class:`TrackSet` (the input) and :class:`Reconstruction` (the output).

Both validate on construction and round-trip through ``.npz`` files exactly as the README's *Files* section fixes them.
Every problem raises :class:`ContractError` with one line naming the source, the field and the problem.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .geometry.transforms import invert_rigid

__all__ = ["ContractError", "GroundTruth", "TrackSet", "Cameras", "Reconstruction", "load_any", "min_visible_frames"]


def min_visible_frames(n_frames: int) -> int:
    """A usable track is visible in MORE than this many frames: 10 (the paper), or N // 2 for clips of ≤ 20 frames."""
    return 10 if n_frames > 20 else n_frames // 2


def hold_nearest(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """values (N, P, …) with the entries not ``known`` (N, P) replaced by the nearest earlier known one of their
    column (the first known one before it; unchanged where a column knows none) — how invisible track entries are
    held."""
    n = values.shape[0]
    frame = np.arange(n)[:, None]
    earlier = np.maximum.accumulate(np.where(known, frame, -1), axis=0)
    later = np.flip(np.minimum.accumulate(np.flip(np.where(known, frame, n), 0), axis=0), 0)
    source = np.where(earlier >= 0, earlier, np.where(later < n, later, frame))
    return np.take_along_axis(values, source.reshape(source.shape + (1,) * (values.ndim - 2)), axis=0)


class ContractError(ValueError):
    """A track or reconstruction file (or array) breaks its contract."""


def _fail(source: str, name: str, problem: str) -> ContractError:
    return ContractError(f"{source}: field '{name}': {problem}")


def _array(value: Any, name: str, source: str, kind: str, shape: tuple, *, finite: bool = True) -> np.ndarray:
    """Check one array against a dtype kind ('f' float, 'b' bool, 'i' integer) and a shape.

    ``shape`` holds ints (exact) or None (any size) per axis.
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise _fail(source, name, f"cannot be read as an array ({exc})") from None
    if arr.dtype == object:
        raise _fail(source, name, "is ragged or not numeric")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise _fail(source, name, f"expected shape {want}, got {tuple(arr.shape)}")
    if kind == "f":
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise _fail(source, name, f"expected a float array, got dtype {arr.dtype}")
        if finite and arr.size and not np.isfinite(arr).all():
            raise _fail(source, name, f"contains {int((~np.isfinite(arr)).sum())} NaN/inf values")
    elif kind == "b":
        if arr.dtype != np.bool_:
            if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
                raise _fail(source, name, f"expected a boolean array, got dtype {arr.dtype}")
            if arr.size and not np.isin(arr, (0, 1)).all():
                raise _fail(source, name, "expected booleans (0/1), got other values")
            arr = arr.astype(bool)
    elif kind == "i":
        if not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and arr.size and np.isfinite(arr).all() and (arr == np.round(arr)).all():
                arr = arr.astype(np.int64)
            else:
                raise _fail(source, name, f"expected an integer array, got dtype {arr.dtype}")
    return arr


def _intrinsics(value: Any, n_frames: int, source: str, name: str = "intrinsics") -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 2:
        arr = _array(arr, name, source, "f", (3, 3)).astype(np.float64)
    else:
        arr = _array(arr, name, source, "f", (n_frames, 3, 3)).astype(np.float64)
    k = arr.reshape(-1, 3, 3)
    if not np.allclose(k[:, 2], [0.0, 0.0, 1.0]) or not np.allclose(k[:, 1, 0], 0.0):
        raise _fail(source, name, "last row must be [0, 0, 1] and K[1,0] must be 0 (pixel intrinsics)")
    if (k[:, 0, 0] <= 0).any() or (k[:, 1, 1] <= 0).any():
        raise _fail(source, name, "focal lengths fx, fy must be positive")
    return arr


@dataclass(frozen=True)
class GroundTruth:
    """Optional ground truth carried with a track set (synthetic scenes, the official layout).

    world_to_camera: (N, 4, 4) float64 OpenCV · depth: (N, P) float64 camera-frame z (0 = unknown) ·
    dynamic: (N, P) bool, True where the track lies on a moving object (the official ``GT_mask_tracks_all``).
    """

    world_to_camera: np.ndarray | None = None
    depth: np.ndarray | None = None
    dynamic: np.ndarray | None = None

    def validate(self, n_frames: int, n_points: int, source: str) -> "GroundTruth":
        w2c = depth = dyn = None
        if self.world_to_camera is not None:
            w2c = _array(self.world_to_camera, "gt_world_to_camera", source, "f", (n_frames, None, 4))
            if w2c.shape[1] == 3:  # (N,3,4) as the official Ms_all
                bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), (n_frames, 1, 4))
                w2c = np.concatenate([w2c, bottom], axis=1)
            if w2c.shape[1] != 4:
                raise _fail(source, "gt_world_to_camera", f"expected shape (N, 4, 4) or (N, 3, 4), got {w2c.shape}")
            w2c = w2c.astype(np.float64)
        if self.depth is not None:
            depth = _array(self.depth, "gt_depth", source, "f", (n_frames, n_points)).astype(np.float64)
        if self.dynamic is not None:
            dyn = _array(self.dynamic, "gt_dynamic", source, "b", (n_frames, n_points))
        return GroundTruth(w2c, depth, dyn)


@dataclass(frozen=True)
class TrackSet:
    """2D point tracks of one clip.

    tracks: (N, P, 2) float32 pixels · visible: (N, P) bool · intrinsics: (3, 3) or (N, 3, 3) float64 or None ·
    image_size: (2,) int (W, H) or None · query_frame: (P,) int64 frame each track was seeded in, or None ·
    ground_truth: optional :class:`GroundTruth` · confidence: (N, P) float32 in [0, 1], how far to trust each
    entry (trackers fill it: :func:`~tracks4d.tracking.lk.entry_confidence`), or None (trust every visible entry).
    Invisible entries may hold any finite value; they carry no information.
    """

    tracks: np.ndarray
    visible: np.ndarray
    intrinsics: np.ndarray | None = None
    image_size: np.ndarray | None = None
    query_frame: np.ndarray | None = None
    ground_truth: GroundTruth | None = None
    source: str = field(default="TrackSet", compare=False, repr=False)
    confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        src = self.source
        tracks = _array(self.tracks, "tracks", src, "f", (None, None, 2))
        n, p = tracks.shape[:2]
        if n < 2:
            raise _fail(src, "tracks", f"needs at least 2 frames, got {n}")
        if p < 1:
            raise _fail(src, "tracks", "holds no tracks (P = 0)")
        visible = _array(self.visible, "visible", src, "b", (n, p))
        if not visible.any():
            raise _fail(src, "visible", "no entry is visible")
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("tracks", tracks.astype(np.float32))
        set_("visible", visible.astype(bool))
        if self.intrinsics is not None:
            set_("intrinsics", _intrinsics(self.intrinsics, n, src))
        if self.image_size is not None:
            size = _array(self.image_size, "image_size", src, "i", (2,)).astype(np.int64)
            if (size <= 0).any():
                raise _fail(src, "image_size", f"(W, H) must be positive, got {tuple(size)}")
            set_("image_size", size)
        if self.query_frame is not None:
            q = _array(self.query_frame, "query_frame", src, "i", (p,)).astype(np.int64)
            if ((q < 0) | (q >= n)).any():
                raise _fail(src, "query_frame", f"values must lie in [0, {n - 1}]")
            set_("query_frame", q)
        if self.ground_truth is not None:
            set_("ground_truth", self.ground_truth.validate(n, p, src))
        if self.confidence is not None:
            conf = _array(self.confidence, "confidence", src, "f", (n, p))
            if conf.size and ((conf < 0) | (conf > 1)).any():
                raise _fail(src, "confidence", "values must lie in [0, 1]")
            set_("confidence", conf.astype(np.float32))

    def entry_confidence(self) -> np.ndarray:
        """(N, P) float32: each entry's confidence (1 where the set has none), 0 where it is not visible."""
        conf = np.ones(self.visible.shape, np.float32) if self.confidence is None else self.confidence
        return np.where(self.visible, conf, 0.0).astype(np.float32)

    @property
    def n_frames(self) -> int:
        return int(self.tracks.shape[0])

    @property
    def n_points(self) -> int:
        return int(self.tracks.shape[1])

    def intrinsics_per_frame(self) -> np.ndarray:
        """(N, 3, 3) float64 pixel intrinsics; raises when the track set has none."""
        if self.intrinsics is None:
            raise ContractError(f"{self.source}: field 'intrinsics': missing (give intrinsics or a focal length)")
        k = np.asarray(self.intrinsics, dtype=np.float64)
        return np.broadcast_to(k, (self.n_frames, 3, 3)).copy() if k.ndim == 2 else k

    def subset(self, frames: np.ndarray | slice | None = None, points: np.ndarray | slice | None = None) -> "TrackSet":
        """A new track set restricted to some frames and/or points (query frames re-based, clipped)."""
        fr = np.arange(self.n_frames)[frames if frames is not None else slice(None)]
        pt = np.arange(self.n_points)[points if points is not None else slice(None)]
        k = self.intrinsics
        if k is not None and k.ndim == 3:
            k = k[fr]
        q = None
        if self.query_frame is not None:
            q = np.clip(np.searchsorted(fr, self.query_frame[pt]), 0, len(fr) - 1)
        gt = None
        if self.ground_truth is not None:
            g = self.ground_truth
            gt = GroundTruth(
                None if g.world_to_camera is None else g.world_to_camera[fr],
                None if g.depth is None else g.depth[np.ix_(fr, pt)],
                None if g.dynamic is None else g.dynamic[np.ix_(fr, pt)],
            )
        conf = None if self.confidence is None else self.confidence[np.ix_(fr, pt)]
        return TrackSet(self.tracks[np.ix_(fr, pt)], self.visible[np.ix_(fr, pt)], k, self.image_size, q, gt,
                        self.source, conf)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> None:
        """Write the track-set ``.npz`` (README, *Files*) (ground truth as ``gt_*`` fields)."""
        out: dict[str, np.ndarray] = {"tracks": self.tracks, "visible": self.visible}
        for name in ("intrinsics", "image_size", "query_frame", "confidence"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.ground_truth is not None:
            for f in fields(GroundTruth):
                value = getattr(self.ground_truth, f.name)
                if value is not None:
                    out[f"gt_{f.name}"] = value
        _atomic_savez(Path(path), out)

    @classmethod
    def load(cls, path: str | Path) -> "TrackSet":
        """Read a track-set ``.npz``: our layout or the official TracksTo4D layout."""
        return cls.from_arrays(_read_npz(Path(path)), str(path))

    @classmethod
    def from_arrays(cls, data: Mapping[str, np.ndarray], src: str = "arrays") -> "TrackSet":
        """A track set from the arrays of a track file (our layout or the official one); src names it in errors."""
        if "pred_tracks" in data:
            return cls._from_official(data, src)
        for required in ("tracks", "visible"):
            if required not in data:
                raise _fail(src, required, "missing (a track file needs 'tracks' and 'visible', "
                                           "or the official 'pred_tracks' and 'pred_visibility')")
        gt = None
        if any(k.startswith("gt_") for k in data):
            gt = GroundTruth(data.get("gt_world_to_camera"), data.get("gt_depth"), data.get("gt_dynamic"))
        return cls(data["tracks"], data["visible"], data.get("intrinsics"), data.get("image_size"),
                   data.get("query_frame"), gt, source=src, confidence=data.get("confidence"))

    @classmethod
    def _from_official(cls, data: Mapping[str, np.ndarray], src: str) -> "TrackSet":
        if "pred_visibility" not in data:
            raise _fail(src, "pred_visibility", "missing (required with 'pred_tracks')")
        tracks = _array(data["pred_tracks"], "pred_tracks", src, "f", (1, None, None, 2))[0]
        n, p = tracks.shape[:2]
        visible = _array(data["pred_visibility"], "pred_visibility", src, "b", (1, n, p))[0]
        query = None
        if "started_at" in data:
            started = np.asarray(data["started_at"])
            if started.size != p:
                raise _fail(src, "started_at", f"expected {p} values (one per track), got shape {started.shape}")
            query = np.clip(_array(started.reshape(p), "started_at", src, "i", (p,)), 0, n - 1)
        gt = None
        if any(k in data for k in ("Ms_all", "GT_depth_tracks_all", "GT_mask_tracks_all")):
            depth = data.get("GT_depth_tracks_all")
            mask = data.get("GT_mask_tracks_all")
            gt = GroundTruth(
                data.get("Ms_all"),
                None if depth is None else _array(depth, "GT_depth_tracks_all", src, "f", (1, n, p))[0],
                None if mask is None else _array(mask, "GT_mask_tracks_all", src, "f", (1, n, p))[0] > 0,
            )
        return cls(tracks, visible, data.get("Ks_all"), None, query, gt, source=src)


@dataclass(frozen=True)
class Cameras:
    """Every frame's camera: world_to_camera (N, 4, 4) float64 OpenCV · intrinsics (N, 3, 3) float64 pixels."""

    world_to_camera: np.ndarray
    intrinsics: np.ndarray

    @property
    def camera_to_world(self) -> np.ndarray:
        """(N, 4, 4) float64."""
        return invert_rigid(self.world_to_camera)

    @property
    def centres(self) -> np.ndarray:
        """(N, 3) camera centres in the world."""
        return self.camera_to_world[:, :3, 3]

    @property
    def n_frames(self) -> int:
        return int(self.world_to_camera.shape[0])

    def subset(self, frames: slice | np.ndarray) -> "Cameras":
        """The cameras of ``frames`` (a slice or indices)."""
        return Cameras(self.world_to_camera[frames], self.intrinsics[frames])


@dataclass(frozen=True)
class Reconstruction:
    """The main output: cameras, per-frame 3D points and motion levels of every track (README, *Files*).

    camera_to_world, world_to_camera: (N, 4, 4) float64 · intrinsics: (N, 3, 3) float64 ·
    points: (N, P, 3) world positions · static_points: (P, 3) · motion_level: (P,) γ > 0 ·
    depth: (N, P) camera-frame z · bases: (K, P, 3) · coefficients: (N, K) · tracks: (N, P, 2) ·
    visible: (N, P) bool · meta: JSON-serialisable dict · motion_state: (P,) int8, 0 static, 1 moving, 2 unreliable
    (failed the static fit without moving with any neighbourhood: left out of trajectories and pictures); None: taken
    from ``meta["static_mask"]`` when there is one (0 or 1). Units are arbitrary (monocular scale).
    """

    camera_to_world: np.ndarray
    world_to_camera: np.ndarray
    intrinsics: np.ndarray
    points: np.ndarray
    static_points: np.ndarray
    motion_level: np.ndarray
    depth: np.ndarray
    bases: np.ndarray
    coefficients: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    meta: dict = field(default_factory=dict)
    source: str = field(default="Reconstruction", compare=False, repr=False)
    motion_state: np.ndarray | None = None

    def __post_init__(self) -> None:
        src = self.source
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        points = _array(self.points, "points", src, "f", (None, None, 3))
        n, p = points.shape[:2]
        if n < 1 or p < 1:
            raise _fail(src, "points", f"needs at least one frame and one point, got {points.shape}")
        c2w = _array(self.camera_to_world, "camera_to_world", src, "f", (n, 4, 4)).astype(np.float64)
        w2c = _array(self.world_to_camera, "world_to_camera", src, "f", (n, 4, 4)).astype(np.float64)
        if not np.allclose(c2w @ w2c, np.eye(4), atol=1e-4 * max(1.0, float(np.abs(c2w[:, :3, 3]).max()))):
            raise _fail(src, "world_to_camera", "is not the inverse of camera_to_world")
        bases = _array(self.bases, "bases", src, "f", (None, p, 3))
        k = bases.shape[0]
        checks = {
            "intrinsics": ("f", (n, 3, 3)), "static_points": ("f", (p, 3)), "motion_level": ("f", (p,)),
            "depth": ("f", (n, p)), "coefficients": ("f", (n, k)), "tracks": ("f", (n, p, 2)),
        }
        set_("points", points.astype(np.float32))
        set_("camera_to_world", c2w)
        set_("world_to_camera", w2c)
        set_("bases", bases.astype(np.float32))
        for name, (kind, shape) in checks.items():
            arr = _array(getattr(self, name), name, src, kind, shape)
            set_(name, arr.astype(np.float64 if name == "intrinsics" else np.float32))
        if (self.motion_level <= 0).any():
            raise _fail(src, "motion_level", "must be positive")
        set_("visible", _array(self.visible, "visible", src, "b", (n, p)))
        meta = self.meta
        if isinstance(meta, (str, bytes, np.ndarray)):
            try:
                meta = json.loads(str(np.asarray(meta).item() if isinstance(meta, np.ndarray) else meta))
            except (json.JSONDecodeError, ValueError) as exc:
                raise _fail(src, "meta", f"is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise _fail(src, "meta", "must be a JSON object")
        try:
            json.dumps(meta)
        except TypeError as exc:
            raise _fail(src, "meta", f"is not JSON-serialisable ({exc})") from None
        set_("meta", meta)
        state = self.motion_state
        if state is None and "static_mask" in meta:
            state = np.where(np.asarray(meta["static_mask"], bool), 0, 1)
        if state is not None:
            state = _array(state, "motion_state", src, "i", (p,))
            if state.size and not np.isin(state, (0, 1, 2)).all():
                raise _fail(src, "motion_state", "values must be 0 (static), 1 (moving) or 2 (unreliable)")
            set_("motion_state", state.astype(np.int8))

    @property
    def shown(self) -> np.ndarray:
        """(P,) bool: the tracks trajectories and pictures show (every track but the unreliable ones)."""
        return np.ones(self.n_points, bool) if self.motion_state is None else self.motion_state != 2

    @property
    def n_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def n_points(self) -> int:
        return int(self.points.shape[1])

    def save(self, path: str | Path) -> None:
        """Write ``reconstruction.npz`` (``meta`` as a JSON string)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("meta", "source")}
        out["meta"] = np.array(json.dumps(self.meta))
        if self.motion_state is None:
            del out["motion_state"]
        _atomic_savez(Path(path), out)

    @classmethod
    def load(cls, path: str | Path) -> "Reconstruction":
        src = str(path)
        data = _read_npz(Path(path))
        names = [f.name for f in fields(cls) if f.name not in ("source", "motion_state")]
        for name in names:
            if name not in data:
                raise _fail(src, name, "missing")
        return cls(**{name: data[name] for name in names}, source=src, motion_state=data.get("motion_state"))


def load_any(path: str | Path) -> "TrackSet | Reconstruction":
    """Load a ``.npz`` as a :class:`Reconstruction` when it has ``camera_to_world``, else as a :class:`TrackSet`."""
    with_cameras = "camera_to_world" in _read_npz(Path(path))
    return Reconstruction.load(path) if with_cameras else TrackSet.load(path)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ContractError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ContractError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ContractError(f"{path}: not a readable .npz file ({exc})") from None
    except ValueError as exc:
        if "pickle" in str(exc):  # object arrays: refused
            raise ContractError(f"{path}: holds arrays that need pickle, refused ({exc})") from None
        raise ContractError(f"{path}: holds a truncated or corrupt array ({exc})") from None


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write through a temporary file so an interrupted save never corrupts an earlier result."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        tmp.replace(path)
    except BaseException:  # a full disk: leave no partial file behind
        tmp.unlink(missing_ok=True)
        raise
