"""Ground contact: a thing that stands on the ground is as far as the point where its lowest visible point's ray
meets the ground plane (issue 14's classical prior for moving points).

1. :func:`fit_ground`: the ground plane from the static points — RANSAC over planes whose normal is near the
   cameras' up direction, the one most points stand above (the cameras too), refitted on its inliers; None when no
   plane holds enough points (no visible ground).
2. :func:`group_objects`: moving tracks grouped into objects — tracks that stay close in the image over the frames
   they share, joined transitively.
3. :func:`contact_depth`: per object and frame, the lowest visible track's ray meets the plane (the contact); the
   object is taken as an upright board through the contact, facing the camera, and every track of the object gets
   the depth where its ray meets the board. Each object's contact distance is smoothed over time to a low
   percentile of a sliding window: the lowest *tracked* point is rarely the true contact, and any point above the
   ground meets it farther away, so the nearest hits are the best (tuning set: 10 % of moving point-frames within
   tolerance → 15 %, true plane and objects). No estimate (NaN)
   where there is no plane, the contact lies at the image's bottom edge (the object is cut off) or behind the
   camera.

World units are those of the cameras; "up" is the cameras' mean −y axis (images have y down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import percentile_filter
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..contracts import Cameras
from .track_pairs import nan_median, spans, spread_frames
from .triangulation import bearings

__all__ = ["GroundPlane", "GroundContact", "fit_ground", "group_objects", "contact_depth", "ground_contact"]

MAX_TILT_DEG = 35.0         # the ground's normal lies within this of the cameras' up direction
INLIER_SHARE = 0.01         # plane inliers: within this × the median camera-to-point distance
MIN_INLIERS = 20
ABOVE_SHARE = 0.9           # the ground: at least this share of the static points stand above it (or on it)
RANSAC_ITERATIONS = 400
PROXIMITY = 0.08            # tracks of one object: median image distance below this × the image diagonal
MIN_SHARED = 3              # frames two tracks must share to be compared
BOTTOM_MARGIN = 0.02        # a lowest point this close (× image height) to the bottom edge: the object is cut off
SMOOTH_FRAMES = 15          # each object's contact distance: a low percentile over this many frames
SMOOTH_PERCENTILE = 10      # (a higher point's ray meets the ground farther away: the nearest hits are the best)
SURE_INLIERS = 60           # a plane on this many static points is fully trusted


@dataclass
class GroundPlane:
    """n·x + d = 0, n (3,) unit pointing up · inliers: static points on it."""

    normal: np.ndarray
    offset: float
    inliers: int

    def height(self, points: np.ndarray) -> np.ndarray:
        return points @ self.normal + self.offset


def _up(cameras: Cameras) -> np.ndarray:
    up = -cameras.camera_to_world[:, :3, 1].mean(0)
    return up / np.linalg.norm(up)


def fit_ground(points: np.ndarray, cameras: Cameras, seed: int = 0) -> GroundPlane | None:
    """The ground plane of (M, 3) static world points (NaN rows ignored) under ``cameras`` (module docstring)."""
    points = points[np.isfinite(points).all(1)]
    if len(points) < MIN_INLIERS:
        return None
    up, centres = _up(cameras), cameras.centres
    tolerance = INLIER_SHARE * float(np.median(np.linalg.norm(points - centres.mean(0), axis=1)))
    rng = np.random.default_rng(seed)
    best, best_count = None, 0
    for _ in range(RANSAC_ITERATIONS):
        a, b, c = points[rng.choice(len(points), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        if np.linalg.norm(normal) < 1e-12:
            continue
        normal = normal / np.linalg.norm(normal) * np.sign(normal @ up or 1.0)
        if np.degrees(np.arccos(np.clip(normal @ up, -1, 1))) > MAX_TILT_DEG:
            continue
        offset = -normal @ a
        height = points @ normal + offset
        count = int((np.abs(height) < tolerance).sum())
        if count > best_count and (height > -tolerance).mean() >= ABOVE_SHARE and (centres @ normal + offset > 0).all():
            best, best_count = (normal, offset), count
    if best is None or best_count < MIN_INLIERS:
        return None
    normal, offset = best
    on = np.abs(points @ normal + offset) < tolerance
    centre = points[on].mean(0)
    _, _, vt = np.linalg.svd(points[on] - centre)
    refit = vt[2] * np.sign(vt[2] @ normal)
    return GroundPlane(refit, float(-refit @ centre), int(on.sum()))


def group_objects(tracks: np.ndarray, visible: np.ndarray, moving: np.ndarray, diagonal_px: float) -> np.ndarray:
    """(P,) int object label of each moving track (−1 for the others): tracks whose median image distance over
    ≥ ``MIN_SHARED`` shared frames (a bounded sample of them on long tracks) is below ``PROXIMITY`` ×
    ``diagonal_px``, joined transitively.

    tracks (N, P, 2) px · visible (N, P) bool · moving (P,) bool."""
    index = np.flatnonzero(moving)
    labels = np.full(tracks.shape[1], -1)
    if index.size == 0:
        return labels
    xy, seen = tracks[:, index].astype(np.float64), visible[:, index]
    first, last = spans(seen)
    rows, cols = [], []
    for i in range(index.size):
        later = i + np.flatnonzero((first[i:] <= last[i]) & (last[i:] >= first[i]))    # seen while i is
        frames = spread_frames(int(first[i]), int(last[i]) + 1)
        at = np.ix_(frames, later)                    # (only these entries: not every moving track's frames)
        shared = seen[frames, i][:, None] & seen[at]
        distance = np.where(shared, np.linalg.norm(xy[frames, i][:, None] - xy[at], axis=-1), np.nan)
        median = nan_median(distance)
        span = (last[i] + 1 - first[i]) / len(frames)
        median[shared.sum(0) * span < MIN_SHARED] = np.inf
        close = later[median < PROXIMITY * diagonal_px]
        rows += [i] * close.size
        cols += close.tolist()
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(index.size, index.size))
    _, components = connected_components(graph, directed=False)
    labels[index] = components
    return labels


def contact_depth(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, plane: GroundPlane | None,
                  labels: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(N, P) camera-frame depth of every labelled track from its object's ground contact (module docstring), NaN
    where there is no estimate.

    tracks (N, P, 2) px · visible (N, P) bool · labels (P,) from :func:`group_objects` · image_size (W, H)."""
    n, p = visible.shape
    depth = np.full((n, p), np.nan)
    if plane is None or (labels < 0).all():
        return depth
    rays_cam = bearings(tracks.astype(np.float64), cameras.intrinsics)          # (N, P, 3) unit, camera frame
    c2w = cameras.camera_to_world
    rays = np.einsum("nij,npj->npi", c2w[:, :3, :3], rays_cam)                # world directions
    centres = c2w[:, :3, 3]
    bottom = image_size[1] - 1 - BOTTOM_MARGIN * image_size[1]
    for label in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == label)
        contact = np.full(n, np.nan)                    # distance along the lowest track's ray to the ground
        lowest = np.full(n, -1)
        for t in range(n):
            seen = members[visible[t, members]]
            if seen.size == 0:
                continue
            low = seen[np.argmax(tracks[t, seen, 1])]
            if tracks[t, low, 1] > bottom:
                continue                                # cut off by the image's edge: its contact is not seen
            along = -(plane.height(centres[t]) / (rays[t, low] @ plane.normal))
            if along > 0:
                contact[t], lowest[t] = along, low
        known = np.isfinite(contact)
        if known.sum() >= SMOOTH_FRAMES:
            filled = np.interp(np.arange(n), np.flatnonzero(known), contact[known])
            contact = np.where(known, percentile_filter(filled, SMOOTH_PERCENTILE, size=SMOOTH_FRAMES,
                                                        mode="nearest"), np.nan)
        for t in np.flatnonzero(np.isfinite(contact)):
            seen = members[visible[t, members]]
            point = centres[t] + contact[t] * rays[t, lowest[t]]
            facing = centres[t] - point
            facing -= (facing @ plane.normal) * plane.normal                      # horizontal: an upright board
            facing /= max(np.linalg.norm(facing), 1e-12)
            along = ((point - centres[t]) @ facing) / (rays[t, seen] @ facing)
            ok = along > 0
            depth[t, seen[ok]] = along[ok] * rays_cam[t, seen[ok], 2]
    return depth


@dataclass
class GroundContact:
    """The ground-contact stage's result: plane (None: no ground found) · labels (P,) object of each moving track
    (−1: static) · depth (N, P) camera-frame, NaN where there is no estimate · confidence (N, P) in [0, 1]: the
    share of its object's visible frames that see a contact, times the plane's support (inliers /
    ``SURE_INLIERS``)."""

    plane: GroundPlane | None
    labels: np.ndarray
    depth: np.ndarray
    confidence: np.ndarray

    def to_meta(self) -> dict:
        return {"plane": None if self.plane is None else
                {"normal": self.plane.normal.tolist(), "offset": self.plane.offset, "inliers": self.plane.inliers},
                "objects": int(len(np.unique(self.labels[self.labels >= 0]))),
                "estimated_entries": int(np.isfinite(self.depth).sum())}


def ground_contact(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, static_points: np.ndarray,
                   static: np.ndarray, image_size: tuple[int, int]) -> GroundContact:
    """The stage: (tracks (N, P, 2), visible (N, P), solved cameras, static_points (P, 3) world with NaN where not
    triangulated, static (P,) bool, image_size (W, H)) → depth of the moving tracks from their objects' ground
    contact, with a confidence (module docstring). Objects are grouped from every track outside the static set — as
    the geometry-conditioned network was trained (grouping only the moving state's tracks, without the still ones
    around an object's base, put a rendered orbit's movers at 0.3 % within 10 % instead of 22 %)."""
    plane = fit_ground(static_points[static], cameras)
    labels = group_objects(tracks, visible, ~static, float(np.hypot(*image_size)))
    depth = contact_depth(tracks, visible, cameras, plane, labels, image_size)
    confidence = np.zeros(depth.shape)
    if plane is not None:
        support = min(plane.inliers / SURE_INLIERS, 1.0)
        for label in np.unique(labels[labels >= 0]):
            members = labels == label
            seen = visible[:, members].any(1)
            share = np.isfinite(depth[:, members]).any(1)[seen].mean() if seen.any() else 0.0
            confidence[:, members] = support * share
    confidence[~np.isfinite(depth)] = 0.0
    return GroundContact(plane, labels, depth, confidence)
