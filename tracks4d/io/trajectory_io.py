"""Read camera trajectories in the TUM RGB-D and KITTI odometry text formats, and associate them by time.

TUM: one pose per line, ``t tx ty tz qx qy qz qw`` (camera-to-world, Hamilton quaternion, scalar last), ``#`` starts
a comment. KITTI: one pose per line, 12 numbers, the row-major 3x4 camera-to-world matrix [R | t].
Both return ``(timestamps (N,) float64 or None, camera_to_world (N, 4, 4) float64)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["associate", "quaternion_to_matrix", "read_kitti", "read_trajectory", "read_tum"]


def quaternion_to_matrix(xyzw: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (qx, qy, qz, qw) → rotation matrices (..., 3, 3) (normalised first)."""
    q = np.asarray(xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _rows(path: Path, width: int, kind: str) -> np.ndarray:
    """Numeric rows (M, width) of a text file, skipping blank and ``#`` lines; ValueError names file and line."""
    rows = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read trajectory file ({exc})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        fields = body.replace(",", " ").split()
        if len(fields) != width:
            raise ValueError(f"{path}:{number}: expected {width} numbers per line ({kind}), "
                             f"got {len(fields)}: {line!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise ValueError(f"{path}:{number}: not a number in {line!r}") from None
        if not np.isfinite(values).all():
            raise ValueError(f"{path}:{number}: NaN or inf in {line!r}")
        rows.append(values)
    if not rows:
        raise ValueError(f"{path}: holds no poses")
    return np.asarray(rows, dtype=np.float64)


def read_tum(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """TUM file → (timestamps (N,), camera_to_world (N, 4, 4)), in file order (real files may repeat a stamp)."""
    path = Path(path)
    rows = _rows(path, 8, "TUM: t tx ty tz qx qy qz qw")
    norms = np.linalg.norm(rows[:, 4:], axis=1)
    if (norms < 1e-8).any():
        raise ValueError(f"{path}: pose {int(np.argmax(norms < 1e-8))} has a zero quaternion")
    c2w = np.tile(np.eye(4), (len(rows), 1, 1))
    c2w[:, :3, :3] = quaternion_to_matrix(rows[:, 4:])
    c2w[:, :3, 3] = rows[:, 1:4]
    return rows[:, 0], c2w


def read_kitti(path: str | Path, times_path: str | Path | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """KITTI file (12 numbers a line) → (timestamps (N,) from the optional one-number-a-line times file, or None,
    camera_to_world (N, 4, 4))."""
    path = Path(path)
    rows = _rows(path, 12, "KITTI: 3x4 row-major")
    c2w = np.tile(np.eye(4), (len(rows), 1, 1))
    c2w[:, :3, :] = rows.reshape(-1, 3, 4)
    det = np.linalg.det(c2w[:, :3, :3])
    if (np.abs(det - 1.0) > 1e-2).any():
        bad = int(np.argmax(np.abs(det - 1.0) > 1e-2))
        raise ValueError(f"{path}: pose {bad} is not a rotation (det {det[bad]:.4f})")
    if times_path is None:
        return None, c2w
    times = _rows(Path(times_path), 1, "one timestamp")[:, 0]
    if len(times) != len(c2w):
        raise ValueError(f"{times_path}: {len(times)} timestamps for {len(c2w)} poses in {path}")
    return times, c2w


def read_trajectory(path: str | Path) -> tuple[np.ndarray | None, np.ndarray]:
    """TUM or KITTI, told apart by the number of fields on the first pose line (8 or 12)."""
    path = Path(path)
    try:
        lines = (ln.split("#", 1)[0].replace(",", " ").split() for ln in path.read_text().splitlines())
        first = next((f for f in lines if f), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read trajectory file ({exc})") from None
    if len(first) == 8:
        return read_tum(path)
    if len(first) == 12:
        return read_kitti(path)
    raise ValueError(f"{path}: not a TUM (8 fields) or KITTI (12 fields) trajectory: first pose line has {len(first)}")


def associate(stamps_a: np.ndarray, stamps_b: np.ndarray, max_diff: float = 0.02, offset: float = 0.0) -> np.ndarray:
    """One-to-one matching of timestamps: (M, 2) int index pairs (i into a, j into b), sorted by i.

    Candidates are pairs with |a_i − (b_j + offset)| < max_diff; they are taken greedily, closest first, each index
    used at most once (the TUM ``associate.py`` rule; evo's nearest-neighbour rule agrees whenever nearest
    neighbours are unique, as at typical frame rates).
    """
    a = np.asarray(stamps_a, dtype=np.float64)
    b = np.asarray(stamps_b, dtype=np.float64) + offset
    order = np.argsort(b)
    bs = b[order]
    lo = np.searchsorted(bs, a - max_diff, side="left")
    hi = np.searchsorted(bs, a + max_diff, side="right")
    counts = hi - lo
    ia = np.repeat(np.arange(len(a)), counts)
    jb = np.concatenate([np.arange(l, h) for l, h in zip(lo, hi)]) if counts.sum() else np.zeros(0, dtype=np.int64)
    jb = order[jb.astype(np.int64)]
    diff = np.abs(a[ia] - b[jb])
    keep = diff < max_diff
    ia, jb, diff = ia[keep], jb[keep], diff[keep]
    used_a = np.zeros(len(a), dtype=bool)
    used_b = np.zeros(len(b), dtype=bool)
    pairs = []
    for k in np.argsort(diff, kind="stable"):
        if not used_a[ia[k]] and not used_b[jb[k]]:
            used_a[ia[k]] = used_b[jb[k]] = True
            pairs.append((ia[k], jb[k]))
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
