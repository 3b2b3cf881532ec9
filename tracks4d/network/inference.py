"""One feed-forward pass of the network on a :class:`TrackSet`, returned as a :class:`Reconstruction`."""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from ..contracts import Reconstruction, TrackSet, min_visible_frames
from ..geometry.transforms import invert_rigid, pixels_to_normalized
from .model import ModelOutput, TracksTo4D, to_camera

__all__ = ["network_inputs", "guess_intrinsics", "Predictions", "predict", "run_network", "PRECISIONS",
           "native_bf16"]

PRECISIONS = ("fp32", "bf16")
"""fp32, or bf16 autocast of the torch model's layers (its geometry stays fp32)."""


class Predictions(NamedTuple):
    """What :func:`run_network` reads of the network for B windows (N frames, P tracks, K bases): torch tensors, or
    numpy arrays from :func:`predict`, whichever backend ran (the ONNX graph's outputs, in this order).

    points: (B, N, P, 3) world points per frame · depth: (B, N, P) camera-frame z · camera_to_world: (B, N, 4, 4) ·
    focal_scale: (B, N) · static_points: (B, P, 3) · motion_level: (B, P) γ · bases: (B, P, K, 3) ·
    coefficients: (B, N, K).
    """

    points: Any
    depth: Any
    camera_to_world: Any
    focal_scale: Any
    static_points: Any
    motion_level: Any
    bases: Any
    coefficients: Any

    @classmethod
    def from_output(cls, out: ModelOutput) -> "Predictions":
        """The torch tensors of a :class:`ModelOutput`."""
        points = out.points()
        depth = to_camera(points, out.rotation, out.centre)[..., 2]
        return cls(points, depth, out.camera_to_world(), out.focal_scale, out.static_points, out.motion_level,
                   out.bases, out.coefficients)


Network = TracksTo4D | Callable[[torch.Tensor], Predictions]
"""A torch model, or a callable with a ``config`` returning numpy :class:`Predictions`
(:class:`tracks4d.network.onnx_backend.OnnxNetwork`)."""


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bf16 natively (CUDA, or a CPU with AVX-512 BF16 or AMX): there bf16 autocast
    runs the network ~1.5× faster; elsewhere it is emulated and slower."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def predict(network: Network, inputs: torch.Tensor, precision: str = "fp32") -> Predictions:
    """inputs: (B, N, P, 3) from :func:`network_inputs` → numpy :class:`Predictions`, with either backend.
    precision: one of :data:`PRECISIONS` (the torch model only; ONNX Runtime runs its graph in fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if isinstance(network, torch.nn.Module):
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = network(inputs)
        return Predictions(*(v.float().cpu().numpy() for v in Predictions.from_output(out)))
    if precision != "fp32":
        raise ValueError(f"precision {precision!r} needs the torch backend; ONNX Runtime runs the graph in fp32")
    return network(inputs)


def guess_intrinsics(tracks: TrackSet) -> np.ndarray:
    """(3, 3) pixel intrinsics when none are given: principal point at the image centre, focal (W + H) / 2
    (≈ 60° horizontal field of view at 4:3, typical of phones). Image size falls back to the tracks' extent."""
    if tracks.image_size is not None:
        w, h = (float(v) for v in tracks.image_size)
    else:
        w, h = (float(v) + 1.0 for v in tracks.tracks[tracks.visible].max(0))
    f = 0.5 * (w + h)
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def network_inputs(tracks: TrackSet, intrinsics: np.ndarray | None = None) -> torch.Tensor:
    """(N, P, 3) float32: K⁻¹-normalised x, y (0 where invisible) and the visibility flag."""
    k = tracks.intrinsics if intrinsics is None else intrinsics
    if k is None:
        k = guess_intrinsics(tracks)
    xy = pixels_to_normalized(tracks.tracks.astype(np.float64), k)
    xy[~tracks.visible] = 0.0
    return torch.from_numpy(np.concatenate((xy, tracks.visible[..., None]), -1).astype(np.float32))


@torch.inference_mode()
def run_network(model: Network, tracks: TrackSet, device: str | torch.device = "cpu",
                precision: str = "fp32") -> Reconstruction:
    """Predict cameras, per-frame points and motion levels for every track and frame of ``tracks``.

    ``model``: a :class:`TracksTo4D` or an :class:`tracks4d.network.onnx_backend.OnnxNetwork`.
    precision: :data:`PRECISIONS` (:func:`predict`). Pixel intrinsics come from the track set, or
    :func:`guess_intrinsics`. ``meta`` records the timing and which
    tracks are visible in too few frames (:func:`min_visible_frames`; their estimates are less reliable).
    """
    k = tracks.intrinsics_per_frame() if tracks.intrinsics is not None else np.broadcast_to(
        guess_intrinsics(tracks), (tracks.n_frames, 3, 3)).copy()
    inputs = network_inputs(tracks, k)[None].to(device)
    start = time.perf_counter()
    pred = predict(model, inputs, precision)
    seconds = time.perf_counter() - start
    c2w = pred.camera_to_world[0].astype(np.float64)
    k = k.copy()
    k[:, :2, :2] *= pred.focal_scale[0].astype(np.float64)[:, None, None]  # predicted focal correction (or 1)
    few = np.flatnonzero(tracks.visible.sum(0) <= min_visible_frames(tracks.n_frames))
    meta = {"timings": {"network_s": seconds}, "precision": precision, "intrinsics_guessed": tracks.intrinsics is None,
            "few_observation_tracks": few.tolist(), "model": model.config.to_dict()}
    return Reconstruction(
        camera_to_world=c2w, world_to_camera=invert_rigid(c2w), intrinsics=k,
        points=pred.points[0], static_points=pred.static_points[0], motion_level=pred.motion_level[0],
        depth=pred.depth[0], bases=pred.bases[0].transpose(1, 0, 2), coefficients=pred.coefficients[0],
        tracks=tracks.tracks, visible=tracks.visible, meta=meta)
