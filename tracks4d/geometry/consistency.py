"""Do distant parts of a long clip agree on the static scene? (the fold check)

A camera path that drifts can rebuild one surface twice, in two places (a *fold*): each part of the clip stays
consistent with its own frames, so reprojection errors do not show it. Free space does. Window B's camera saw a
static surface at some depth along each of its lines of sight; a static point that a distant window A placed clearly
*in front of* that surface, on the same line of sight, would have hidden it from B. A point counts as in B's free
space only when it is nearer than every surface B saw around that line of sight (depth edges are not violations); in
a consistent scene that is rare, in a folded one it happens wherever the two copies overlap.

The clip is cut into ``window``-frame windows; each window is represented by its middle frame (the static tracks
seen there, at the pixels they were seen at). Every two windows that are not neighbours are compared both ways.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..contracts import Cameras
from .transforms import transform_points

__all__ = ["Consistency", "static_consistency", "WINDOW", "FOLD_SHARE"]

WINDOW = 50          # frames a window spans (the network's window: what a short clip is)
NEAR = 0.04          # a projected point meets the other window's sight lines within this share of the image's long side
NEIGHBOURS = 8       # … the nearest this many of them
IN_FRONT = 0.15      # … and violates their free space when nearer than all of them by more than this share
MIN_MET = 30         # points that must meet the other window's sight lines for a pair to be judged
FOLD_SHARE = 0.25    # a pair whose share of free-space violations passes this disagrees: a fold


@dataclass(frozen=True)
class Consistency:
    """pairs: window pairs judged (each way counts once) · worst: the two windows' middle frames (from, seen by) of the
    pair with the largest share of free-space violations, None when no pair could be judged · worst_share: that share
    · folded: whether it passes :data:`FOLD_SHARE`."""

    pairs: int
    worst: tuple[int, int] | None
    worst_share: float

    @property
    def folded(self) -> bool:
        return self.worst_share > FOLD_SHARE

    def to_meta(self) -> dict:
        return {"pairs": self.pairs, "worst_frames": None if self.worst is None else list(self.worst),
                "worst_share": round(self.worst_share, 4), "folded": self.folded, "threshold": FOLD_SHARE}

    def sentence(self) -> str | None:
        """The verdict's warning when folded, else None."""
        if not self.folded:
            return None
        a, b = self.worst
        return (f"the static scene folds: {self.worst_share:.0%} of the static points seen at frame {a} lie in front of "
                f"what frame {b} saw on the same lines of sight (the camera path drifted between them; distant parts "
                f"of the clip disagree)")


def static_consistency(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, static_points: np.ndarray,
                       image_size: tuple[int, int], window: int = WINDOW) -> Consistency:
    """Compare the static points of every two non-neighbouring ``window``-frame windows (see the module).

    tracks: (N, P, 2) pixels · visible: (N, P) bool · cameras: N frames · static_points: (P, 3) world, NaN for tracks
    that are not static (or not triangulated) · image_size: (W, H) → :class:`Consistency` (no pairs below 3 windows).
    """
    n = visible.shape[0]
    mids = [start + window // 2 for start in range(0, n - window + 1, window)]
    placed = np.isfinite(static_points).all(1)
    near = NEAR * max(image_size)
    seen = {m: np.flatnonzero(visible[m] & placed) for m in mids}
    depth = {m: transform_points(cameras.world_to_camera[m:m + 1], static_points[seen[m]])[0, :, 2] for m in mids}
    trees = {m: cKDTree(tracks[m, seen[m]]) for m in mids if seen[m].size}
    pairs, worst, worst_share = 0, None, 0.0
    for i, a in enumerate(mids):
        for j, b in enumerate(mids):
            if abs(i - j) < 2 or b not in trees:
                continue
            share = _in_free_space(static_points[np.setdiff1d(seen[a], seen[b])], cameras, b, trees[b], depth[b],
                                   image_size, near)
            if share is None:
                continue
            pairs += 1
            if share > worst_share or worst is None:
                worst, worst_share = (a, b), share
    return Consistency(pairs, worst, worst_share)


def _in_free_space(points: np.ndarray, cameras: Cameras, frame: int, tree: cKDTree, depth: np.ndarray,
                   image_size: tuple[int, int], near: float) -> float | None:
    """Share of world ``points`` (M, 3) that, seen from ``frame``, land within ``near`` px of its static sight lines
    (``tree`` of their pixels, ``depth`` their depths) and lie more than :data:`IN_FRONT` nearer than the nearest of
    the (up to :data:`NEIGHBOURS`) closest of them; None when fewer than :data:`MIN_MET` land near one."""
    cam = transform_points(cameras.world_to_camera[frame:frame + 1], points)[0]
    z = cam[:, 2]
    ahead = z > 1e-9
    k = cameras.intrinsics[frame]
    uv = cam[ahead, :2] / z[ahead, None] @ k[:2, :2].T + k[:2, 2]
    w, h = image_size
    inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
    distance, nearest = tree.query(uv[inside], NEIGHBOURS, distance_upper_bound=near)
    around = np.where(np.isfinite(distance), depth[np.minimum(nearest, depth.size - 1)], np.inf).min(1)
    met = np.isfinite(around)
    if met.sum() < MIN_MET:
        return None
    return float(np.mean(z[ahead][inside][met] < (1.0 - IN_FRONT) * around[met]))
