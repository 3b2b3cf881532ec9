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
from ..contracts import Reconstruction
from .transforms import invert_rigid, transform_points

__all__ = ["cameras_from_tracks", "triangulate", "triangulated_static", "static_tracks", "with_track_cameras"]

MIN_SHARED = 40        # tracks the initial pair must share
MIN_PNP = 12           # 3D points a frame must see to be posed
RANSAC_PX = 3.0
MIN_PARALLAX_DEG = 1.0  # a point seen under a smaller angle is too close to infinity to place
MAX_DEPTH_RATIO = 20.0  # a point farther than this × the typical depth is a degenerate triangulation
INITIAL_REFERENCES = (0.0, 0.35, 0.7)  # where in the clip initial pairs are tried


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


def _static_points(tracks, visible, w2c, k, posed) -> tuple[np.ndarray, np.ndarray]:
    """Every track triangulated over the posed frames (:func:`triangulate`) and the (P,) mask of those that are
    consistent static points (:func:`_consistent`)."""
    points = triangulate(tracks, visible, w2c, k, posed)
    return points, _consistent(points, tracks, visible, w2c, k, posed)


def _initial_pairs(tracks: np.ndarray, visible: np.ndarray) -> list[tuple[int, int]]:
    """Candidate initial pairs, one per reference frame ``INITIAL_REFERENCES`` (fractions of the clip; the first frame
    from there that shares enough tracks): the reference and the later frame sharing ≥ MIN_SHARED tracks with it
    whose median displacement is largest (parallax for the essential matrix)."""
    n = tracks.shape[0]
    pairs = []
    for start in sorted({int(q * (n - 1)) for q in INITIAL_REFERENCES}):
        for r in range(start, n - 1):
            best, best_motion = None, 0.0
            for j in range(r + 1, n):
                both = visible[r] & visible[j]
                if both.sum() < MIN_SHARED:
                    break
                motion = float(np.median(np.linalg.norm(tracks[j, both] - tracks[r, both], axis=1)))
                if motion > best_motion:
                    best, best_motion = j, motion
            if best is not None:
                if (r, best) not in pairs:
                    pairs.append((r, best))
                break
    return pairs


def _grow(tracks: np.ndarray, visible: np.ndarray, k: np.ndarray, r: int, j: int
          ) -> tuple[np.ndarray, np.ndarray] | None:
    """Poses from the initial pair (r, j): essential matrix, then frames outward by PnP against the points so far,
    each triangulating the tracks it newly sees → (w2c (N, 4, 4), posed (N,))."""
    n = tracks.shape[0]
    both = visible[r] & visible[j]
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
    return (w2c, posed) if posed.sum() >= 3 else None


def _placed(tracks: np.ndarray, visible: np.ndarray, intrinsics: np.ndarray):
    """(w2c (N, 4, 4), posed (N,), triangulated points (P, 3), consistent static mask (P,)) of the chosen initial
    pair, or None (:func:`cameras_from_tracks` says how it is chosen)."""
    grown = []
    for r, j in _initial_pairs(tracks, visible):
        found = _grow(tracks, visible, intrinsics, r, j)
        if found is None:
            continue
        w2c, posed = found
        tri, static = _static_points(tracks, visible, w2c, intrinsics, posed)
        seen = visible & posed[:, None] & static[None]
        error = float(np.median(_errors(tri, tracks, w2c, intrinsics)[seen])) if seen.any() else np.inf
        grown.append((w2c, posed, tri, static, error))
    if not grown:
        return None
    chosen = grown[0]
    if any(g[1].sum() > chosen[1].sum() / 0.9 or 1.5 * g[4] < chosen[4] for g in grown[1:]):
        most_posed = max(g[1].sum() for g in grown)
        chosen = min((g for g in grown if g[1].sum() >= 0.9 * most_posed), key=lambda g: g[4])
    w2c, posed, tri, static, _ = chosen
    idx = np.flatnonzero(posed)
    for f in np.flatnonzero(~posed):
        w2c[f] = w2c[idx[np.argmin(np.abs(idx - f))]]
    return w2c, posed, tri, static


def cameras_from_tracks(tracks: np.ndarray, visible: np.ndarray, intrinsics: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """World-to-camera poses (N, 4, 4) and a (N,) bool mask of the posed frames, or None when no initial pair works.

    tracks (N, P, 2) px · visible (N, P) bool · intrinsics (N, 3, 3). Every candidate initial pair
    (:func:`_initial_pairs`) is grown (:func:`_grow`). The first (from the clip's start) is kept unless another poses
    over 1/0.9 × its frames or reprojects its consistent static points 1.5× better (median error: an early wrong turn
    bends the cameras and shows there); then kept is the best-reprojecting of those posing ≥ 90 % of the most
    frames. Unposed frames get the pose of the nearest posed frame (and are False in the mask)."""
    found = _placed(tracks.astype(np.float64), visible, intrinsics)
    return None if found is None else found[:2]


def triangulated_static(rec: Reconstruction) -> tuple[np.ndarray, np.ndarray]:
    """(points (P, 3), static (P,) bool): every track triangulated under ``rec``'s own cameras, and which of those
    are static points consistent with every frame that sees them (:func:`_consistent`)."""
    return _static_points(rec.tracks.astype(np.float64), rec.visible, rec.world_to_camera, rec.intrinsics,
                          np.ones(rec.n_frames, bool))


def static_tracks(rec: Reconstruction) -> np.ndarray:
    """(P,) bool: the tracks :func:`triangulated_static` finds static — the static points to adjust when γ cannot be
    trusted."""
    return triangulated_static(rec)[1]


def with_track_cameras(rec: Reconstruction) -> tuple[Reconstruction, np.ndarray] | None:
    """``rec`` with cameras from :func:`cameras_from_tracks`, and the (P,) bool mask of tracks that triangulate as
    static points (:func:`_consistent`; they replace those tracks' points, γ unchanged). Every other point keeps its
    camera-frame position, scaled by the median ratio of triangulated to network depth. None when the tracks give
    no cameras."""
    found = _placed(rec.tracks.astype(np.float64), rec.visible, rec.intrinsics)
    if found is None:
        return None
    w2c, posed, tri, good = found
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
