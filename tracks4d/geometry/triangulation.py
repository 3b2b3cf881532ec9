"""Tracks placed as static under given cameras: points (general motion) or directions (a camera that only rotates),
and their reprojection errors. Vectorised over tracks."""

from __future__ import annotations

import numpy as np

from .transforms import transform_points

__all__ = ["bearings", "triangulate", "triangulate_robust", "reprojection_errors", "mean_directions", "direction_errors",
           "local_triangulation", "track_slices", "track_groups"]


CHUNK_TRACKS = 2048   # tracks handled at once: on long clips the (frames × tracks) work arrays stay bounded
SPAN_FRAMES = 100     # clips this long or longer: each group of tracks is handled over the frames that see it only


def track_slices(p: int) -> list[slice]:
    """``P`` tracks in consecutive slices of at most ``CHUNK_TRACKS``."""
    return [slice(start, start + CHUNK_TRACKS) for start in range(0, p, CHUNK_TRACKS)]


def track_groups(visible: np.ndarray) -> list[tuple[slice, np.ndarray | slice]]:
    """The tracks of ``visible`` (N, P) in groups of at most ``CHUNK_TRACKS``, each with the frames it needs →
    [(frames slice, tracks (indices or slice))]. Under ``SPAN_FRAMES`` frames every group takes every frame. From
    there, a track is seen only in its span (first to last visible frame): tracks of similar span length (powers of
    two) whose spans start within that length of each other share a group, over the frames of their spans — at most
    about twice the span of each, so the work grows with the observations (linearly in a clip's length, where each
    track lives a bounded number of frames) instead of with frames × tracks."""
    n, p = visible.shape
    if n < SPAN_FRAMES:
        return [(slice(None), c) for c in track_slices(p)]
    seen = visible.any(0)
    first = np.where(seen, visible.argmax(0), 0)
    last = np.where(seen, n - 1 - visible[::-1].argmax(0), 0)
    length = np.ceil(np.log2(last - first + 1)).astype(int)
    groups = []
    for cls in np.unique(length):
        members = np.flatnonzero(length == cls)
        members = members[np.argsort(first[members], kind="stable")]
        starts = first[members]
        at = 0
        while at < members.size:
            stop = min(at + CHUNK_TRACKS, int(np.searchsorted(starts, starts[at] + 2 ** cls)))
            idx = members[at:max(stop, at + 1)]
            groups.append((slice(int(first[idx].min()), int(last[idx].max()) + 1), idx))
            at += idx.size
    return groups


def bearings(tracks: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """tracks (N, P, 2) px · intrinsics (N, 3, 3) → (N, P, 3) unit viewing rays in each camera's frame."""
    rays = np.concatenate([tracks, np.ones(tracks.shape[:-1] + (1,))], -1) @ np.swapaxes(
        np.linalg.inv(intrinsics), 1, 2)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def triangulate(tracks: np.ndarray, visible: np.ndarray, w2c: np.ndarray, intrinsics: np.ndarray,
                frames: np.ndarray | None = None, weights: np.ndarray | None = None) -> np.ndarray:
    """Linear (DLT) triangulation of every track over the frames that see it, in normalised coordinates.

    tracks (N, P, 2) px · visible (N, P) bool · w2c (N, 4, 4) · intrinsics (N, 3, 3) · frames (N,) bool, the frames
    to use (default: all) · weights (N, P) ≥ 0 per observation (default 1) → (P, 3) float64, NaN where fewer than
    two of them see the track or the point lies at infinity."""
    points = np.empty((tracks.shape[1], 3))
    for f, c in track_groups(visible):
        points[c] = _triangulate(tracks[f][:, c], visible[f][:, c], w2c[f], intrinsics[f],
                                 None if frames is None else frames[f], None if weights is None else weights[f][:, c])
    return points


def _triangulate(tracks, visible, w2c, intrinsics, frames, weights) -> np.ndarray:
    """:func:`triangulate` of one group of tracks."""
    use = visible if frames is None else visible & frames[:, None]
    xy = bearings(tracks.astype(np.float64), intrinsics)
    xy = xy[..., :2] / xy[..., 2:]                                             # (N, P, 2) normalised
    proj = w2c[:, :3]                                                          # (N, 3, 4)
    rows = np.concatenate([xy[..., :1] * proj[:, None, 2] - proj[:, None, 0],   # (2N, P, 4)
                           xy[..., 1:] * proj[:, None, 2] - proj[:, None, 1]])
    weight = (use if weights is None else use * weights).astype(np.float64)
    rows = np.transpose(rows * np.sqrt(np.concatenate([weight, weight]))[..., None], (1, 0, 2))  # (P, 2N, 4)
    normal = np.swapaxes(rows, 1, 2) @ rows                                    # (P, 4, 4)
    _, vectors = np.linalg.eigh(normal)
    h = vectors[..., 0]                                                        # smallest eigenvalue
    with np.errstate(divide="ignore", invalid="ignore"):
        points = h[:, :3] / h[:, 3:]
    points[(use.sum(0) < 2) | (np.abs(h[:, 3]) < 1e-12)] = np.nan
    return points


def triangulate_robust(tracks: np.ndarray, visible: np.ndarray, w2c: np.ndarray, intrinsics: np.ndarray,
                       scale_px: float = 2.0, iterations: int = 3) -> np.ndarray:
    """:func:`triangulate` reweighted ``iterations`` times with Cauchy weights 1 / (1 + (e / scale_px)²) of each
    observation's reprojection error e, so a few outlying entries (tracker slips) do not pull a point. → (P, 3)."""
    points = triangulate(tracks, visible, w2c, intrinsics)
    for _ in range(iterations):
        errors = np.minimum(reprojection_errors(np.nan_to_num(points), tracks, w2c, intrinsics, visible), 1e6)
        points = triangulate(tracks, visible, w2c, intrinsics, weights=1.0 / (1.0 + (errors / scale_px) ** 2))
    return points


def reprojection_errors(points: np.ndarray, tracks: np.ndarray, w2c: np.ndarray,
                        intrinsics: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """points (P, 3) · tracks (N, P, 2) → (N, P) px (inf behind a camera or where a point is NaN). With ``visible``
    (N, P) the errors are computed over each track group's frames only (:func:`track_groups`): entries outside them
    are inf — for callers that read the visible entries only."""
    groups = [(slice(None), c) for c in track_slices(tracks.shape[1])] if visible is None else track_groups(visible)
    if len(groups) == 1 and groups[0][0] == slice(None):
        return _errors(points, tracks, w2c, intrinsics)
    errors = np.full(tracks.shape[:2], np.inf)
    for f, c in groups:
        errors[f, c] = _errors(points[c], tracks[f][:, c], w2c[f], intrinsics[f])
    return errors


def _errors(points, tracks, w2c, intrinsics) -> np.ndarray:
    """:func:`reprojection_errors` of one group of tracks."""
    cam = transform_points(w2c, points)
    pix = np.einsum("nij,npj->npi", intrinsics, cam)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.linalg.norm(pix[..., :2] / pix[..., 2:] - tracks, axis=-1)
    return np.where((cam[..., 2] > 1e-6) & np.isfinite(err), err, np.inf)


def mean_directions(tracks: np.ndarray, visible: np.ndarray, w2c: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """A track as a point at infinity: the mean world direction of its rays over the frames that see it.

    → (P, 3) unit vectors, NaN for a track no frame sees."""
    world = np.einsum("nji,npj->npi", w2c[:, :3, :3], bearings(tracks.astype(np.float64), intrinsics))
    total = np.where(visible[..., None], world, 0.0).sum(0)
    norm = np.linalg.norm(total, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, total / norm, np.nan)


def direction_errors(directions: np.ndarray, tracks: np.ndarray, w2c: np.ndarray,
                     intrinsics: np.ndarray) -> np.ndarray:
    """directions (P, 3) world unit vectors · tracks (N, P, 2) → (N, P) px between each track and its direction
    seen by the camera's rotation (inf behind the camera)."""
    cam = np.einsum("nij,pj->npi", w2c[:, :3, :3], directions)
    pix = np.einsum("nij,npj->npi", intrinsics, cam)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.linalg.norm(pix[..., :2] / pix[..., 2:] - tracks, axis=-1)
    return np.where((cam[..., 2] > 1e-6) & np.isfinite(err), err, np.inf)


LOCAL_HALF_WINDOW = 5   # frames on each side that :func:`local_triangulation` uses


def local_triangulation(tracks: np.ndarray, visible: np.ndarray, w2c: np.ndarray, intrinsics: np.ndarray,
                        half_window: int = LOCAL_HALF_WINDOW) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every track triangulated in every frame t over frames t ± ``half_window`` only, as if it stood still there
    (midpoint method: the point nearest all the window's rays) — a slow mover's depth where the camera moves more
    than it does.

    tracks (N, P, 2) px · visible (N, P) bool · w2c (N, 4, 4) · intrinsics (N, 3, 3) → (depth (N, P) camera-frame z
    in frame t, NaN where fewer than 3 rays or they are near parallel · residual (N, P): RMS distance of the point
    from the window's rays over its depth (≈ px / focal) · parallax (N, P): the rays' spread, √ of the smallest
    eigenvalue of Σ(I − d dᵀ) over the ray count, ≈ the widest angle between them in radians)."""
    n, p = visible.shape
    c2w = np.linalg.inv(w2c)
    d = np.einsum("nij,npj->npi", c2w[:, :3, :3], bearings(tracks.astype(np.float64), intrinsics))  # world rays
    centre = np.broadcast_to(c2w[:, None, :3, 3], (n, p, 3))
    use = visible.astype(np.float64)[..., None, None]
    m = (np.eye(3) - d[..., :, None] * d[..., None, :]) * use                  # (N, P, 3, 3)
    mc = np.einsum("npij,npj->npi", m, centre)
    cmc = np.einsum("npi,npi->np", centre, mc)

    def window_sum(x):
        padded = np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(x, 0)])
        lo = np.clip(np.arange(n) - half_window, 0, n)
        hi = np.clip(np.arange(n) + half_window + 1, 0, n)
        return padded[hi] - padded[lo]

    a, b, s, count = window_sum(m), window_sum(mc), window_sum(cmc), window_sum(use[..., 0, 0])
    eig = np.linalg.eigvalsh(a)[..., 0]
    good = (count >= 3) & (eig > 1e-9)
    point = np.linalg.solve(np.where(good[..., None, None], a, np.eye(3)), np.where(good[..., None], b, 0.0)[..., None])
    point = point[..., 0]
    z = np.einsum("nj,npj->np", w2c[:, 2, :3], point) + w2c[:, None, 2, 3]
    cost = np.maximum(np.einsum("npi,npij,npj->np", point, a, point) - 2 * np.einsum("npi,npi->np", point, b) + s, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = np.sqrt(cost / np.maximum(count, 1)) / np.abs(z)
        parallax = np.sqrt(np.maximum(eig, 0) / np.maximum(count, 1))
    good &= z > 0
    return np.where(good, z, np.nan), np.where(good, residual, np.nan), np.where(good, parallax, 0.0)
