"""Fit a seeded Gaussian scene to the video: RGB (0.8 L1 + 0.2 D-SSIM), the 2D tracks through rendered 3D
positions, the tracked points' depth, smooth motion bases; densify and prune; within a time budget.

Frames ``t % held_out_every == 0`` (0, 8, 16, …) never enter it: they measure it (:func:`evaluate`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from pytorch_msssim import ssim
from tqdm.auto import tqdm

from ..contracts import Reconstruction
from .scene import PER_GAUSSIAN, GaussianScene

__all__ = ["RefineConfig", "Working", "Fitted", "working_inputs", "fit_scene", "evaluate", "psnr", "MOTIONS"]

MOTIONS = ("flat", "hierarchical")
CPU_LONG_SIDE = 256         # default working resolution on the CPU (a GPU works at the video's own)


@dataclass
class RefineConfig:
    """long_side: working resolution (None: 256 on the CPU, the video's own on a GPU) · device: where the scene
    lives and renders (``cuda``: gsplat when installed) · minutes / steps: budget (whichever ends first; steps
    None: time only) · bases: motion bases B · motion: one of MOTIONS · stride, keyframe_every, max_gaussians:
    seeding (:func:`~.seed.seed_scene`) · held_out_every: frames t with t % this == 0 are held out · loss weights
    (trajectory: the moving Gaussians' acceleration, in units of the median depth; anchor: each track's Gaussian to
    the reconstruction's 3D point, so the photometric fit cannot carry the tracked points off) · densify_every:
    steps between densify-and-prune rounds, until ``densify_until`` of the budget · backend: the rasteriser's."""

    long_side: int | None = None
    minutes: float = 10.0
    steps: int | None = None
    bases: int = 10
    motion: str = "flat"
    stride: int = 3
    keyframe_every: int = 6
    max_gaussians: int = 40_000
    held_out_every: int = 8
    rgb_l1: float = 0.8
    rgb_dssim: float = 0.2
    track_weight: float = 2.0
    depth_weight: float = 0.1
    smooth_weight: float = 0.1
    trajectory_weight: float = 2.0
    anchor_weight: float = 1.0
    lr: dict = field(default_factory=lambda: {"means": 1.6e-4, "quats": 1e-3, "log_scales": 5e-3,
                                              "opacity_logits": 5e-2, "colour_logits": 1e-2,
                                              "coefficient_logits": 1e-2, "rotations": 1.6e-4,
                                              "translations": 1.6e-4, "nodes": 1.6e-5})
    densify_every: int = 100
    densify_until: float = 0.6
    densify_share: float = 0.05
    prune_opacity: float = 0.01
    eval_every_s: float = 30.0
    backend: str = "auto"
    device: str = "cpu"
    seed: int = 0


@dataclass
class Working:
    """The inputs at the working resolution: frames (N, H, W, 3) float32 in [0, 1] · intrinsics (N, 3, 3) ·
    world_to_camera (N, 4, 4) · tracks (N, P, 2) working pixels · visible (N, P) · depth (N, P) · points (N, P, 3)
    the reconstruction's · train (N,) bool."""

    frames: np.ndarray
    intrinsics: np.ndarray
    world_to_camera: np.ndarray
    tracks: np.ndarray
    visible: np.ndarray
    depth: np.ndarray
    points: np.ndarray
    train: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])


@dataclass
class Fitted:
    """The optimised scene · history: (seconds, step, Gaussians, held-out PSNR) rows · seconds: wall time · held_out:
    the final :func:`evaluate` of the held-out frames."""

    scene: GaussianScene
    history: list[tuple[float, int, int, float]]
    seconds: float
    steps: int
    held_out: dict


def working_inputs(rec: Reconstruction, frames: np.ndarray, config: RefineConfig) -> Working:
    """rec + its video frames (N, H, W, 3) uint8 at any resolution → everything at ``config.long_side`` (or the
    frames' own size when smaller: never upsampled)."""
    if frames.ndim != 4 or frames.shape[0] != rec.n_frames or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected ({rec.n_frames}, H, W, 3), one per reconstructed frame, got "
                         f"{frames.shape}")
    in_w, in_h = (rec.meta.get("image_size") or (frames.shape[2], frames.shape[1]))
    long_side = config.long_side or (CPU_LONG_SIDE if config.device == "cpu" else max(frames.shape[1:3]))
    scale = min(1.0, long_side / max(frames.shape[1:3]))
    w, h = max(1, round(frames.shape[2] * scale)), max(1, round(frames.shape[1] * scale))
    resized = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]).astype(np.float32)
    sx, sy = w / in_w, h / in_h
    k = rec.intrinsics.copy()
    k[:, 0, 0] *= sx
    k[:, 1, 1] *= sy
    k[:, 0, 2] = (k[:, 0, 2] + 0.5) * sx - 0.5
    k[:, 1, 2] = (k[:, 1, 2] + 0.5) * sy - 0.5
    tracks = (rec.tracks.astype(np.float64) + 0.5) * np.array([sx, sy]) - 0.5
    train = np.arange(rec.n_frames) % config.held_out_every != 0
    if not train.any():
        raise ValueError(f"{rec.n_frames} frames leave none to optimise on after holding out every "
                         f"{config.held_out_every}th")
    return Working(resized / 255.0, k, rec.world_to_camera, tracks, rec.visible & np.isfinite(rec.points).all(-1),
                   rec.depth, np.nan_to_num(rec.points), train)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-12)))


def _rgb_loss(rendered: torch.Tensor, target: torch.Tensor, config: RefineConfig) -> torch.Tensor:
    l1 = (rendered - target).abs().mean()
    similarity = ssim(rendered.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None], data_range=1.0,
                      size_average=True, win_size=7)
    return config.rgb_l1 * l1 + config.rgb_dssim * (1 - similarity)


def _sample(image: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of image (H, W, C) at pixels (K, 2) (centres at integers) → (K, C)."""
    h, w = image.shape[:2]
    grid = torch.stack([(pixels[:, 0] + 0.5) / w * 2 - 1, (pixels[:, 1] + 0.5) / h * 2 - 1], -1)
    out = torch.nn.functional.grid_sample(image.permute(2, 0, 1)[None], grid[None, None], align_corners=False)
    return out[0, :, 0].T


def _track_losses(out, t: int, t2: int, data: Working, tensors: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """2D track loss (rendered positions at t2 of what frame t shows at each track, projected into camera t2,
    against the track at t2; in units of the image's long side) and relative depth loss at the tracks in t."""
    both = np.flatnonzero(data.visible[t] & data.visible[t2] & (data.depth[t] > 0))
    zero = out.features.sum() * 0
    if both.size == 0:
        return zero, zero
    px = tensors["tracks"][t, both]
    sampled = _sample(torch.cat([out.features[..., 3:6], out.alpha[..., None], out.depth[..., None]], -1), px)
    alpha = sampled[:, 3]
    ok = alpha > 0.5
    if not ok.any():
        return zero, zero
    position = sampled[ok, :3] / alpha[ok, None]
    w2c, k = tensors["w2c"][t2], tensors["K"][t2]
    cam = position @ w2c[:3, :3].T + w2c[:3, 3]
    proj = (cam @ k.T)
    proj = proj[:, :2] / proj[:, 2:].clamp_min(1e-6)
    track = (proj - tensors["tracks"][t2, both][ok]).abs().sum(-1).mean() / max(data.size)
    depth = sampled[ok, 4] / alpha[ok]
    truth = tensors["depth"][t, both][ok]
    return track, ((depth - truth).abs() / truth).mean()


def _anchor(scene: GaussianScene, means: torch.Tensor, t: int, data: Working, tensors: dict) -> torch.Tensor:
    """Mean 3D distance at frame t of the track Gaussians (centres ``means`` (G, 3) at t) from their tracks'
    reconstructed points, over the tracks visible then."""
    index = torch.nonzero(scene.track >= 0).squeeze(1)
    tracks = scene.track[index]
    seen = torch.as_tensor(data.visible[t], device=tracks.device)[tracks]
    if not seen.any():
        return means.sum() * 0
    return (means[index[seen]] - tensors["points"][t, tracks[seen]]).norm(dim=-1).mean()


def _trajectory_acceleration(scene: GaussianScene, t: int) -> torch.Tensor:
    """Mean squared second difference of the moving Gaussians' centres around frame t."""
    n = scene.motion.frames
    moving = torch.nonzero(scene.moving).squeeze(1)
    if moving.numel() == 0 or n < 3:
        return scene.means.sum() * 0
    t = min(max(t, 1), n - 2)
    means, logits = scene.means[moving], scene.coefficient_logits[moving]
    x = []
    for u in (t - 1, t, t + 1):
        rot, trans = scene.motion.transforms(means, logits, u)
        x.append((rot @ means[:, :, None]).squeeze(-1) + trans)
    return (x[0] - 2 * x[1] + x[2]).pow(2).sum(-1).mean()


def _optimizer(scene: GaussianScene, config: RefineConfig, scale: float) -> torch.optim.Optimizer:
    groups = [{"params": [getattr(scene, name)], "lr": config.lr[name] * (scale if name == "means" else 1.0)}
              for name in PER_GAUSSIAN]
    return torch.optim.Adam(groups + scene.motion.param_groups(config.lr, scale), eps=1e-15)


def _densify_and_prune(scene: GaussianScene, grad_sum: torch.Tensor, seen: torch.Tensor, config: RefineConfig,
                       generator: torch.Generator) -> None:
    """Split the ``densify_share`` of Gaussians with the largest mean screen-space gradient in two (children
    sampled inside the parent, scales / 1.6), up to ``max_gaussians``; drop nearly transparent ones. Track
    Gaussians are left as they are."""
    anchored = scene.track >= 0
    keep = (torch.sigmoid(scene.opacity_logits.detach()) > config.prune_opacity) | anchored
    mean_grad = torch.where(anchored, -1.0, grad_sum / seen.clamp_min(1))
    room = config.max_gaussians - int(keep.sum())
    count = min(int(config.densify_share * scene.count), max(room // 2, 0))
    if count > 0 and (mean_grad > 0).any():
        chosen = torch.topk(torch.where(keep, mean_grad, -1.0), count).indices
        chosen = chosen[mean_grad[chosen] > 0]
        values = {name: getattr(scene, name).detach()[chosen] for name in PER_GAUSSIAN}
        moving = scene.moving[chosen]
        std = torch.exp(values["log_scales"])
        offsets = torch.randn(count, 3, generator=generator).to(std) * std
        values["log_scales"] = values["log_scales"] - math.log(1.6)
        children = {name: v.clone() for name, v in values.items()}
        values["means"] = values["means"] + offsets          # the two children sit either side of the parent
        children["means"] = children["means"] - offsets
        keep[chosen] = False
        scene.keep(keep)
        scene.append({name: torch.cat([values[name], children[name]]) for name in PER_GAUSSIAN},
                     torch.cat([moving, moving]))
    else:
        scene.keep(keep)


def fit_scene(scene: GaussianScene, data: Working, config: RefineConfig, progress: bool = True,
              on_step=None) -> Fitted:
    """Optimise ``scene`` on the training frames of ``data`` for ``config.minutes`` (or ``config.steps``)."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    w, h = data.size
    device = scene.means.device
    tensors = {name: torch.as_tensor(value, dtype=torch.float32, device=device) for name, value in (
        ("frames", data.frames), ("K", data.intrinsics), ("w2c", data.world_to_camera), ("tracks", data.tracks),
        ("depth", data.depth), ("points", data.points))}
    scale = float(np.median(data.depth[data.visible & (data.depth > 0)]))
    train = np.flatnonzero(data.train)
    held_out = np.flatnonzero(~data.train)
    optimizer = _optimizer(scene, config, scale)
    grad_sum, seen = torch.zeros(scene.count, device=device), torch.zeros(scene.count, device=device)
    budget = config.minutes * 60.0
    start = time.perf_counter()
    history = [(0.0, 0, scene.count, evaluate(scene, data, held_out, config.backend)["psnr"])]
    last_eval = time.perf_counter()
    bar = tqdm(total=config.steps, disable=not progress, desc="refine", unit="step")
    step = 0
    # at least one step, however short the budget (a busy machine can spend a small one on the first evaluation)
    while (config.steps is None or step < config.steps) and (step == 0 or time.perf_counter() - start < budget):
        t, t2 = int(rng.choice(train)), int(rng.choice(train))
        means_t2, _ = scene.at(t2)
        out = scene.render(t, tensors["K"][t], tensors["w2c"][t], w, h, extra=means_t2, backend=config.backend)
        if out.means2d is not None:
            out.means2d.retain_grad()
        rgb = out.features[..., :3]
        track, depth = _track_losses(out, t, t2, data, tensors)
        loss = (_rgb_loss(rgb, tensors["frames"][t], config) + config.track_weight * track
                + config.depth_weight * depth
                + config.smooth_weight * scene.motion.acceleration() / scale ** 2
                + config.trajectory_weight * _trajectory_acceleration(scene, t) / scale ** 2
                + config.anchor_weight * _anchor(scene, means_t2, t2, data, tensors) / scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if out.means2d is not None and out.means2d.grad is not None:
            g = out.means2d.grad.reshape(-1, 2).norm(dim=-1)
            grad_sum += g
            seen += (g > 0).float()
        elapsed = time.perf_counter() - start
        densifying = elapsed < config.densify_until * budget and (
            config.steps is None or step < config.densify_until * config.steps)
        scene.motion.advance(max(elapsed / budget, step / config.steps if config.steps else 0.0))
        if step % config.densify_every == 0 and densifying:
            _densify_and_prune(scene, grad_sum, seen, config, generator)
            optimizer = _optimizer(scene, config, scale)
            grad_sum, seen = torch.zeros(scene.count, device=device), torch.zeros(scene.count, device=device)
        if time.perf_counter() - last_eval > config.eval_every_s:
            history.append((elapsed, step, scene.count, evaluate(scene, data, held_out, config.backend)["psnr"]))
            last_eval = time.perf_counter()
        bar.update(1)
        bar.set_postfix(psnr=f"{psnr(rgb.detach(), tensors['frames'][t]):.2f}", gaussians=f"{scene.count}")
        if on_step is not None:
            on_step(step, elapsed)
    bar.close()
    seconds = time.perf_counter() - start
    final = evaluate(scene, data, held_out, config.backend)
    history.append((seconds, step, scene.count, final["psnr"]))
    return Fitted(scene, history, seconds, step, final)


@torch.no_grad()
def render_views(scene: GaussianScene, size: tuple[int, int], times, world_to_camera: np.ndarray,
                 intrinsics: np.ndarray, backend: str = "auto") -> np.ndarray:
    """(T, H, W, 3) float32 in [0, 1]: frame times[i] of the scene seen by world_to_camera[i] (T, 4, 4) with
    intrinsics[i] (T, 3, 3); size (W, H)."""
    w, h = size
    out = [scene.render(int(t), torch.as_tensor(k, dtype=torch.float32), torch.as_tensor(pose, dtype=torch.float32),
                        w, h, backend=backend).features.clamp(0, 1).cpu().numpy()
           for t, pose, k in zip(times, world_to_camera, intrinsics)]
    return np.stack(out) if out else np.zeros((0, h, w, 3), np.float32)


def render_frames(scene: GaussianScene, data: Working, frames, backend: str = "auto") -> np.ndarray:
    """(len(frames), H, W, 3) float32 renders of ``frames`` from their own cameras."""
    frames = [int(t) for t in frames]
    return render_views(scene, data.size, frames, data.world_to_camera[frames], data.intrinsics[frames], backend)


def evaluate(scene: GaussianScene, data: Working, frames, backend: str = "auto") -> dict:
    """Mean PSNR (dB) and SSIM of ``frames`` rendered from their cameras against the video, and per frame."""
    frames = [int(t) for t in frames]
    if not frames:
        return {"frames": [], "psnr": float("nan"), "ssim": float("nan"), "per_frame": []}
    rendered = torch.as_tensor(render_frames(scene, data, frames, backend))
    target = torch.as_tensor(data.frames[frames])
    p = [psnr(a, b) for a, b in zip(rendered, target)]
    s = ssim(rendered.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0, size_average=False,
             win_size=7).tolist()
    return {"frames": frames, "psnr": float(np.mean(p)), "ssim": float(np.mean(s)),
            "per_frame": [{"frame": t, "psnr": a, "ssim": b} for t, a, b in zip(frames, p, s)]}
