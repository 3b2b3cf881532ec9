"""The built-in point tracker: the paper's query schedule with OpenCV pyramidal Lucas–Kanade, and a confidence for
every entry.

A G×G grid of queries at frames 0, q, 2q, … and the last frame — and, halfway between them, a query in every grid
cell that no track then occupies; every query is tracked forwards and backwards over
the whole clip, one frame at a time, on photometrically normalised frames (each frame's grey levels scaled to a
fixed mean and spread, so exposure drift does not look like motion to LK), with a forward–backward consistency check
at every step. A point that fails a check (or leaves the image, or loses texture) is lost for good in that direction.

Each entry carries a confidence in [0, 1] (:func:`entry_confidence`): how well the patch around it matches the
track's own template (normalised cross-correlation with the patch at its query), its forward–backward error and the
texture under it (the structure tensor's smaller eigenvalue). A track whose patch stops matching its template for
``cut_frames`` steps in a row has jumped to something else: it is *cut* — it ends before those frames, and a new
track starts there with a template of its own (one broken track would glue two surfaces together). The confidence
is kept beside the visibility (users and later stages weigh it); tracks visible in too few frames are dropped
(:func:`tracks4d.contracts.min_visible_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..contracts import TrackSet, min_visible_frames
from ..io.video import Clip, read_video

__all__ = ["TrackerConfig", "TRACKERS", "query_frames", "grid_points", "normalised_grey", "entry_confidence",
           "track_frames", "track_clip", "track_video"]


@dataclass(frozen=True)
class TrackerConfig:
    """grid: G of the G×G query grid · query_every: frames between query sets · window: LK window (px) ·
    levels: pyramid levels above the base · fb_threshold: max forward–backward error (px, working resolution) ·
    max_error: max LK patch error (mean abs grey difference) · min_texture: minimum eigenvalue of the gradient
    covariance around a query (``cv2.cornerMinEigenVal``; flat queries are not seeded) · template: side (px) of
    the patch compared with the track's template · cut_ncc / cut_frames: a track whose template correlation stays
    below cut_ncc for cut_frames steps is cut there · fill: add queries where the tracks are sparse, halfway
    between query frames (:func:`_sparse_queries`)."""

    grid: int = 15
    query_every: int = 20
    window: int = 21
    levels: int = 3
    fb_threshold: float = 1.0
    max_error: float = 25.0
    min_texture: float = 1e-5
    template: int = 11
    cut_ncc: float = 0.4
    cut_frames: int = 2
    fill: bool = True

    def __post_init__(self) -> None:
        if self.grid < 1 or self.query_every < 1 or self.window < 3 or self.levels < 0:
            raise ValueError("TrackerConfig: grid >= 1, query_every >= 1, window >= 3 and levels >= 0 required")
        if self.template < 3 or self.cut_frames < 1:
            raise ValueError("TrackerConfig: template >= 3 and cut_frames >= 1 required")


def query_frames(n_frames: int, every: int = 20) -> np.ndarray:
    """Frames 0, every, 2·every, … and the last frame, without repeats: (Q,) int."""
    return np.unique(np.append(np.arange(0, n_frames, every), n_frames - 1))


def grid_points(width: int, height: int, grid: int) -> np.ndarray:
    """Cell centres of a grid×grid layout over the image: (grid², 2) float32 pixel (x, y), row-major."""
    xs = (np.arange(grid) + 0.5) * width / grid - 0.5
    ys = (np.arange(grid) + 0.5) * height / grid - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack((gx.ravel(), gy.ravel()), 1).astype(np.float32)


def normalised_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W) uint8 grey with mean 128 and standard deviation 48 (a global gain and offset:
    exposure drift removed, local contrast kept)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.clip((grey - grey.mean()) * (48.0 / (grey.std() + 1e-6)) + 128.0, 0, 255).astype(np.uint8)


def _texture_at(eig: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(M,) smaller structure-tensor eigenvalue of map ``eig`` (H, W) at points (M, 2)."""
    xi = np.clip(np.round(points[:, 0]).astype(int), 0, eig.shape[1] - 1)
    yi = np.clip(np.round(points[:, 1]).astype(int), 0, eig.shape[0] - 1)
    return eig[yi, xi]


def _patches(grey: np.ndarray, points: np.ndarray, side: int) -> np.ndarray:
    """(M, side²) float32 bilinear patches of ``grey`` centred on points (M, 2), mean removed, unit norm (one
    ``cv2.remap`` for all of them; outside the image the border is replicated)."""
    if len(points) == 0:
        return np.zeros((0, side * side), np.float32)
    offsets = np.arange(side, dtype=np.float32) - (side - 1) / 2
    map_x = (points[:, 0, None, None] + offsets[None, None, :]).astype(np.float32)
    map_y = (points[:, 1, None, None] + offsets[None, :, None]).astype(np.float32)
    map_x, map_y = (np.broadcast_to(m, (len(points), side, side)).reshape(-1, side) for m in (map_x, map_y))
    out = cv2.remap(grey, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE).astype(np.float32).reshape(len(points), side * side)
    out -= out.mean(1, keepdims=True)
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-6
    return out


def entry_confidence(ncc: np.ndarray, fb_error: np.ndarray, texture: np.ndarray, config: TrackerConfig
                     ) -> np.ndarray:
    """(M,) confidence in [0, 1] of tracked entries from their template correlation ``ncc``, forward–backward error
    (px) and texture (structure-tensor eigenvalue): the template term rises linearly from ``cut_ncc`` to 0.9, the
    forward–backward term falls from 1 at 0 px to 0.5 at ``fb_threshold``, the texture term from 1 at 4 ×
    ``min_texture`` to 0 at none."""
    match = np.clip((ncc - config.cut_ncc) / (0.9 - config.cut_ncc), 0.0, 1.0)
    consistency = 1.0 / (1.0 + (fb_error / config.fb_threshold) ** 2)
    textured = np.clip(texture / (4 * config.min_texture), 0.0, 1.0)
    return (match * consistency * textured).astype(np.float32)


class _Tracks:
    """Growable (N, P) track arrays: a cut appends a new track."""

    def __init__(self, n: int, seeds: np.ndarray, seed_frame: np.ndarray):
        p = len(seeds)
        self.tracks = np.zeros((n, p, 2), np.float32)
        self.visible = np.zeros((n, p), bool)
        self.confidence = np.zeros((n, p), np.float32)
        self.query_frame = seed_frame.astype(np.int64)

    def add(self, frame: int, points: np.ndarray) -> np.ndarray:
        """New tracks starting at ``frame`` at points (M, 2): their indices (M,)."""
        m, n = len(points), self.tracks.shape[0]
        start = self.tracks.shape[1]
        self.tracks = np.concatenate([self.tracks, np.zeros((n, m, 2), np.float32)], 1)
        self.visible = np.concatenate([self.visible, np.zeros((n, m), bool)], 1)
        self.confidence = np.concatenate([self.confidence, np.zeros((n, m), np.float32)], 1)
        self.query_frame = np.concatenate([self.query_frame, np.full(m, frame, np.int64)])
        return np.arange(start, start + m)

    def set(self, frame: int, index: np.ndarray, points: np.ndarray, confidence: np.ndarray | float) -> None:
        self.tracks[frame, index], self.visible[frame, index], self.confidence[frame, index] = points, True, confidence

    def extend(self, other: "_Tracks") -> None:
        """Append ``other``'s tracks after these."""
        self.tracks = np.concatenate([self.tracks, other.tracks], 1)
        self.visible = np.concatenate([self.visible, other.visible], 1)
        self.confidence = np.concatenate([self.confidence, other.confidence], 1)
        self.query_frame = np.concatenate([self.query_frame, other.query_frame])


def track_frames(frames: np.ndarray, config: TrackerConfig = TrackerConfig(), progress: bool = False) -> TrackSet:
    """Track the paper's query grid through ``frames``.

    frames: (N, H, W, 3) uint8 RGB, N ≥ 2 → TrackSet with tracks (N, P, 2) in the frames' pixels, visible (N, P),
    confidence (N, P), query_frame (P,) (a cut track's second part starts at the cut), image_size (W, H). Invisible
    entries hold the nearest visible position.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (N>=2, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    n, h, w = frames.shape[:3]
    greys = [normalised_grey(f) for f in frames]
    eigs = [cv2.cornerMinEigenVal(g, blockSize=config.window // 2 | 1, ksize=3) for g in greys]
    queries = query_frames(n, config.query_every)
    grid = grid_points(w, h, config.grid)
    seeds, seed_frame = [], []
    for q in queries:
        keep = _texture_at(eigs[q], grid) > config.min_texture
        seeds.append(grid[keep])
        seed_frame.append(np.full(int(keep.sum()), q))
    bar = tqdm(total=2 * (n - 1), desc="tracking (LK)", disable=not progress, leave=False)
    out = _track_queries(greys, eigs, np.concatenate(seeds), np.concatenate(seed_frame), config, bar)
    if config.fill:
        fill, fill_frame = _sparse_queries(out, grid, eigs, queries, config, (w, h))
        if len(fill):
            bar.total += 2 * (n - 1)
            out.extend(_track_queries(greys, eigs, fill, fill_frame, config, bar))
    bar.close()
    keep = out.visible.sum(0) > min_visible_frames(n)
    if not keep.any():
        raise ValueError(f"no track stays visible in more than {min_visible_frames(n)} of {n} frames "
                         f"(untextured or too short a clip?)")
    visible = out.visible[:, keep]
    return TrackSet(_fill_invisible(out.tracks[:, keep], visible), visible, image_size=np.array([w, h]),
                    query_frame=out.query_frame[keep], confidence=np.where(visible, out.confidence[:, keep], 0))


def _track_queries(greys, eigs, seeds: np.ndarray, seed_frame: np.ndarray, config: TrackerConfig, bar) -> "_Tracks":
    """Queries ``seeds`` (Q, 2) at frames ``seed_frame`` (Q,) tracked forwards and backwards (:func:`_sweep`)."""
    out = _Tracks(len(greys), seeds, seed_frame)
    templates = np.zeros((len(seeds), config.template ** 2), np.float32)
    for q in np.unique(seed_frame):
        templates[seed_frame == q] = _patches(greys[q], seeds[seed_frame == q], config.template)
    for step in (1, -1):
        _sweep(greys, eigs, seeds, seed_frame, templates, out, step, config, bar)
    return out


def _sparse_queries(out: "_Tracks", grid: np.ndarray, eigs, queries: np.ndarray, config: TrackerConfig,
                    image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Queries where the schedule's tracks are sparse: at the frame halfway between two query frames, the textured
    grid cells (of ``grid`` (G², 2) cell centres) that no visible track lies in → (points (M, 2), frames (M,)).
    Where a close mover fills much of the frame, the scene's tracks around it are short-lived (16 frames on median on
    a generated clip) and few; the camera stage needs them."""
    w, h = image_size
    seeds, frames = [], []
    for a, b in zip(queries[:-1], queries[1:]):
        if b - a < 4:
            continue
        f = (a + b) // 2
        pos = out.tracks[f, out.visible[f]]
        cells = (np.clip((pos[:, 1] * config.grid / h).astype(int), 0, config.grid - 1) * config.grid
                 + np.clip((pos[:, 0] * config.grid / w).astype(int), 0, config.grid - 1))
        empty = np.ones(len(grid), bool)
        empty[cells] = False
        keep = empty & (_texture_at(eigs[f], grid) > config.min_texture)
        seeds.append(grid[keep])
        frames.append(np.full(int(keep.sum()), f))
    if not seeds:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    return np.concatenate(seeds).astype(np.float32), np.concatenate(frames)


def _sweep(greys, eigs, seeds, seed_frame, templates, out: _Tracks, step: int, config: TrackerConfig, bar) -> None:
    """One direction (``step`` ±1) of tracking: every query from its frame on, cut where its template stops matching.
    Fills ``out`` (cut tracks' second parts are appended to it)."""
    n = len(greys)
    h, w = greys[0].shape
    lk = dict(winSize=(config.window, config.window), maxLevel=config.levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    index = np.zeros(0, np.int64)             # the track each active point writes to
    pos = np.zeros((0, 2), np.float32)
    tmpl = np.zeros((0, config.template ** 2), np.float32)
    low = np.zeros(0, np.int64)               # consecutive steps below cut_ncc
    frames = range(n - 1) if step == 1 else range(n - 1, 0, -1)
    for t in frames:
        new = np.flatnonzero(seed_frame == t)
        out.set(t, new, seeds[new], 1.0)
        index, pos = np.concatenate([index, new]), np.concatenate([pos, seeds[new]])
        tmpl, low = np.concatenate([tmpl, templates[new]]), np.concatenate([low, np.zeros(len(new), np.int64)])
        bar.update(1)
        if index.size == 0:
            continue
        nxt = greys[t + step]
        fwd, st1, err = cv2.calcOpticalFlowPyrLK(greys[t], nxt, pos, None, **lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, greys[t], fwd, None, **lk)
        fb = np.linalg.norm(back - pos, axis=1)
        ok = ((st1[:, 0] == 1) & (st2[:, 0] == 1) & (err[:, 0] < config.max_error) & (fb < config.fb_threshold)
              & (fwd[:, 0] >= 0) & (fwd[:, 0] <= w - 1) & (fwd[:, 1] >= 0) & (fwd[:, 1] <= h - 1))
        index, tmpl, low, fwd, fb = index[ok], tmpl[ok], low[ok], fwd[ok], fb[ok]
        patches = _patches(nxt, fwd, config.template)
        ncc = np.einsum("md,md->m", patches, tmpl)
        low = np.where(ncc < config.cut_ncc, low + 1, 0)
        confidence = entry_confidence(ncc, fb, _texture_at(eigs[t + step], fwd), config)
        out.set(t + step, index, fwd, confidence)
        cut = np.flatnonzero(low >= config.cut_frames)
        if cut.size:   # the jumped part leaves its track and starts one of its own, templated here
            first = t + step - step * (config.cut_frames - 1)
            span = slice(min(first, t + step), max(first, t + step) + 1)
            out.visible[span, index[cut]] = False
            out.confidence[span, index[cut]] = 0.0
            fresh = out.add(first, out.tracks[first, index[cut]])
            for f in range(span.start, span.stop):
                out.set(f, fresh, out.tracks[f, index[cut]], 1.0)
            index[cut] = fresh
            tmpl[cut], low[cut] = patches[cut], 0
        pos = fwd
    last = n - 1 if step == 1 else 0  # seeds at the sweep's last frame are placed but not tracked further
    new = np.flatnonzero(seed_frame == last)
    out.set(last, new, seeds[new], 1.0)


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
                    image_size=np.array(clip.source_size), query_frame=ts.query_frame, confidence=ts.confidence)


def track_video(path: str | Path, *, stride: int = 1, max_frames: int | None = None, long_side: int | None = 640,
                config: TrackerConfig = TrackerConfig(), tracker: str = "lk", checkpoint: str | Path | None = None,
                progress: bool = False) -> TrackSet:
    """Decode a video (file or frame folder) and track it (:func:`track_clip`): tracks in input pixels."""
    clip = read_video(path, stride=stride, max_frames=max_frames, long_side=long_side)
    return track_clip(clip, config, tracker=tracker, checkpoint=checkpoint, progress=progress)
