"""Optional CoTracker backend: the same query schedule and output contract as the built-in tracker, run by a
user-installed ``cotracker`` package with a local checkpoint. CoTracker's code and weights are licensed
non-commercially and its weights live on a hub: tracks4d never vendors or downloads them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..contracts import TrackSet, min_visible_frames
from .config import TrackerConfig, grid_points, query_frames

__all__ = ["CoTrackerUnavailable", "load_cotracker", "track_frames_cotracker", "INSTALL_HINT"]

INSTALL_HINT = (
    "CoTracker is optional and not bundled (its licence is non-commercial). Install it yourself: clone the "
    "facebookresearch/co-tracker repository and run 'pip install -e .' inside it, download a checkpoint such as "
    "scaled_offline.pth from that project's release page, then pass --tracker cotracker --tracker-checkpoint PATH."
)

Predictor = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""``predictor(video (1, T, 3, H, W) float 0–255, queries=(1, Q, 3) [t, x, y], backward_tracking=True)``
→ (tracks (1, T, Q, 2), visibility (1, T, Q)), CoTracker's offline predictor signature."""


class CoTrackerUnavailable(RuntimeError):
    """The cotracker package or the checkpoint is missing."""


def load_cotracker(checkpoint: str | Path | None, device: str = "cpu") -> Predictor:
    """CoTracker's offline predictor from a local checkpoint; a clear error with install steps when unavailable."""
    if checkpoint is None:
        raise CoTrackerUnavailable(f"--tracker cotracker needs --tracker-checkpoint PATH. {INSTALL_HINT}")
    path = Path(checkpoint)
    if not path.is_file():
        raise CoTrackerUnavailable(f"{path}: CoTracker checkpoint not found. {INSTALL_HINT}")
    try:
        from cotracker.predictor import CoTrackerPredictor
    except ImportError:
        raise CoTrackerUnavailable(f"the 'cotracker' package is not installed. {INSTALL_HINT}") from None
    return CoTrackerPredictor(checkpoint=str(path)).to(device).eval()


def track_frames_cotracker(frames: np.ndarray, predictor: Predictor, config: TrackerConfig = TrackerConfig(),
                           device: str = "cpu") -> TrackSet:
    """frames: (N, H, W, 3) uint8 RGB → TrackSet like :func:`tracks4d.tracking.track_frames` (grid queries at
    the paper's query frames, tracked both ways; short tracks dropped)."""
    n, h, w = frames.shape[:3]
    grid = grid_points(w, h, config.grid)
    qs = query_frames(n, config.query_every)
    queries = np.concatenate([np.column_stack((np.full(len(grid), q, np.float32), grid)) for q in qs])
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None].float().to(device)
    with torch.inference_mode():
        tracks, vis = predictor(video, queries=torch.from_numpy(queries)[None].to(device), backward_tracking=True)
    tracks, vis = tracks.detach().cpu().numpy(), vis.detach().cpu().numpy()
    if tracks.shape != (1, n, len(queries), 2) or vis.shape != (1, n, len(queries)):
        raise ValueError(f"CoTracker returned tracks {tracks.shape} and visibility {vis.shape}; expected "
                         f"(1, {n}, {len(queries)}, 2) and (1, {n}, {len(queries)})")
    tracks, visible = tracks[0].astype(np.float32), (vis[0] > 0.5) if vis.dtype != bool else vis[0]
    # CoTracker's visibility is a probability (its predictor may already threshold it): the entries' confidence
    confidence = np.clip(vis[0], 0.0, 1.0).astype(np.float32) if vis.dtype != bool else visible.astype(np.float32)
    query_frame = queries[:, 0].astype(np.int64)
    visible[query_frame, np.arange(len(queries))] = True
    confidence[query_frame, np.arange(len(queries))] = 1.0
    keep = visible.sum(0) > min_visible_frames(n)
    if not keep.any():
        raise ValueError(f"no CoTracker track stays visible in more than {min_visible_frames(n)} of {n} frames")
    return TrackSet(np.nan_to_num(tracks[:, keep]), visible[:, keep], image_size=np.array([w, h]),
                    query_frame=query_frame[keep], confidence=np.where(visible, confidence, 0.0)[:, keep])
