"""Cameras from the tracks alone: an essential matrix between two well-separated frames, then PnP frame by frame
with new points triangulated as frames are added (OpenCV RANSAC throughout, so moving tracks are outliers).

One of the two seeds of the camera stage (:mod:`tracks4d.geometry.cameras`; the other is the network's cameras).
Scale and world frame are arbitrary (the initial pair's first frame at the origin, unit distance to its second).
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from scipy.spatial import Delaunay, QhullError

from .transforms import invert_rigid, transform_points
from .triangulation import reprojection_errors as _errors
from .triangulation import triangulate

__all__ = ["cameras_from_tracks", "consistent_static", "enclosed"]

MIN_SHARED = 40        # tracks the initial pair must share
MIN_PNP = 12           # 3D points a frame must see to be posed
MAX_PNP_POINTS = 120   # at most this many of them enter its PnP
RANSAC_PX = 3.0
MIN_PARALLAX_DEG = 1.0  # a point seen under a smaller angle is too close to infinity to place
MAX_DEPTH_RATIO = 20.0  # a point farther than this × the typical depth is a degenerate triangulation
INITIAL_REFERENCES = (0.0, 0.35, 0.7)  # where in the clip initial pairs are tried
TRIANGULATE_EVERY = 3  # posed frames between triangulations of the tracks not yet placed
SECOND_MOTION = 0.15  # the tracks an essential matrix leaves out, when this share of the pair's: their motion too
KEPT_SHARE = 0.5     # a reference's near partner still sees this share of the tracks the far pair's motion leaves out
MAX_PAIR_GAP = 60  # frames between the two of an initial pair (keeps the search linear in the clip's length)
SURROUNDED = 0.8   # the far pair's dominant motion encloses this share of the rest in the reference: it is the scene


def consistent_static(points, tracks, visible, w2c, k, posed) -> np.ndarray:
    """(P,) bool: triangulated, in front of and within ``RANSAC_PX`` (median) of the posed frames that see it, and
    seen under ≥ ``MIN_PARALLAX_DEG`` at a depth below ``MAX_DEPTH_RATIO`` × the typical one — a static point that can be
    placed; drift, outliers and moving tracks fail."""
    seen = visible & posed[:, None]
    err = np.where(seen, _errors(points, tracks, w2c, k, seen), np.nan)
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


def _initial_pairs(tracks: np.ndarray, visible: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Candidate initial pairs, one per reference frame ``INITIAL_REFERENCES`` (fractions of the clip; the first
    ``allowed`` frame from there that shares enough tracks): the reference and the later allowed frame, at most
    ``MAX_PAIR_GAP`` on, sharing ≥ MIN_SHARED tracks with it whose median displacement is largest (parallax for the
    essential matrix)."""
    n = tracks.shape[0]
    pairs = []
    for start in sorted({int(q * (n - 1)) for q in INITIAL_REFERENCES}):
        for r in (f for f in range(start, n - 1) if allowed[f]):
            best, best_motion = None, 0.0
            for j in (f for f in range(r + 1, min(r + MAX_PAIR_GAP + 1, n)) if allowed[f]):
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


def enclosed(hull: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(M,) bool: ``points`` (M, 2) inside the convex hull of ``hull`` (K, 2) — none when K < 3 or collinear."""
    if len(hull) < 3 or len(points) == 0:
        return np.zeros(len(points), bool)
    try:
        return Delaunay(hull).find_simplex(points) >= 0
    except QhullError:
        return np.zeros(len(points), bool)


def _near_partner(tracks: np.ndarray, visible: np.ndarray, allowed: np.ndarray, r: int, far: int,
                  dominant: np.ndarray) -> int | None:
    """The farthest allowed frame between ``r`` and ``far`` that still sees ``KEPT_SHARE`` of the ``others`` —
    the reference's tracks the far pair's ``dominant`` (P,) motion does not explain — or None when they are fewer
    than ``MIN_SHARED`` or the dominant motion's tracks enclose ``SURROUNDED`` of them in the image (the scene
    around a few movers and lost tracks). Where the camera follows a large mover, the far partner shares little but
    the mover; the scene around it is still in view nearer the reference."""
    others = visible[r] & ~dominant
    if others.sum() < MIN_SHARED or enclosed(tracks[r, dominant & visible[r]], tracks[r, others]).mean() >= SURROUNDED:
        return None                          # too few, or the dominant motion surrounds them: it is the scene's
    need = max(MIN_SHARED, KEPT_SHARE * others.sum())
    kept = [j for j in range(r + 1, far) if allowed[j] and (visible[j] & others).sum() >= need]
    return kept[-1] if kept else None


def _relative_pose(tracks: np.ndarray, visible: np.ndarray, k: np.ndarray, r: int, j: int, usable: np.ndarray):
    """Essential matrix between frames r and j from the ``usable`` (P,) tracks both see → (w2c of j relative to r
    (4, 4), (P,) bool RANSAC inliers), or None."""
    both = np.flatnonzero(visible[r] & visible[j] & usable)
    if both.size < MIN_SHARED:
        return None
    e, mask = cv2.findEssentialMat(tracks[r, both], tracks[j, both], k[r], cv2.RANSAC, 0.999, RANSAC_PX)
    if e is None or e.shape != (3, 3):
        return None
    _, rot, t, mask = cv2.recoverPose(e, tracks[r, both], tracks[j, both], k[r], mask=mask)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rot, t[:, 0]
    inliers = np.zeros(tracks.shape[1], bool)
    inliers[both[mask.ravel() > 0]] = True
    return pose, inliers


def _grow(tracks: np.ndarray, visible: np.ndarray, k: np.ndarray, r: int, j: int, relative: np.ndarray,
          inliers: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Poses from the initial pair (r, j) at ``relative`` pose, its essential matrix's ``inliers`` (P,) triangulated
    first, then frames outward by PnP against the points so far, each triangulating the ``usable`` (P,) tracks it
    newly sees (another motion's tracks never enter: over a few frames they can fit, then outvote the points)
    → (w2c (N, 4, 4), posed (N,))."""
    n = tracks.shape[0]
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[j] = relative
    posed = np.zeros(n, bool)
    posed[[r, j]] = True
    points = triangulate(tracks, visible, w2c, k, posed)
    pair = [r, j]
    good = (_errors(points, tracks[pair], w2c[pair], k[pair]) < RANSAC_PX).all(0) & inliers
    points[~good] = np.nan
    order = sorted(set(range(n)) - {r, j}, key=lambda f: min(abs(f - r), abs(f - j)))
    pending = np.zeros(n, bool)  # frames posed since the last triangulation of fresh tracks
    for f in order:
        pose = _resect(points, tracks[f], visible[f], k[f])
        if pose is None and pending.any():    # the frame may see tracks the pending frames would place: place them
            _place_fresh(points, tracks, visible & usable, w2c, k, posed, pending)
            pending[:] = False
            pose = _resect(points, tracks[f], visible[f], k[f])
        if pose is None:
            continue
        w2c[f], support = pose
        posed[f] = pending[f] = True
        # triangulating every few frames keeps the cost linear; sooner when the frame's support runs low
        if pending.sum() >= TRIANGULATE_EVERY or support < 3 * MIN_PNP:
            _place_fresh(points, tracks, visible & usable, w2c, k, posed, pending)
            pending[:] = False
    return (w2c, posed) if posed.sum() >= 3 else None


def _resect(points: np.ndarray, pixels: np.ndarray, seen: np.ndarray, k: np.ndarray
            ) -> tuple[np.ndarray, int] | None:
    """A frame's pose by RANSAC PnP against the placed ``points`` (P, 3) it sees (``seen`` (P,), at ``pixels``
    (P, 2)) → (w2c (4, 4), the number of placed points it sees), or None with fewer than ``MIN_PNP`` inliers."""
    use = np.flatnonzero(seen & np.isfinite(points[:, 0]))
    if use.size < MIN_PNP:
        return None
    support = use.size
    if use.size > MAX_PNP_POINTS:                        # a spread-out subset poses a frame as well, faster
        use = use[np.linspace(0, use.size - 1, MAX_PNP_POINTS).astype(int)]
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(points[use], pixels[use], k, None, reprojectionError=RANSAC_PX,
                                                 iterationsCount=100, flags=cv2.SOLVEPNP_AP3P)  # 3× the iterative;
    if not ok or inliers is None or len(inliers) < MIN_PNP:
        return None
    # its final pose comes from EPnP on the inliers: refine it (LM) as the iterative solver would
    inlying = use[inliers[:, 0]]
    rvec, tvec = cv2.solvePnPRefineLM(points[inlying], pixels[inlying], k, None, rvec, tvec)
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = cv2.Rodrigues(rvec)[0], tvec[:, 0]
    return w2c, support


def _place_fresh(points, tracks, visible, w2c, k, posed, pending) -> None:
    """Triangulate, in place, the unplaced tracks that the ``pending`` (newly posed) frames see, over the posed
    frames; those that fail :func:`consistent_static` stay NaN (poses never change during a growth, so a track is
    retried only when it has new observations)."""
    fresh = np.flatnonzero(~np.isfinite(points[:, 0]) & (visible & pending[:, None]).any(0))
    if fresh.size == 0:
        return
    frames = np.flatnonzero(posed)
    sub_tracks, sub_visible = tracks[np.ix_(frames, fresh)], visible[np.ix_(frames, fresh)]
    every = np.ones(frames.size, bool)
    new = triangulate(sub_tracks, sub_visible, w2c[frames], k[frames])
    new[~consistent_static(new, sub_tracks, sub_visible, w2c[frames], k[frames], every)] = np.nan
    points[fresh] = new


def cameras_from_tracks(tracks: np.ndarray, visible: np.ndarray, intrinsics: np.ndarray,
                        allowed: np.ndarray | None = None) -> list[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
    """Cameras grown from each candidate initial pair (:func:`_initial_pairs`, :func:`_grow`): a list of
    ((r, j) initial pair, world-to-camera poses (N, 4, 4), (N,) bool posed frames) — empty when none works. Unposed
    frames get the pose of the nearest posed frame. The caller chooses among them (a pair whose essential matrix
    locked onto a moving object explains fewer tracks as static). Each reference is paired once more, with a nearer
    frame (:func:`_near_partner`), on the tracks its far pair's dominant motion leaves out, where up to two motions
    are grown (:func:`_motions`: a large moving object can outvote the background there too).

    tracks (N, P, 2) px · visible (N, P) bool · intrinsics (N, 3, 3) · allowed (N,) bool: frames an initial pair
    may use (default all; the camera stage passes its general-motion segments)."""
    tracks = tracks.astype(np.float64)
    allowed = np.ones(tracks.shape[0], bool) if allowed is None else allowed
    grown = []
    for r, far in _initial_pairs(tracks, visible, allowed):
        dominant = _motions(tracks, visible, intrinsics, r, far, np.ones(tracks.shape[1], bool), grown, 1)
        if dominant is None:
            continue
        near = _near_partner(tracks, visible, allowed, r, far, dominant)
        if near is not None:
            _motions(tracks, visible, intrinsics, r, near, ~dominant, grown, 2)
    return grown


def _motions(tracks: np.ndarray, visible: np.ndarray, k: np.ndarray, r: int, j: int, usable: np.ndarray,
             grown: list, motions: int) -> np.ndarray | None:
    """Cameras grown, appended to ``grown``, from the pair (r, j)'s dominant motion among the ``usable`` (P,) tracks,
    then — up to ``motions`` — from the next one while the last leaves ``SECOND_MOTION`` of them (and ≥
    ``MIN_SHARED``) out → the dominant motion's inliers (P,) bool, or None when no essential matrix is found."""
    first = None
    for _ in range(motions):
        found = _relative_pose(tracks, visible, k, r, j, usable)
        if found is None:
            break
        relative, inliers = found
        first = inliers if first is None else first
        result = _grow(tracks, visible, k, r, j, relative, inliers, usable)
        if result is not None:
            w2c, posed = result
            idx = np.flatnonzero(posed)
            for f in np.flatnonzero(~posed):
                w2c[f] = w2c[idx[np.argmin(np.abs(idx - f))]]
            grown.append(((r, j), w2c, posed))
        shared = visible[r] & visible[j] & usable
        if (shared & ~inliers).sum() < max(MIN_SHARED, SECOND_MOTION * shared.sum()):
            break
        usable = usable & ~inliers
    return first
