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
A whole track can also sit at the wrong depth: a short track the moving network placed off its object (on a walking
bear, a track at twice the bear's depth, behind the wall the bear stands in front of). :func:`on_their_object`
compares each moving track's depth, frame by frame, with the median depth of the moving tracks around it in the image;
where those agree among themselves (spread below ``OBJECT_SPREAD``), an entry ``OFF_OBJECT`` times nearer or farther
is scaled along its ray (its pixel unchanged) to the track's usual ratio in the frames where it is on its object (to
the neighbourhood's depth if it never is); where a track is off on the whole, so are its unjudged entries.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial import cKDTree

from ..contracts import Cameras
from .transforms import invert_rigid, transform_points

__all__ = ["flying_entries", "plausible_trajectories", "between_sightings", "on_their_object", "FLYING_STEP",
           "STILL_STEP", "NEIGHBOURS", "OFF_OBJECT", "OBJECT_NEIGHBOURS", "OBJECT_SPREAD", "OBJECT_RADIUS"]

FLYING_STEP = 0.10   # of the scene depth: a step longer than this in one frame …
STILL_STEP = 0.02    # … while the neighbours' median step is below this, is flying
NEIGHBOURS = 8       # moving tracks nearest in the image that make a point's neighbourhood
OFF_OBJECT = 1.3     # a track this many times farther (or nearer) than its neighbourhood on median is off its object
OBJECT_SPREAD = 0.2  # … when the neighbourhood's depths agree: median |depth − their median| below this share of it
OBJECT_RADIUS = 0.15  # neighbours count within this share of the image's larger side
OBJECT_NEIGHBOURS = 16  # moving tracks nearest in the image whose depth is the object's there


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


def on_their_object(points: np.ndarray, tracks: np.ndarray, visible: np.ndarray, moving: np.ndarray,
                    world_to_camera: np.ndarray, image_side: float) -> tuple[np.ndarray, np.ndarray]:
    """Moving tracks' seen entries off their object's depth scaled onto it along their rays (module docstring)
    → (points (N, P, 3), moved (N, P) bool).

    points (N, P, 3) world · tracks (N, P, 2) px · visible (N, P) · moving (P,) bool · world_to_camera (N, 4, 4) ·
    image_side: the image's larger side in px."""
    index = np.flatnonzero(moving)
    if index.size <= OBJECT_NEIGHBOURS:
        return points, np.zeros(visible.shape, bool)
    camera = transform_points(world_to_camera, points[:, index])
    depth = camera[..., 2]
    ratio = np.full(depth.shape, np.nan)                         # (N, M): depth over the neighbourhood's
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # all-NaN medians: no neighbourhood there
        for t in range(depth.shape[0]):
            ratio[t] = _over_neighbourhood(depth[t], tracks[t, index], visible[t, index], image_side)
        inside = np.where(np.abs(np.log(ratio)) <= np.log(OFF_OBJECT), ratio, np.nan)
        usual = np.nan_to_num(np.nanmedian(inside, axis=0), nan=1.0)       # (M,) its ratio where on its object
        typical = np.nanmedian(ratio, axis=0)                              # (M,) … and over all its frames
    off = np.isfinite(ratio) & np.isnan(inside)
    factor = np.where(off, usual / ratio, 1.0)                             # off entries back to its usual ratio
    unknown = np.isnan(ratio) & visible[:, index] & (np.abs(np.log(typical)) > np.log(OFF_OBJECT))[None]
    factor = np.where(unknown, usual / typical, factor)                    # … and a track off on the whole too
    moved = np.zeros(visible.shape, bool)
    moved[:, index] = factor != 1.0
    if not moved.any():
        return points, moved
    points = points.copy()
    points[:, index] = transform_points(invert_rigid(world_to_camera), camera * factor[..., None])
    return points, moved


def _over_neighbourhood(depth: np.ndarray, pixels: np.ndarray, seen: np.ndarray, image_side: float) -> np.ndarray:
    """One frame's (M,) ``depth`` over the median depth of each track's nearest seen neighbours in the image
    (``pixels`` (M, 2), ``seen`` (M,)); NaN where a track is unseen or its neighbourhood is too small or disagrees."""
    out = np.full(depth.shape, np.nan)
    sel = np.flatnonzero(seen & np.isfinite(depth) & (depth > 0))
    if sel.size <= OBJECT_NEIGHBOURS:
        return out
    distance, nearest = cKDTree(pixels[sel]).query(pixels[sel], OBJECT_NEIGHBOURS + 1)   # the first is the track itself
    distance, nearest = distance[:, 1:], nearest[:, 1:]
    close = distance < OBJECT_RADIUS * image_side
    around = np.where(close & (close.sum(1, keepdims=True) >= OBJECT_NEIGHBOURS // 2), depth[sel][nearest], np.nan)
    centre = np.nanmedian(around, axis=1)
    spread = np.nanmedian(np.abs(around - centre[:, None]), axis=1) / centre
    out[sel] = np.where(spread < OBJECT_SPREAD, depth[sel] / centre, np.nan)
    return out
