"""Long videos: overlapping windows of at most 50 frames, each reconstructed alone, stitched into one world.

Window k+1 is brought into the world of windows 0..k by a Sim(3) estimated from correspondences it shares with window
k as already moved there: the camera centres of the overlapping frames and the per-frame points of shared tracks there,
robustly (RANSAC over Umeyama fits, then a refit on the inliers), so a window's poorly placed points — moving ones
after bundle adjustment kept only their camera-frame positions — cannot pull the others. Tracks keep their identity:
every output track is an input track.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from ..contracts import Reconstruction, TrackSet, min_visible_frames
from ..geometry.transforms import Sim3, invert_rigid, umeyama_sim3

__all__ = ["window_spans", "split_windows", "Sim3", "robust_sim3", "stitch", "reconstruct_long"]

RANSAC_ITERATIONS = 200
INLIER_FRACTION = 0.1
"""A correspondence is an inlier within this fraction of the target's median distance to its centre."""


def window_spans(n_frames: int, size: int = 50, overlap: int = 10) -> list[tuple[int, int]]:
    """[start, end) spans covering 0..n_frames: the fewest windows of at most ``size`` frames that share ≥ ``overlap``
    frames with the next, all of one length (the network's cost is its frames: 150 frames in four windows of 45
    rather than of 50). One span when the clip fits."""
    if size < 2 or not 0 < overlap < size:
        raise ValueError(f"window size must be >= 2 and 0 < overlap < size, got size {size}, overlap {overlap}")
    if n_frames <= size:
        return [(0, n_frames)]
    count = -(-(n_frames - overlap) // (size - overlap))
    length = -(-(n_frames + (count - 1) * overlap) // count)
    starts = np.linspace(0, n_frames - length, count).round().astype(int)
    return [(int(s), int(s) + length) for s in starts]


def _align(world: Reconstruction, world_frames: np.ndarray, part: Reconstruction, part_frames: np.ndarray,
           part_tracks: np.ndarray, world_tracks: np.ndarray) -> Sim3:
    """Sim(3) taking ``part`` into ``world`` from the shared frames: their camera centres and the per-frame 3D points
    of the shared tracks where visible. A track's point in one frame is one physical point in both windows, moving
    or not, so every visible shared entry is a correspondence (static bases B₁ are not needed)."""
    shared_frames = np.intersect1d(world_frames, part_frames)
    wf, pf = np.searchsorted(world_frames, shared_frames), np.searchsorted(part_frames, shared_frames)
    src = [part.camera_to_world[pf, :3, 3]]
    dst = [world.camera_to_world[wf, :3, 3]]
    common, wi, pi = np.intersect1d(world_tracks, part_tracks, return_indices=True)
    if common.size:
        seen = part.visible[np.ix_(pf, pi)] & world.visible[np.ix_(wf, wi)]
        src.append(part.points[np.ix_(pf, pi)][seen])
        dst.append(world.points[np.ix_(wf, wi)][seen])
    return robust_sim3(np.concatenate(src), np.concatenate(dst))


def robust_sim3(src: np.ndarray, dst: np.ndarray, seed: int = 0) -> Sim3:
    """Sim(3) with dst ≈ s·R·src + t from (M, 3) correspondences of which some are wrong: the Umeyama fit of 3 random
    ones that the most correspondences agree with (within ``INLIER_FRACTION`` of dst's spread), refitted on those.
    Deterministic for a given ``seed``."""
    if len(src) < 3:
        raise ValueError("windows share fewer than 3 correspondences; use a larger overlap")
    threshold = INLIER_FRACTION * float(np.median(np.linalg.norm(dst - np.median(dst, 0), axis=1)))
    rng = np.random.default_rng(seed)
    best = np.ones(len(src), bool)
    best_count = 0
    for _ in range(RANSAC_ITERATIONS):
        pick = rng.choice(len(src), 3, replace=False)
        s, r, t = umeyama_sim3(src[pick], dst[pick])
        inliers = np.linalg.norm(s * src @ r.T + t - dst, axis=1) < threshold
        if inliers.sum() > best_count:
            best, best_count = inliers, int(inliers.sum())
    if best_count < 3:
        best = np.ones(len(src), bool)
    s, r, t = umeyama_sim3(src[best], dst[best])
    return Sim3(s, r, t)


def stitch(tracks: TrackSet, windows: list[tuple[tuple[int, int], np.ndarray, Reconstruction]]) -> Reconstruction:
    """Merge window reconstructions into one covering every frame and track of ``tracks``.

    windows: ((start, end), track indices used (P_k,), reconstruction of frames start..end-1 and those tracks).
    Overlapping frames keep the earlier window's camera; a track's world points in a frame come from the window
    owning that frame when it used the track, else its static point (flagged in ``meta``).
    """
    n, p = tracks.n_frames, tracks.n_points
    (s0, e0), idx0, rec0 = windows[0]
    c2w = np.full((n, 4, 4), np.nan)
    intr = np.zeros((n, 3, 3))
    points = np.full((n, p, 3), np.nan)
    depth = np.full((n, p), np.nan)
    static_sum, static_cnt = np.zeros((p, 3)), np.zeros(p)
    gamma = np.full(p, np.nan)
    world, world_frames, world_tracks = rec0, np.arange(s0, e0), idx0
    reports = []
    for k, ((start, end), idx, rec) in enumerate(windows):
        frames = np.arange(start, end)
        sim = Sim3(1.0, np.eye(3), np.zeros(3)) if k == 0 else _align(world, world_frames, rec, frames, idx,
                                                                        world_tracks)
        moved_c2w = sim.camera_to_world(rec.camera_to_world)
        moved_points = sim.points(rec.points.reshape(-1, 3)).reshape(rec.points.shape)
        new = np.isnan(c2w[frames, 0, 0])
        c2w[frames[new]] = moved_c2w[new]
        intr[frames[new]] = rec.intrinsics[new]
        points[np.ix_(frames[new], idx)] = moved_points[new]
        depth[np.ix_(frames[new], idx)] = sim.scale * rec.depth[new]
        weight = rec.visible.sum(0)
        static_sum[idx] += weight[:, None] * sim.points(rec.static_points)
        static_cnt[idx] += weight
        gamma[idx] = np.where(np.isnan(gamma[idx]), rec.motion_level, np.fmin(gamma[idx], rec.motion_level))
        reports.append({"frames": [int(start), int(end)], "tracks": int(len(idx)), "scale": float(sim.scale),
                        **{key: rec.meta[key] for key in ("bundle_adjustment", "camera_init") if key in rec.meta}})
        world = replace(rec, camera_to_world=moved_c2w, world_to_camera=invert_rigid(moved_c2w), points=moved_points)
        world_frames, world_tracks = frames, idx
    missing_tracks = np.flatnonzero(static_cnt == 0)
    if missing_tracks.size:  # never seen well by any window: keep them, at the scene's centre, flagged
        static_sum[missing_tracks] = np.nanmedian(points.reshape(-1, 3), axis=0)
        static_cnt[missing_tracks] = 1
        gamma[missing_tracks] = np.nanmax(gamma)
    static = static_sum / static_cnt[:, None]
    filled = np.isnan(points[..., 0])
    points[filled] = np.broadcast_to(static, points.shape)[filled]
    w2c = invert_rigid(c2w)
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    depth[np.isnan(depth)] = cam[..., 2][np.isnan(depth)]
    meta = {"stitching": {"windows": reports, "tracks_without_window": missing_tracks.tolist(),
                          "entries_from_static_points": int(filled.sum()),
                          "note": "per-window bases do not span the clip: bases holds B1 only; points are exact"}}
    return Reconstruction(c2w, w2c, intr, points, static, gamma, depth, static[None], np.ones((n, 1)),
                          tracks.tracks, tracks.visible, meta)


def split_windows(tracks: TrackSet, size: int = 50, overlap: int = 10, max_tracks: int | None = None
                  ) -> list[tuple[tuple[int, int], np.ndarray, TrackSet]]:
    """((start, end), track indices, sub-track-set) per window; a window keeps the tracks visible in more than
    :func:`min_visible_frames` of its frames — at most ``max_tracks`` of them, those it sees longest (attention over
    tracks costs ~P²; a track a window leaves out takes its points there from the others, :func:`stitch`)."""
    out = []
    for start, end in window_spans(tracks.n_frames, size, overlap):
        seen = tracks.visible[start:end].sum(0)
        idx = np.flatnonzero(seen > min_visible_frames(end - start))
        if max_tracks is not None and idx.size > max_tracks:
            idx = np.sort(idx[np.argsort(-seen[idx], kind="stable")[:max_tracks]])
        if idx.size == 0:
            raise ValueError(f"frames {start}-{end - 1}: no track is visible in more than "
                             f"{min_visible_frames(end - start)} frames")
        out.append(((start, end), idx, tracks.subset(frames=slice(start, end), points=idx)))
    return out


def reconstruct_long(tracks: TrackSet, run_window: Callable[[TrackSet], Reconstruction], size: int = 50,
                     overlap: int = 10, max_tracks: int | None = None) -> Reconstruction:
    """Reconstruct each window (:func:`split_windows`, ≤ ``max_tracks`` tracks each) with ``run_window`` and
    :func:`stitch` them."""
    return stitch(tracks, [(span, idx, run_window(sub))
                           for span, idx, sub in split_windows(tracks, size, overlap, max_tracks)])
