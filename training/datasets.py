"""Training data: windows of tracks (the paper's sampling), a dataset registry, and padded batches.

A dataset is anything with ``sample(rng, n_frames, n_tracks) -> Window``. Register new sources with
``@register_dataset("name")``; the trainer builds them from its command-line arguments.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from tracks4d.contracts import ContractError, TrackSet, min_visible_frames
from tracks4d.inference import network_inputs

from .synthetic import SceneConfig, generate_window

__all__ = ["Window", "Batch", "collate", "sample_window", "DATASETS", "register_dataset", "build_dataset",
           "SyntheticDataset", "ClipDataset", "TrackFolderDataset", "DatasetError"]


class DatasetError(ValueError):
    """A dataset cannot be built (missing folder, no usable files, …)."""


@dataclass
class Window:
    """One training window. inputs: (N, P, 3) float32 normalised x, y + flag · visible: (N, P) bool."""

    inputs: torch.Tensor
    visible: torch.Tensor


@dataclass
class Batch:
    """Padded windows. inputs: (B, N, P, 3) · visible: (B, N, P) bool, False on padding ·
    frame_mask: (B, N) bool · point_mask: (B, P) bool (True = real)."""

    inputs: torch.Tensor
    visible: torch.Tensor
    frame_mask: torch.Tensor
    point_mask: torch.Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.inputs, self.visible, self.frame_mask,
                                                                   self.point_mask)))


def collate(windows: list[Window]) -> Batch:
    """Pad windows of different N and P to one batch."""
    n = max(w.inputs.shape[0] for w in windows)
    p = max(w.inputs.shape[1] for w in windows)
    b = len(windows)
    inputs = torch.zeros(b, n, p, 3)
    visible = torch.zeros(b, n, p, dtype=torch.bool)
    frame_mask = torch.zeros(b, n, dtype=torch.bool)
    point_mask = torch.zeros(b, p, dtype=torch.bool)
    for i, w in enumerate(windows):
        wn, wp = w.inputs.shape[:2]
        inputs[i, :wn, :wp] = w.inputs
        visible[i, :wn, :wp] = w.visible
        frame_mask[i, :wn] = True
        point_mask[i, :wp] = True
    return Batch(inputs, visible, frame_mask, point_mask)


def sample_window(tracks: TrackSet, rng: np.random.Generator, n_frames: int, n_tracks: int) -> Window | None:
    """The paper's window: ``n_frames`` consecutive frames from a random start t, up to ``n_tracks`` random tracks
    that are visible in more than 10 of those frames (N/2 for N ≤ 20) and were seeded in [t − N/2, t + 3N/2].
    Returns None when the clip has no such track."""
    n = min(n_frames, tracks.n_frames)
    start = int(rng.integers(0, tracks.n_frames - n + 1))
    vis = tracks.visible[start:start + n]
    ok = vis.sum(0) > min_visible_frames(n)
    if tracks.query_frame is not None:
        q = tracks.query_frame
        ok &= (q >= start - n / 2) & (q <= start + 1.5 * n)
    candidates = np.flatnonzero(ok)
    if candidates.size == 0:
        return None
    chosen = np.sort(rng.choice(candidates, size=min(n_tracks, candidates.size), replace=False))
    window = tracks.subset(frames=slice(start, start + n), points=chosen)
    return Window(network_inputs(window), torch.from_numpy(window.visible))


DatasetBuilder = Callable[[argparse.Namespace], "TrainingDataset"]
DATASETS: dict[str, DatasetBuilder] = {}


class TrainingDataset(Protocol):
    def sample(self, rng: np.random.Generator, n_frames: int, n_tracks: int) -> Window: ...


def register_dataset(name: str) -> Callable[[DatasetBuilder], DatasetBuilder]:
    """Decorator: make ``tracks4d-train --data NAME`` build a dataset with this function."""
    def wrap(builder: DatasetBuilder) -> DatasetBuilder:
        DATASETS[name] = builder
        return builder
    return wrap


def build_dataset(args: argparse.Namespace) -> "TrainingDataset":
    if args.data not in DATASETS:
        raise DatasetError(f"unknown dataset {args.data!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[args.data](args)


class SyntheticDataset:
    """Procedural scenes generated on the fly (``training.synthetic``); every window is a new scene."""

    def __init__(self, config: SceneConfig | None = None):
        self.config = config or SceneConfig()

    def sample(self, rng: np.random.Generator, n_frames: int, n_tracks: int) -> Window:
        ts = generate_window(rng, n_frames, n_tracks, self.config).tracks
        return Window(network_inputs(ts), torch.from_numpy(ts.visible))


class ClipDataset:
    """Windows sampled (:func:`sample_window`) from a list of loaded clips."""

    def __init__(self, clips: list[TrackSet]):
        self.clips = clips

    def sample(self, rng: np.random.Generator, n_frames: int, n_tracks: int) -> Window:
        for _ in range(100):
            window = sample_window(self.clips[int(rng.integers(len(self.clips)))], rng, n_frames, n_tracks)
            if window is not None:
                return window
        raise DatasetError("no clip yields a window with tracks visible in more than 10 frames")


class TrackFolderDataset(ClipDataset):
    """A folder of track ``.npz`` files (our layout or the official one), loaded and validated once."""

    def __init__(self, root: str | Path):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"--root {root}: not a folder")
        files = sorted(root.glob("*.npz"))
        if not files:
            raise DatasetError(f"--root {root}: holds no .npz track files")
        clips: list[TrackSet] = []
        self.skipped: list[str] = []
        for f in files:
            try:
                clips.append(TrackSet.load(f))
            except ContractError as exc:
                self.skipped.append(str(exc))
        if not clips:
            raise DatasetError(f"--root {root}: no valid track file ({len(self.skipped)} rejected; first: "
                               f"{self.skipped[0]})")
        super().__init__(clips)


@register_dataset("synthetic")
def _synthetic(args: argparse.Namespace) -> SyntheticDataset:
    return SyntheticDataset()


@register_dataset("tracks")
def _tracks(args: argparse.Namespace) -> TrackFolderDataset:
    if not getattr(args, "root", None):
        raise DatasetError("--data tracks needs --root DIR (a folder of track .npz files)")
    return TrackFolderDataset(args.root)
