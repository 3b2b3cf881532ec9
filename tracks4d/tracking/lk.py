"""The built-in point tracker: the paper's query schedule with OpenCV pyramidal Lucas–Kanade.

A G×G grid of queries at frames 0, q, 2q, … and the last frame; every query is tracked forwards and backwards over
the whole clip, one frame at a time, with a forward–backward consistency check at every step. A point that fails a
check (or leaves the image, or loses texture) is lost for good in that direction. Tracks visible in too few frames
are dropped (:func:`tracks4d.contracts.min_visible_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..contracts import TrackSet, min_visible_frames
from ..io.video import Clip, read_video

__all__ = ["TrackerConfig", "TRACKERS", "query_frames", "grid_points", "track_frames", "track_clip", "track_video"]


@dataclass(frozen=True)
class TrackerConfig:
    """grid: G of the G×G query grid · query_every: frames between query sets · window: LK window (px) ·
    levels: pyramid levels above the base · fb_threshold: max forward–backward error (px, working resolution) ·
    max_error: max LK patch error (mean abs grey difference) · min_texture: minimum eigenvalue of the gradient
    covariance around a query (``cv2.cornerMinEigenVal``; flat queries are not seeded)."""

    grid: int = 15
    query_every: int = 20
    window: int = 21
    levels: int = 3
    fb_threshold: float = 1.0
    max_error: float = 25.0
    min_texture: float = 1e-5

    def __post_init__(self) -> None:
        if self.grid < 1 or self.query_every < 1 or self.window < 3 or self.levels < 0:
            raise ValueError("TrackerConfig: grid >= 1, query_every >= 1, window >= 3 and levels >= 0 required")


def query_frames(n_frames: int, every: int = 20) -> np.ndarray:
    """Frames 0, every, 2·every, … and the last frame, without repeats: (Q,) int."""
    return np.unique(np.append(np.arange(0, n_frames, every), n_frames - 1))


def grid_points(width: int, height: int, grid: int) -> np.ndarray:
    """Cell centres of a grid×grid layout over the image: (grid², 2) float32 pixel (x, y), row-major."""
    xs = (np.arange(grid) + 0.5) * width / grid - 0.5
    ys = (np.arange(grid) + 0.5) * height / grid - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack((gx.ravel(), gy.ravel()), 1).astype(np.float32)


def _textured(gray: np.ndarray, points: np.ndarray, config: TrackerConfig) -> np.ndarray:
    """(M,) bool: the patch around each point has enough texture (minimum eigenvalue of its gradient covariance)."""
    eig = cv2.cornerMinEigenVal(gray, blockSize=config.window // 2 | 1, ksize=3)
    xi = np.clip(np.round(points[:, 0]).astype(int), 0, gray.shape[1] - 1)
    yi = np.clip(np.round(points[:, 1]).astype(int), 0, gray.shape[0] - 1)
    return eig[yi, xi] > config.min_texture


def track_frames(frames: np.ndarray, config: TrackerConfig = TrackerConfig(), progress: bool = False) -> TrackSet:
    """Track the paper's query grid through ``frames``.

    frames: (N, H, W, 3) uint8 RGB, N ≥ 2 → TrackSet with tracks (N, P, 2) in the frames' pixels, visible (N, P),
    query_frame (P,), image_size (W, H). Invisible entries hold the nearest visible position.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (N>=2, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    n, h, w = frames.shape[:3]
    win = (config.window, config.window)
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    queries = query_frames(n, config.query_every)
    grid = grid_points(w, h, config.grid)
    seeds, seed_frame = [], []
    for q in queries:
        keep = _textured(grays[q], grid, config)
        seeds.append(grid[keep])
        seed_frame.append(np.full(int(keep.sum()), q))
    seeds, seed_frame = np.concatenate(seeds), np.concatenate(seed_frame)
    p = len(seeds)
    tracks = np.zeros((n, p, 2), np.float32)
    visible = np.zeros((n, p), bool)
    lk = dict(winSize=win, maxLevel=config.levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    bar = tqdm(total=2 * (n - 1), desc="tracking (LK)", disable=not progress, leave=False)
    for step in (1, -1):
        active = np.zeros(p, bool)
        pos = np.zeros((p, 2), np.float32)
        for t in (range(n - 1) if step == 1 else range(n - 1, 0, -1)):
            new = seed_frame == t
            pos[new], active[new] = seeds[new], True
            tracks[t, new], visible[t, new] = seeds[new], True
            idx = np.flatnonzero(active)
            bar.update(1)
            if idx.size == 0:
                continue
            nxt = grays[t + step]
            fwd, st1, err = cv2.calcOpticalFlowPyrLK(grays[t], nxt, pos[idx], None, **lk)
            back, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, grays[t], fwd, None, **lk)
            ok = ((st1[:, 0] == 1) & (st2[:, 0] == 1) & (err[:, 0] < config.max_error)
                  & (np.linalg.norm(back - pos[idx], axis=1) < config.fb_threshold)
                  & (fwd[:, 0] >= 0) & (fwd[:, 0] <= w - 1) & (fwd[:, 1] >= 0) & (fwd[:, 1] <= h - 1))
            pos[idx[ok]] = fwd[ok]
            active[idx[~ok]] = False
            tracks[t + step, idx[ok]] = fwd[ok]
            visible[t + step, idx[ok]] = True
        last = n - 1 if step == 1 else 0  # seeds at the sweep's last frame are placed but not tracked further
        new = seed_frame == last
        tracks[last, new], visible[last, new] = seeds[new], True
    bar.close()
    keep = visible.sum(0) > min_visible_frames(n)
    if not keep.any():
        raise ValueError(f"no track stays visible in more than {min_visible_frames(n)} of {n} frames "
                         f"(untextured or too short a clip?)")
    tracks, visible = _fill_invisible(tracks[:, keep], visible[:, keep]), visible[:, keep]
    return TrackSet(tracks, visible, image_size=np.array([w, h]), query_frame=seed_frame[keep])


def _fill_invisible(tracks: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """Give invisible entries the nearest earlier visible position (the next one before the first visible)."""
    n = tracks.shape[0]
    idx = np.where(visible, np.arange(n)[:, None], -1)
    earlier = np.maximum.accumulate(idx, axis=0)
    later = np.flip(np.minimum.accumulate(np.flip(np.where(visible, np.arange(n)[:, None], n), 0), axis=0), 0)
    source = np.where(earlier >= 0, earlier, later)
    return np.take_along_axis(tracks, source[..., None].repeat(2, -1), axis=0)


TRACKERS = ("lk", "cotracker")


def track_clip(clip: Clip, config: TrackerConfig = TrackerConfig(), *, tracker: str = "lk",
               checkpoint: str | Path | None = None, device: str = "cpu", progress: bool = False) -> TrackSet:
    """Track a decoded clip at its working resolution with the built-in tracker ("lk") or CoTracker; the result is
    in the input's own pixel coordinates, with its image size."""
    if tracker == "lk":
        ts = track_frames(clip.frames, config, progress)
    elif tracker == "cotracker":
        from .cotracker import load_cotracker, track_frames_cotracker

        ts = track_frames_cotracker(clip.frames, load_cotracker(checkpoint, device), config, device)
    else:
        raise ValueError(f"unknown tracker {tracker!r}; choose one of {TRACKERS}")
    return TrackSet(clip.to_source_pixels(ts.tracks).astype(np.float32), ts.visible,
                    image_size=np.array(clip.source_size), query_frame=ts.query_frame)


def track_video(path: str | Path, *, stride: int = 1, max_frames: int | None = None, long_side: int | None = 640,
                config: TrackerConfig = TrackerConfig(), tracker: str = "lk", checkpoint: str | Path | None = None,
                progress: bool = False) -> TrackSet:
    """Decode a video (file or frame folder) and track it (:func:`track_clip`): tracks in input pixels."""
    clip = read_video(path, stride=stride, max_frames=max_frames, long_side=long_side)
    return track_clip(clip, config, tracker=tracker, checkpoint=checkpoint, progress=progress)
