"""Trajectories that could happen: a moving point does not fly along its ray while the things around it stay put.

A monocular moving point is only known up to its depth along the ray through its pixel; a wrong depth in one frame
shows as a jump in 3D that nothing near it shares. Each moving track's step from one visible frame to the next is
compared with those of its ``NEIGHBOURS`` nearest moving tracks in the image (the object it belongs to): a step longer
than ``FLYING_STEP`` of the scene's depth while the neighbours' median step is below ``STILL_STEP`` of it — a
*flying* entry — is replaced by the point on its own ray nearest to where the neighbours' motion takes it (so it still
reprojects onto its track). :func:`flying_entries` counts them; the pipeline reports the count before and after.
Where a moving track is not seen, nothing observes its depth: its point there is interpolated between the frames that
see it (held at the nearest one before the first and after the last, :func:`between_sightings`) instead of a
low-rank trajectory's extrapolation.
"""

from __future__ import annotations

import numpy as np

from ..contracts import Cameras
from .transforms import invert_rigid

__all__ = ["flying_entries", "plausible_trajectories", "between_sightings", "FLYING_STEP", "STILL_STEP",
           "NEIGHBOURS"]

FLYING_STEP = 0.10   # of the scene depth: a step longer than this in one frame …
STILL_STEP = 0.02    # … while the neighbours' median step is below this, is flying
NEIGHBOURS = 8       # moving tracks nearest in the image that make a point's neighbourhood


def _neighbour_steps(points: np.ndarray, tracks: np.ndarray, both: np.ndarray, t: int, index: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """For the tracks ``index`` (M,) seen in frames t and t+1 (``both`` (M,) bool): each one's neighbours' median
    step vector (M, 3) (NaN without neighbours) and its magnitude (M,)."""
    m = index.size
    median = np.full((m, 3), np.nan)
    sel = np.flatnonzero(both)
    if sel.size < 2:
        return median, np.full(m, np.nan)
    pixels = tracks[t, index[sel]]
    steps = points[t + 1, index[sel]] - points[t, index[sel]]
    distance = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    k = min(NEIGHBOURS, sel.size - 1)
    nearest = np.argsort(distance, axis=1)[:, :k]
    median[sel] = np.median(steps[nearest], axis=1)
    size = np.median(np.linalg.norm(steps[nearest], axis=-1), axis=1)
    out = np.full(m, np.nan)
    out[sel] = size
    return median, out


def flying_entries(points: np.ndarray, tracks: np.ndarray, visible: np.ndarray, moving: np.ndarray,
                   scale: float) -> np.ndarray:
    """(N, P) bool: entries t+1 of moving tracks whose step from frame t is flying (module docstring).

    points (N, P, 3) world · tracks (N, P, 2) px · visible (N, P) · moving (P,) bool · scale: the scene's depth."""
    flying = np.zeros(visible.shape, bool)
    index = np.flatnonzero(moving)
    for t in range(visible.shape[0] - 1):
        both = visible[t, index] & visible[t + 1, index]
        _, still = _neighbour_steps(points, tracks, both, t, index)
        step = np.linalg.norm(points[t + 1, index] - points[t, index], axis=-1)
        flying[t + 1, index] = both & (step > FLYING_STEP * scale) & (still < STILL_STEP * scale)
    return flying


def plausible_trajectories(points: np.ndarray, tracks: np.ndarray, visible: np.ndarray, moving: np.ndarray,
                           cameras: Cameras, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Moving tracks' flying entries replaced, frame by frame, by the point on their ray nearest to the previous
    point moved by the neighbours' median step → (points (N, P, 3), replaced (N, P) bool).

    points (N, P, 3) world · tracks (N, P, 2) px · visible (N, P) · moving (P,) bool · cameras: the solved ones ·
    scale: the scene's depth (e.g. the median depth of the static entries)."""
    points = points.copy()
    replaced = np.zeros(visible.shape, bool)
    index = np.flatnonzero(moving)
    if index.size == 0:
        return points, replaced
    c2w = invert_rigid(cameras.world_to_camera)
    k_inv = np.linalg.inv(cameras.intrinsics)
    for t in range(visible.shape[0] - 1):
        both = visible[t, index] & visible[t + 1, index]
        shared, still = _neighbour_steps(points, tracks, both, t, index)
        step = np.linalg.norm(points[t + 1, index] - points[t, index], axis=-1)
        fly = both & (step > FLYING_STEP * scale) & (still < STILL_STEP * scale)
        if not fly.any():
            continue
        rows = index[fly]
        target = points[t, rows] + np.nan_to_num(shared[fly])                  # where the object takes it
        pixel = np.concatenate([tracks[t + 1, rows], np.ones((rows.size, 1))], 1)
        ray = (c2w[t + 1, :3, :3] @ (k_inv[t + 1] @ pixel.T)).T
        ray /= np.linalg.norm(ray, axis=1, keepdims=True)
        centre = c2w[t + 1, :3, 3]
        along = np.maximum(np.einsum("md,md->m", target - centre, ray), 1e-6)     # in front of the camera
        points[t + 1, rows] = centre + along[:, None] * ray
        replaced[t + 1, rows] = True
    return points, replaced


def between_sightings(points: np.ndarray, visible: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """(N, P, 3) ``points`` with the unseen entries of ``moving`` (P,) tracks linear in time between the nearest
    frames that see them (the nearest seen position before the first and after the last)."""
    points = points.copy()
    frames = np.arange(points.shape[0])
    for p in np.flatnonzero(moving & visible.any(0) & ~visible.all(0)):
        seen = np.flatnonzero(visible[:, p])
        for axis in range(3):
            points[:, p, axis] = np.interp(frames, seen, points[seen, p, axis])
    return points
