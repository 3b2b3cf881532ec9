"""The tracker's settings and the query schedule both trackers follow (the built-in one, :mod:`.lk`, and CoTracker,
:mod:`.cotracker`): a G×G grid of queries at frames 0, q, 2q, … and the last frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TrackerConfig", "query_frames", "grid_points"]


@dataclass(frozen=True)
class TrackerConfig:
    """grid: G of the G×G query grid · query_every: frames between query sets · window: LK window (px) ·
    levels: pyramid levels above the base · fb_threshold: max forward–backward error (px, working resolution) ·
    max_error: max LK patch error (mean abs grey difference) · min_texture: minimum eigenvalue of the gradient
    covariance around a query (``cv2.cornerMinEigenVal``; flat queries are not seeded) · template: side (px) of
    the patch compared with the track's template · cut_ncc / cut_frames: a track whose template correlation stays
    below cut_ncc for cut_frames steps is cut there · per_cell: a query frame places a query on a grid cell only while
    it holds fewer tracks than this, a cell tracks converge into keeps this many (the eldest), and a track followed
    back ends where its cell holds this many — from frame ``dense_frames`` on; before it, cells take twice as many
    and converging tracks all go on (a clip that short is tracked as densely as the schedule gives, a longer take
    keeps about a short clip's tracks per frame) · fill: add queries where the tracks are sparse, halfway between query frames
    (:func:`_sparse_queries`)."""

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
    per_cell: int = 4
    dense_frames: int = 50
    fill: bool = True

    def __post_init__(self) -> None:
        if self.grid < 1 or self.query_every < 1 or self.window < 3 or self.levels < 0:
            raise ValueError("TrackerConfig: grid >= 1, query_every >= 1, window >= 3 and levels >= 0 required")
        if self.template < 3 or self.cut_frames < 1 or self.per_cell < 1 or self.dense_frames < 0:
            raise ValueError("TrackerConfig: template >= 3, cut_frames >= 1, per_cell >= 1 and dense_frames >= 0 "
                             "required")


def query_frames(n_frames: int, every: int = 20) -> np.ndarray:
    """Frames 0, every, 2·every, … and the last frame, without repeats: (Q,) int."""
    return np.unique(np.append(np.arange(0, n_frames, every), n_frames - 1))


def grid_points(width: int, height: int, grid: int) -> np.ndarray:
    """Cell centres of a grid×grid layout over the image: (grid², 2) float32 pixel (x, y), row-major."""
    xs = (np.arange(grid) + 0.5) * width / grid - 0.5
    ys = (np.arange(grid) + 0.5) * height / grid - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack((gx.ravel(), gy.ravel()), 1).astype(np.float32)
