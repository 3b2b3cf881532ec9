"""A reconstruction as a COLMAP text model (cameras.txt, images.txt, points3D.txt) for 3DGS, nerfstudio and COLMAP.

Conventions: our pixel centres sit at integer coordinates, COLMAP's at +0.5 (the image corner is 0), so principal
points and 2D observations move by +0.5. Poses are ``world_to_camera`` (COLMAP's ``cam_from_world``, both OpenCV
axes). Ids: camera and image ids count from 1; a static point's POINT3D_ID is its track index + 1.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..contracts import Reconstruction

__all__ = ["write_colmap_text", "rotation_to_quaternion", "DEFAULT_STATIC_GAMMA"]

DEFAULT_STATIC_GAMMA = 0.008
"""Without a static mask, tracks with motion level γ below this become 3D points: the default γ threshold of
bundle adjustment (``tracks4d reconstruct --ba-gamma``)."""

def rotation_to_quaternion(rotations: np.ndarray) -> np.ndarray:
    """(M, 3, 3) rotation matrices → (M, 4) unit quaternions (w, x, y, z) with w ≥ 0.

    The entries of R give the symmetric matrix 4·q·qᵀ; its row with the largest diagonal entry is proportional to
    q and the best conditioned choice (Shepperd's method), so that row, normalised, is q."""
    r = np.asarray(rotations, dtype=np.float64)
    trace = r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2]
    ww, xx, yy, zz = 1 + trace, 1 + 2 * r[:, 0, 0] - trace, 1 + 2 * r[:, 1, 1] - trace, 1 + 2 * r[:, 2, 2] - trace
    wx, wy, wz = r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]
    xy, xz, yz = r[:, 0, 1] + r[:, 1, 0], r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1]
    outer = np.stack([np.stack([ww, wx, wy, wz], -1), np.stack([wx, xx, xy, xz], -1),
                      np.stack([wy, xy, yy, yz], -1), np.stack([wz, xz, yz, zz], -1)], axis=1)  # (M, 4, 4)
    rows = outer[np.arange(len(r)), np.argmax(np.stack([ww, xx, yy, zz], -1), axis=1)]
    quats = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return quats * np.where(quats[:, :1] < 0, -1.0, 1.0)


def static_mask_of(rec: Reconstruction, static_mask: np.ndarray | None) -> np.ndarray:
    """(P,) bool: ``static_mask``, else ``rec.meta["static_mask"]``, else γ < :data:`DEFAULT_STATIC_GAMMA`."""
    where = "static_mask"
    if static_mask is None and "static_mask" in rec.meta:
        static_mask, where = rec.meta["static_mask"], "meta['static_mask']"
    if static_mask is None:
        return rec.motion_level < DEFAULT_STATIC_GAMMA
    mask = np.asarray(static_mask)
    if mask.shape != (rec.n_points,) or not (mask.dtype == bool or np.isin(mask, (0, 1)).all()):
        raise ValueError(f"{where}: expected {rec.n_points} booleans (one per track), got shape {mask.shape} "
                         f"dtype {mask.dtype}")
    return mask.astype(bool)


def _image_size(rec: Reconstruction, image_size) -> tuple[int, int]:
    """(W, H): ``image_size``, else ``rec.meta["image_size"]``, else ceil(2·c) of COLMAP's principal point."""
    where = "image_size"
    if image_size is None and "image_size" in rec.meta:
        image_size, where = rec.meta["image_size"], "meta['image_size']"
    if image_size is None:
        centre = rec.intrinsics[:, :2, 2].max(axis=0) + 0.5
        size = np.ceil(2 * centre - 1e-6)
        if (size < 1).any():
            raise ValueError(f"cannot infer the image size from principal point {tuple(centre)}: give image_size")
        return int(size[0]), int(size[1])
    size = np.asarray(image_size)
    if size.shape != (2,) or not np.issubdtype(size.dtype, np.number) or (size != np.round(size)).any() \
            or (size < 1).any():
        raise ValueError(f"{where}: expected (W, H) as two positive integers, got {image_size!r}")
    return int(size[0]), int(size[1])


def _image_names(rec: Reconstruction, image_names: list[str] | None) -> list[str]:
    if image_names is None:
        return [f"frame_{t:05d}.png" for t in range(rec.n_frames)]
    names = list(image_names)
    if len(names) != rec.n_frames:
        raise ValueError(f"image_names: expected {rec.n_frames} names (one per frame), got {len(names)}")
    bad = [n for n in names if not isinstance(n, str) or not n or any(c.isspace() for c in n)]
    if bad:
        raise ValueError(f"image_names: names must be non-empty and hold no whitespace, got {bad[0]!r}")
    if len(set(names)) != len(names):
        raise ValueError("image_names: names must be unique")
    return names


def _colours(rec: Reconstruction, colours: np.ndarray | None) -> np.ndarray:
    if colours is None:
        return np.full((rec.n_points, 3), 128, np.uint8)
    rgb = np.asarray(colours)
    if rgb.shape != (rec.n_points, 3) or not np.issubdtype(rgb.dtype, np.integer) or rgb.min() < 0 or rgb.max() > 255:
        raise ValueError(f"colours: expected ({rec.n_points}, 3) integers in 0–255, got shape {rgb.shape} "
                         f"dtype {rgb.dtype}")
    return rgb.astype(np.uint8)


def _checked_rotations(w2c: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations of world_to_camera; ValueError when one is not a rotation (to 1e-4)."""
    rot = w2c[:, :3, :3]
    off = np.abs(rot.transpose(0, 2, 1) @ rot - np.eye(3)).max(axis=(1, 2))
    bad = np.flatnonzero((off > 1e-4) | (np.linalg.det(rot) < 0))
    if bad.size:
        raise ValueError(f"world_to_camera: frame {bad[0]} does not hold a rotation (RᵀR off by {off[bad[0]]:.2g}, "
                         f"det {np.linalg.det(rot[bad[0]]):.3g})")
    return rot


def _cameras(k: np.ndarray, size: tuple[int, int]) -> tuple[list[str], np.ndarray]:
    """PINHOLE camera lines (one shared camera when every K agrees to 1e-9 relative, else one per frame) and the
    (N,) camera id of each frame."""
    if np.abs(k[:, 0, 1]).max() > 1e-9 * np.abs(k[:, 0, 0]).max():
        raise ValueError("intrinsics: COLMAP's PINHOLE model has no skew, but K[0, 1] is not 0")
    shared = np.abs(k - k[0]).max() <= 1e-9 * np.abs(k[0]).max()
    distinct = k[:1] if shared else k
    lines = [f"{i + 1} PINHOLE {size[0]} {size[1]} {fx!r} {fy!r} {cx + 0.5!r} {cy + 0.5!r}"
             for i, (fx, fy, cx, cy) in enumerate(distinct[:, [0, 1, 0, 1], [0, 1, 2, 2]].tolist())]
    camera_ids = np.ones(len(k), int) if shared else np.arange(1, len(k) + 1)
    return lines, camera_ids


def _reprojection_errors(rec: Reconstruction, observed: np.ndarray) -> np.ndarray:
    """(P,) mean pixel distance between each static point's projection and its track over the frames where
    ``observed`` (N, P) holds and the point lies in front of the camera; −1 (COLMAP's "unknown") where none."""
    world = rec.static_points.astype(np.float64)
    cam = np.einsum("nij,pj->npi", rec.world_to_camera[:, :3, :3], world) + rec.world_to_camera[:, None, :3, 3]
    front = observed & (cam[..., 2] > 1e-12)
    z = np.where(front, cam[..., 2], 1.0)[..., None]
    pixels = np.einsum("nij,npj->npi", rec.intrinsics, cam / z)[..., :2]
    dist = np.where(front, np.linalg.norm(pixels - rec.tracks, axis=-1), 0.0)
    count = front.sum(axis=0)
    return np.where(count > 0, dist.sum(axis=0) / np.maximum(count, 1), -1.0)


def _write_atomically(out: Path, texts: dict[str, str]) -> None:
    """Write every file to a temporary name in ``out`` first, then rename each into place."""
    temps: list[Path] = []
    try:
        for name, text in texts.items():
            fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".tmp")
            temps.append(Path(tmp))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        for name, tmp in zip(texts, temps):
            os.replace(tmp, out / name)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def write_colmap_text(rec: Reconstruction, out_dir: str | Path, image_size: tuple[int, int] | None = None,
                      image_names: list[str] | None = None, static_mask: np.ndarray | None = None,
                      colours: np.ndarray | None = None) -> Path:
    """Write ``rec`` as a COLMAP text model into ``out_dir`` (created) and return ``out_dir``.

    image_size: (W, H) of the frames in ``rec``'s pixels (default ``rec.meta["image_size"]``, else ceil(2·c) of
    COLMAP's principal point) · image_names: N file names (default ``frame_00000.png`` …) · static_mask: (P,) bool
    tracks to write as 3D points (default ``rec.meta["static_mask"]``, else γ < :data:`DEFAULT_STATIC_GAMMA`) ·
    colours: (P, 3) uint8 RGB of those points (default grey 128).

    One PINHOLE camera when every frame shares K, else one per frame. Each image lists every track visible in it
    (POINT3D_ID −1 for tracks that are not 3D points); each 3D point's error is its mean reprojection error in
    pixels over the frames that see it (−1 when none). The three files are written to temporary names and then
    renamed, so a failure leaves any earlier model in ``out_dir`` as it was. ValueError on a bad argument.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    binary = [n for n in ("cameras.bin", "images.bin", "points3D.bin") if (out / n).exists()]
    if binary:
        raise ValueError(f"{out}: holds a binary COLMAP model ({', '.join(binary)}) that readers would load instead "
                         f"of the text model; remove it or choose another folder")
    size = _image_size(rec, image_size)
    names = _image_names(rec, image_names)
    static = static_mask_of(rec, static_mask) & np.isfinite(rec.static_points).all(axis=1)
    rgb = _colours(rec, colours)
    quats = rotation_to_quaternion(_checked_rotations(rec.world_to_camera))
    camera_lines, camera_ids = _cameras(rec.intrinsics, size)

    visible = rec.visible
    point2d_idx = np.cumsum(visible, axis=1) - 1  # (N, P): index of track p in image t's POINTS2D list
    point3d_ids = np.where(static, np.arange(1, rec.n_points + 1), -1)
    colmap_xy = rec.tracks.astype(np.float64) + 0.5
    image_lines = []
    for t in range(rec.n_frames):
        tracks_seen = np.flatnonzero(visible[t])
        pose = " ".join(repr(v) for v in [*quats[t].tolist(), *rec.world_to_camera[t, :3, 3].tolist()])
        image_lines.append(f"{t + 1} {pose} {camera_ids[t]} {names[t]}")
        image_lines.append(" ".join(f"{x!r} {y!r} {i}" for (x, y), i in
                                    zip(colmap_xy[t, tracks_seen].tolist(), point3d_ids[tracks_seen].tolist())))

    errors = _reprojection_errors(rec, visible & static[None])
    point_lines = []
    for p in np.flatnonzero(static):
        frames_seen = np.flatnonzero(visible[:, p])
        xyz = " ".join(repr(v) for v in rec.static_points[p].astype(np.float64).tolist())
        track = " ".join(f"{t + 1} {point2d_idx[t, p]}" for t in frames_seen)
        point_lines.append(f"{p + 1} {xyz} {' '.join(map(str, rgb[p].tolist()))} {errors[p].item()!r} {track}".rstrip())

    n_obs = int(visible.sum())
    mean_track = float(visible[:, static].sum() / max(len(point_lines), 1))
    texts = {
        "cameras.txt": "# Camera list with one line of data per camera:\n"
                       "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
                       f"# Number of cameras: {len(camera_lines)}\n" + "\n".join(camera_lines) + "\n",
        "images.txt": "# Image list with two lines of data per image:\n"
                      "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
                      "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
                      f"# Number of images: {rec.n_frames}, mean observations per image: {n_obs / rec.n_frames:g}\n"
                      + "\n".join(image_lines) + "\n",
        "points3D.txt": "# 3D point list with one line of data per point:\n"
                        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
                        f"# Number of points: {len(point_lines)}, mean track length: {mean_track:g}\n"
                        + "".join(line + "\n" for line in point_lines),
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_atomically(out, texts)
    return out
