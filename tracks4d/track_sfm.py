"""Cameras from the tracks alone: an essential matrix between two well-separated frames, then PnP frame by frame
with new points triangulated as frames are added (OpenCV RANSAC throughout, so moving tracks are outliers).

A classical fallback for bundle adjustment when the network's cameras are too far off for BA to start from
(:func:`tracks4d.pipeline.run_pipeline` with ``camera_init="auto"``). Scale and world frame are arbitrary (frame 0 at
the origin, unit distance to the second view of the initial pair).
"""

from __future__ import annotations

import dataclasses
import warnings

import cv2
import numpy as np

from .bundle_adjust import reexpress
from .contracts import Reconstruction
from .geometry import invert_rigid, transform_points

__all__ = ["cameras_from_tracks", "triangulate", "static_tracks", "with_track_cameras"]

MIN_SHARED = 40        # tracks the initial pair must share
MIN_PNP = 12           # 3D points a frame must see to be posed
RANSAC_PX = 3.0
MIN_PARALLAX_DEG = 1.0  # a point seen under a smaller angle is too close to infinity to place
MAX_DEPTH_RATIO = 20.0  # a point farther than this × the typical depth is a degenerate triangulation


def triangulate(tracks: np.ndarray, visible: np.ndarray, w2c: np.ndarray, k: np.ndarray,
                posed: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of every track over the posed frames that see it.

    tracks (N, P, 2) px · visible (N, P) · w2c (N, 4, 4) · k (N, 3, 3) · posed (N,) bool → (P, 3), NaN where fewer
    than two posed frames see the track."""
    proj = k @ w2c[:, :3]                                             # (N, 3, 4)
    out = np.full((tracks.shape[1], 3), np.nan)
    for p in range(tracks.shape[1]):
        frames = np.flatnonzero(visible[:, p] & posed)
        if frames.size < 2:
            continue
        x = tracks[frames, p].astype(np.float64)
        rows = np.concatenate([x[:, :1] * proj[frames, 2] - proj[frames, 0],
                               x[:, 1:] * proj[frames, 2] - proj[frames, 1]])
        h = np.linalg.svd(rows)[2][-1]
        if abs(h[3]) > 1e-12:
            out[p] = h[:3] / h[3]
    return out


def _errors(points: np.ndarray, tracks: np.ndarray, w2c: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(N, P) reprojection errors in px (inf behind the camera or where a point is NaN)."""
    cam = transform_points(w2c, points)
    pix = np.einsum("nij,npj->npi", k, cam)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.linalg.norm(pix[..., :2] / pix[..., 2:] - tracks, axis=-1)
    return np.where(cam[..., 2] > 1e-6, err, np.inf)


def _consistent(points, tracks, visible, w2c, k, posed) -> np.ndarray:
    """(P,) bool: triangulated, in front of and within ``RANSAC_PX`` (median) of the posed frames that see it, and
    seen under ≥ ``MIN_PARALLAX_DEG`` at a depth below ``MAX_DEPTH_RATIO`` × the typical one — a static point that can be
    placed; drift, outliers and moving tracks fail."""
    seen = visible & posed[:, None]
    err = np.where(seen, _errors(points, tracks, w2c, k), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)              # all-NaN columns: unseen tracks
        median = np.nanmedian(err, axis=0)
    # parallax: the angle between the rays from the first and the last frame that see the point
    centres = invert_rigid(w2c)[:, :3, 3]
    first, last = seen.argmax(0), seen.shape[0] - 1 - seen[::-1].argmax(0)
    a, b = np.nan_to_num(points) - centres[first], np.nan_to_num(points) - centres[last]
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    depth = transform_points(w2c, np.nan_to_num(points))[..., 2]
    placed = np.isfinite(points[:, 0]) & (median < RANSAC_PX) & (cosine < np.cos(np.radians(MIN_PARALLAX_DEG)))
    if not placed.any():
        return placed
    # depth sanity: in front of every frame that sees it and not absurdly far (near-degenerate triangulations)
    typical = float(np.median(depth[seen & placed[None]]))
    near = np.where(seen, depth, typical)
    return placed & (near.min(0) > 0) & (near.max(0) < MAX_DEPTH_RATIO * typical)


def _initial_pair(tracks: np.ndarray, visible: np.ndarray) -> tuple[int, int] | None:
    """Frame 0 (or the first frame that shares enough tracks) and the frame sharing ≥ MIN_SHARED tracks with it whose
    median displacement is largest (parallax for the essential matrix)."""
    n = tracks.shape[0]
    for r in range(n - 1):
        best, best_motion = None, 0.0
        for j in range(r + 1, n):
            both = visible[r] & visible[j]
            if both.sum() < MIN_SHARED:
                break
            motion = float(np.median(np.linalg.norm(tracks[j, both] - tracks[r, both], axis=1)))
            if motion > best_motion:
                best, best_motion = j, motion
        if best is not None:
            return r, best
    return None


def cameras_from_tracks(tracks: np.ndarray, visible: np.ndarray, intrinsics: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """World-to-camera poses (N, 4, 4) and a (N,) bool mask of the posed frames, or None when no initial pair works.

    tracks (N, P, 2) px · visible (N, P) bool · intrinsics (N, 3, 3). Unposed frames get the pose of the nearest
    posed frame (and are False in the mask)."""
    tracks = tracks.astype(np.float64)
    n = tracks.shape[0]
    pair = _initial_pair(tracks, visible)
    if pair is None:
        return None
    r, j = pair
    both = visible[r] & visible[j]
    k = intrinsics
    e, mask = cv2.findEssentialMat(tracks[r, both], tracks[j, both], k[r], cv2.RANSAC, 0.999, RANSAC_PX)
    if e is None or e.shape != (3, 3):
        return None
    _, rot, t, _ = cv2.recoverPose(e, tracks[r, both], tracks[j, both], k[r], mask=mask)
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[j, :3, :3], w2c[j, :3, 3] = rot, t[:, 0]
    posed = np.zeros(n, bool)
    posed[[r, j]] = True
    points = triangulate(tracks, visible, w2c, k, posed)
    good = (_errors(points, tracks, w2c, k)[[r, j]] < RANSAC_PX).all(0) & visible[r] & visible[j]
    points[~good] = np.nan
    # add frames outward from the pair, each by PnP against the points so far, then triangulate with it
    order = sorted(set(range(n)) - {r, j}, key=lambda f: min(abs(f - r), abs(f - j)))
    for f in order:
        seen = visible[f] & np.isfinite(points[:, 0])
        if seen.sum() < MIN_PNP:
            continue
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(points[seen], tracks[f, seen], k[f], None,
                                                     reprojectionError=RANSAC_PX, iterationsCount=200)
        if not ok or inliers is None or len(inliers) < MIN_PNP:
            continue
        w2c[f, :3, :3], w2c[f, :3, 3] = cv2.Rodrigues(rvec)[0], tvec[:, 0]
        posed[f] = True
        fresh = visible[f] & ~np.isfinite(points[:, 0])
        if fresh.any():
            new = triangulate(tracks[:, fresh], visible[:, fresh], w2c, k, posed)
            new[~_consistent(new, tracks[:, fresh], visible[:, fresh], w2c, k, posed)] = np.nan
            points[fresh] = new
    if posed.sum() < 3:
        return None
    idx = np.flatnonzero(posed)
    for f in np.flatnonzero(~posed):
        w2c[f] = w2c[idx[np.argmin(np.abs(idx - f))]]
    return w2c, posed


def static_tracks(rec: Reconstruction) -> np.ndarray:
    """(P,) bool: tracks that triangulate, under ``rec``'s own cameras, as static points consistent with every frame
    that sees them (:func:`_consistent`) — the static points to adjust when γ cannot be trusted."""
    tracks = rec.tracks.astype(np.float64)
    posed = np.ones(len(rec.camera_to_world), bool)
    tri = triangulate(tracks, rec.visible, rec.world_to_camera, rec.intrinsics, posed)
    return _consistent(tri, tracks, rec.visible, rec.world_to_camera, rec.intrinsics, posed)


def with_track_cameras(rec: Reconstruction) -> tuple[Reconstruction, np.ndarray] | None:
    """``rec`` with cameras from :func:`cameras_from_tracks`, and the (P,) bool mask of tracks that triangulate as
    static points (:func:`_consistent`; they replace those tracks' points, γ unchanged). Every other point keeps its
    camera-frame position, scaled by the median ratio of triangulated to network depth. None when the tracks give
    no cameras."""
    found = cameras_from_tracks(rec.tracks, rec.visible, rec.intrinsics)
    if found is None:
        return None
    w2c, posed = found
    tracks = rec.tracks.astype(np.float64)
    tri = triangulate(tracks, rec.visible, w2c, rec.intrinsics, posed)
    good = _consistent(tri, tracks, rec.visible, w2c, rec.intrinsics, posed)
    old_depth = transform_points(rec.world_to_camera, rec.points.astype(np.float64))[..., 2]
    tri_depth = transform_points(w2c, np.nan_to_num(tri))[..., 2]
    pairs = rec.visible & posed[:, None] & good[None] & (old_depth > 1e-6)
    if pairs.sum() < 10:
        return None
    scale = float(np.median(tri_depth[pairs] / old_depth[pairs]))
    points = reexpress(rec, w2c, scale)
    points[:, good] = tri[good][None]
    static = np.median(points, axis=0)
    static[good] = tri[good]
    depth = transform_points(w2c, points)[..., 2]
    meta = {**rec.meta, "camera_init": {"from": "tracks", "posed_frames": int(posed.sum()),
                                        "static_tracks": int(good.sum()), "scale": scale}}
    return dataclasses.replace(rec, camera_to_world=invert_rigid(w2c), world_to_camera=w2c, points=points.astype(rec.points.dtype),
                               static_points=static.astype(rec.static_points.dtype),
                               depth=depth.astype(rec.depth.dtype), meta=meta), good
