"""Training data: windows of tracks (the paper's sampling), a dataset registry, and padded batches.

A dataset is anything with ``sample(rng, n_frames, n_tracks) -> Window``. Register new sources with
``@register_dataset("name")``; the trainer builds them from its command-line arguments.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from tracks4d.contracts import ContractError, TrackSet, min_visible_frames
from tracks4d.network.inference import network_inputs

from .synthetic import MOVER_KINDS, SceneConfig, generate_window

__all__ = ["Window", "Batch", "collate", "sample_window", "DATASETS", "register_dataset", "build_dataset",
           "SyntheticDataset", "ClipDataset", "TrackFolderDataset", "DatasetError", "HELD_OUT_MOVER",
           "MixedDataset", "parse_mix",
           "training_scene_config"]


class DatasetError(ValueError):
    """A dataset cannot be built (missing folder, no usable files, …)."""


@dataclass
class Window:
    """One training window. inputs: (N, P, 3) float32 normalised x, y + flag · visible: (N, P) bool ·
    gt_points: (N, P, 3) float32 true camera-frame points, gt_camera_to_world: (N, 4, 4) float32 — both only
    where ground truth exists (synthetic windows), else None."""

    inputs: torch.Tensor
    visible: torch.Tensor
    gt_points: torch.Tensor | None = None
    gt_camera_to_world: torch.Tensor | None = None


@dataclass
class Batch:
    """Padded windows. inputs: (B, N, P, 3) · visible: (B, N, P) bool, False on padding ·
    frame_mask: (B, N) bool · point_mask: (B, P) bool (True = real) · gt_points: (B, N, P, 3) ·
    gt_camera_to_world: (B, N, 4, 4) (identity where absent) · has_gt: (B,) bool."""

    inputs: torch.Tensor
    visible: torch.Tensor
    frame_mask: torch.Tensor
    point_mask: torch.Tensor
    gt_points: torch.Tensor
    gt_camera_to_world: torch.Tensor
    has_gt: torch.Tensor

    @property
    def entry_mask(self) -> torch.Tensor:
        """(B, N, P) bool: real frame and real track."""
        return self.frame_mask[:, :, None] & self.point_mask[:, None, :]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in vars(self).values()))


def collate(windows: list[Window]) -> Batch:
    """Pad windows of different N and P to one batch."""
    n = max(w.inputs.shape[0] for w in windows)
    p = max(w.inputs.shape[1] for w in windows)
    b = len(windows)
    inputs = torch.zeros(b, n, p, 3)
    visible = torch.zeros(b, n, p, dtype=torch.bool)
    frame_mask = torch.zeros(b, n, dtype=torch.bool)
    point_mask = torch.zeros(b, p, dtype=torch.bool)
    gt_points = torch.zeros(b, n, p, 3)
    gt_pose = torch.eye(4).repeat(b, n, 1, 1)
    has_gt = torch.zeros(b, dtype=torch.bool)
    for i, w in enumerate(windows):
        wn, wp = w.inputs.shape[:2]
        inputs[i, :wn, :wp] = w.inputs
        visible[i, :wn, :wp] = w.visible
        frame_mask[i, :wn] = True
        point_mask[i, :wp] = True
        if w.gt_points is not None and w.gt_camera_to_world is not None:
            gt_points[i, :wn, :wp] = w.gt_points
            gt_pose[i, :wn] = w.gt_camera_to_world
            has_gt[i] = True
    return Batch(inputs, visible, frame_mask, point_mask, gt_points, gt_pose, has_gt)


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


def parse_mix(spec: str) -> list[tuple[str, float]]:
    """``"synthetic:3,videos:1"`` → [("synthetic", 3.0), ("videos", 1.0)]; a bare name has weight 1."""
    mix = []
    for part in (p.strip() for p in spec.split(",")):
        name, _, weight = part.partition(":")
        if name not in DATASETS:
            raise DatasetError(f"--data: unknown dataset {name!r}; choose from {sorted(DATASETS)} "
                               f"(mix them as name:weight,name:weight)")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise DatasetError(f"--data: weight {weight!r} of {name!r} is not a number") from None
        if not value > 0 or not np.isfinite(value):
            raise DatasetError(f"--data: weight of {name!r} must be a positive number, got {weight}")
        mix.append((name, value))
    return mix


class MixedDataset:
    """Each window comes from one of several datasets, drawn with probability proportional to its weight."""

    def __init__(self, sources: list["TrainingDataset"], weights: list[float]):
        self.sources = sources
        self.probabilities = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))

    def sample(self, rng: np.random.Generator, n_frames: int, n_tracks: int) -> Window:
        source = self.sources[int(rng.choice(len(self.sources), p=self.probabilities))]
        return source.sample(rng, n_frames, n_tracks)


def build_dataset(args: argparse.Namespace) -> "TrainingDataset":
    """The dataset ``--data`` names: one registered name, or a weighted mix ``name:w,name:w``."""
    mix = parse_mix(args.data)
    if len(mix) == 1:
        return DATASETS[mix[0][0]](args)
    return MixedDataset([DATASETS[name](args) for name, _ in mix], [w for _, w in mix])


class SyntheticDataset:
    """Procedural scenes generated on the fly (``training.synthetic``); every window is a new scene."""

    def __init__(self, config: SceneConfig | None = None):
        self.config = config or SceneConfig()

    def sample(self, rng: np.random.Generator, n_frames: int, n_tracks: int) -> Window:
        scene = generate_window(rng, n_frames, n_tracks, self.config)
        ts = scene.tracks
        w2c = scene.world_to_camera
        cam_points = np.einsum("nij,npj->npi", w2c[:, :3, :3], scene.world_points) + w2c[:, None, :3, 3]
        return Window(network_inputs(ts), torch.from_numpy(ts.visible), torch.from_numpy(cam_points).float(),
                      torch.from_numpy(scene.camera_to_world).float())


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


HELD_OUT_MOVER = "sheet"
"""Mover kind the shipped model never trains on (the held-out suite has it), to measure generalisation."""


def training_scene_config(hold_out: str | None = HELD_OUT_MOVER) -> SceneConfig:
    """The generator's default config with mover kind ``hold_out`` (one of MOVER_KINDS, or None) never drawn."""
    config = SceneConfig()
    if hold_out is None:
        return config
    if hold_out not in MOVER_KINDS:
        raise DatasetError(f"--hold-out-mover {hold_out!r}: not one of {MOVER_KINDS}")
    weights = tuple(0.0 if kind == hold_out else w for kind, w in zip(MOVER_KINDS, config.mover_weights))
    return replace(config, mover_weights=weights)


@register_dataset("synthetic")
def _synthetic(args: argparse.Namespace) -> SyntheticDataset:
    hold_out = getattr(args, "hold_out_mover", HELD_OUT_MOVER)
    return SyntheticDataset(training_scene_config(None if hold_out in (None, "none") else hold_out))


@register_dataset("tracks")
def _tracks(args: argparse.Namespace) -> TrackFolderDataset:
    if not getattr(args, "root", None):
        raise DatasetError("--data tracks needs --root DIR (a folder of track .npz files)")
    return TrackFolderDataset(args.root)
