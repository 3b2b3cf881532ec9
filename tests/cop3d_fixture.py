"""A small COP3D-layout tree for tests: REAL frames with SYNTHETIC metadata.

The frames are decoded at test time from the real demo videos in ``../shared/data/real`` (CC BY-NC / Apache-2.0;
never copied into the repository) and written as JPEGs into a temporary folder. Every annotation — cameras,
intrinsics, frame numbers, masks — is SYNTHETIC: made up here, it does not describe the videos. The tree holds
every case the COP3D reader must handle:

- ``cat/cat_orbit``: ``ndc_isotropic``; files ``frame000123.jpg`` … for frame numbers 0 … (names ≠ numbers);
  annotations listed in shuffled order; frame 5 has a null viewpoint.
- ``cat/cat_resize``: ``ndc_norm_image_bounds``; frames from 14 on are 3/4 size (annotated with their own size).
- ``dog/dog_pan``: ``ndc_isotropic``, 640×360 frames of a different video.
- ``dog/dog_broken``: frame 7 is not a JPEG, frame 12 is missing (fails when its images are read).
- ``cat/cat_badformat``: one frame has an unknown ``intrinsics_format`` (fails when its annotations are read).

The metadata is written either as per-category ``frame_annotations.jgz`` / ``sequence_annotations.jgz`` or as
``metadata.sqlite`` (the schema of PyTorch3D's ``SqlFrameAnnotation``/``SqlSequenceAnnotation``, with nullable
viewpoint and depth columns as in its current ORM) plus ``set_lists/set_lists_fixture.json``.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from tracks4d.io.video import read_video

__all__ = ["REAL_DATA", "build_cop3d_fixture", "opencv_to_pytorch3d"]

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

_README = """SYNTHETIC METADATA — test fixture built by tests/cop3d_fixture.py.
The images are frames of real demo videos (from shared/data/real; see its README for licences).
All annotations here (cameras, intrinsics, frame numbers, masks, set lists) are MADE UP: they do not
describe the videos and must never be used as ground truth for anything but the reader's own tests.
"""

_FRAME_DDL = """CREATE TABLE frame_annots (
    sequence_name VARCHAR NOT NULL, frame_number INTEGER NOT NULL, frame_timestamp FLOAT NOT NULL,
    _image_path VARCHAR NOT NULL, _image_size BLOB NOT NULL,
    _depth_path VARCHAR, _depth_scale_adjustment FLOAT, _depth_mask_path VARCHAR,
    _mask_path VARCHAR, _mask_mass FLOAT, _mask_bounding_box_xywh BLOB DEFAULT NULL,
    "_viewpoint_R" BLOB, "_viewpoint_T" BLOB, _viewpoint_focal_length BLOB, _viewpoint_principal_point BLOB,
    _viewpoint_intrinsics_format VARCHAR,
    PRIMARY KEY (sequence_name, frame_number))"""

_SEQUENCE_DDL = """CREATE TABLE sequence_annots (
    sequence_name VARCHAR NOT NULL, category VARCHAR NOT NULL, _video_path VARCHAR, _video_length FLOAT,
    _point_cloud_path VARCHAR, _point_cloud_quality_score FLOAT, _point_cloud_n_points INTEGER,
    viewpoint_quality_score FLOAT, PRIMARY KEY (sequence_name))"""

FILE_OFFSET = 123
"""cat/cat_orbit: frame number n is stored as ``frame{n + FILE_OFFSET:06d}.jpg``."""


@dataclass(frozen=True)
class _Spec:
    category: str
    name: str
    video: str
    start: int
    count: int
    intrinsics_format: str
    file_offset: int = 0
    null_viewpoint: int | None = None
    shrink_from: int | None = None
    broken: bool = False
    bad_format_frame: int | None = None


_SPECS = (
    _Spec("cat", "cat_orbit", "cat", 0, 28, "ndc_isotropic", file_offset=FILE_OFFSET, null_viewpoint=5),
    _Spec("cat", "cat_resize", "cat", 30, 28, "ndc_norm_image_bounds", shrink_from=14),
    _Spec("dog", "dog_pan", "bear", 0, 24, "ndc_isotropic"),
    _Spec("dog", "dog_broken", "bear", 0, 24, "ndc_isotropic", broken=True),
    _Spec("cat", "cat_badformat", "cat", 0, 24, "ndc_isotropic", bad_format_frame=3),
)
_VIDEOS = {"cat": ("cotracker_demo_videos/cat.mp4", 58, None), "bear": ("cotracker_demo_videos/bear.mp4", 24, 640)}


@lru_cache(maxsize=None)
def _frames(video: str) -> np.ndarray:
    path, count, long_side = _VIDEOS[video]
    return read_video(REAL_DATA / path, max_frames=count, long_side=long_side).frames


def opencv_to_pytorch3d(world_to_camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(4, 4) OpenCV world_to_camera → PyTorch3D (R (3, 3), T (3,)) with X_cam = X_world @ R + T."""
    flip = np.diag([-1.0, -1.0, 1.0])
    return world_to_camera[:3, :3].T @ flip, flip @ world_to_camera[:3, 3]


def _orbit_camera(seed: int, i: int) -> np.ndarray:
    """(4, 4) OpenCV world_to_camera on a circle of radius 2.5 around the origin, looking at it."""
    theta = 0.7 * seed + 0.03 * i
    centre = np.array([2.5 * np.sin(theta), -0.4, -2.5 * np.cos(theta)])
    z = -centre / np.linalg.norm(centre)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    rot = np.stack([x, np.cross(z, x), z])
    out = np.eye(4)
    out[:3, :3], out[:3, 3] = rot, -rot @ centre
    return out


def _f32(values) -> list:
    """Values rounded to float32, so the JSON and the float32 sqlite blobs hold the same numbers."""
    return np.asarray(values, dtype=np.float32).astype(np.float64).tolist()


def _write_sequence(root: Path, seed: int, spec: _Spec) -> list[dict]:
    """Write the images and masks of one sequence; return its (synthetic) frame annotations."""
    folder = root / spec.category / spec.name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    source = _frames(spec.video)[spec.start:spec.start + spec.count]
    records = []
    for n, rgb in enumerate(source):
        if spec.shrink_from is not None and n >= spec.shrink_from:
            rgb = cv2.resize(rgb, (rgb.shape[1] * 3 // 4, rgb.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
        h, w = rgb.shape[:2]
        image = f"{spec.category}/{spec.name}/images/frame{n + spec.file_offset:06d}.jpg"
        mask = f"{spec.category}/{spec.name}/masks/frame{n + spec.file_offset:06d}.png"
        if spec.bad_format_frame is None:
            cv2.imwrite(str(root / image), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            cv2.imwrite(str(root / mask), np.full((h, w), 255, np.uint8))
        R, T = opencv_to_pytorch3d(_orbit_camera(seed, n))
        isotropic = spec.intrinsics_format == "ndc_isotropic"
        viewpoint = {"R": _f32(R), "T": _f32(T),
                     "focal_length": _f32([1.9, 1.9] if isotropic else [2.4, 1.9]),
                     "principal_point": _f32([0.03, -0.02] if isotropic else [0.0, 0.01]),
                     "intrinsics_format": "screen" if n == spec.bad_format_frame else spec.intrinsics_format}
        records.append({"sequence_name": spec.name, "frame_number": n, "frame_timestamp": n / 20.0,
                        "image": {"path": image, "size": [h, w]}, "depth": None,
                        "mask": {"path": mask, "mass": float(h * w)},
                        "viewpoint": None if n == spec.null_viewpoint else viewpoint, "meta": {}})
    if spec.broken:
        (root / records[7]["image"]["path"]).write_bytes(b"not a jpeg")
        (root / records[12]["image"]["path"]).unlink()
    return records


def _write_jgz(path: Path, payload: list) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(payload, fh)


def _write_sqlite(root: Path, frames: dict[_Spec, list[dict]]) -> None:
    with sqlite3.connect(root / "metadata.sqlite") as con:
        con.execute(_FRAME_DDL)
        con.execute(_SEQUENCE_DDL)
        for spec, records in frames.items():
            con.execute("INSERT INTO sequence_annots (sequence_name, category) VALUES (?, ?)",
                        (spec.name, spec.category))
            for r in records:
                vp = r["viewpoint"]
                blobs = (None,) * 5 if vp is None else (
                    struct.pack("<9f", *np.ravel(vp["R"])), struct.pack("<3f", *vp["T"]),
                    struct.pack("<2f", *vp["focal_length"]), struct.pack("<2f", *vp["principal_point"]),
                    vp["intrinsics_format"])
                con.execute(
                    "INSERT INTO frame_annots (sequence_name, frame_number, frame_timestamp, _image_path, "
                    "_image_size, _mask_path, _mask_mass, _viewpoint_R, _viewpoint_T, _viewpoint_focal_length, "
                    "_viewpoint_principal_point, _viewpoint_intrinsics_format) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (r["sequence_name"], r["frame_number"], r["frame_timestamp"], r["image"]["path"],
                     struct.pack("<2i", *r["image"]["size"]), r["mask"]["path"], r["mask"]["mass"], *blobs))


def build_cop3d_fixture(root: Path, source: str = "jgz") -> dict:
    """Build the tree in ``root`` with ``source`` metadata ("jgz" or "sqlite") and say what a reader must find.

    Returns: usable {key: frames with a viewpoint} · damaged {key: text its skip reason contains} ·
    null_viewpoints · set_list (Path, sqlite only, else None) with ``test_split`` keys (the rest are "train").
    """
    if source not in ("jgz", "sqlite"):
        raise ValueError(f"source must be 'jgz' or 'sqlite', got {source!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README_SYNTHETIC_METADATA.txt").write_text(_README)
    frames = {spec: _write_sequence(root, seed, spec) for seed, spec in enumerate(_SPECS)}
    set_list = None
    if source == "jgz":
        rng = np.random.default_rng(0)
        for category in sorted({s.category for s in _SPECS}):
            records = [r for s, rs in frames.items() if s.category == category for r in rs]
            _write_jgz(root / category / "frame_annotations.jgz", [records[i] for i in rng.permutation(len(records))])
            _write_jgz(root / category / "sequence_annotations.jgz",
                       [{"sequence_name": s.name, "category": category, "video": None, "point_cloud": None,
                         "viewpoint_quality_score": None} for s in _SPECS if s.category == category])
    else:
        _write_sqlite(root, frames)
        set_list = root / "set_lists" / "set_lists_fixture.json"
        set_list.parent.mkdir()
        entries = {split: [[r["sequence_name"], r["frame_number"], r["image"]["path"]]
                           for s, rs in frames.items() if (s.name == "cat_resize") == (split == "test") for r in rs]
                   for split in ("train", "test")}
        set_list.write_text(json.dumps(entries))
    return {"root": root, "source": source,
            "usable": {"cat/cat_orbit": 27, "cat/cat_resize": 28, "dog/dog_pan": 24},
            "damaged": {"dog/dog_broken": "frame000007.jpg: not a readable image",
                        "cat/cat_badformat": "frame 3: unknown intrinsics_format 'screen'"},
            "null_viewpoints": 1, "set_list": set_list, "test_split": ["cat/cat_resize"]}
