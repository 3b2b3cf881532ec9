"""Per-clip refinement of moving points (issue 14, the paper's test-time optimisation applied to its outputs).

With the cameras fixed, the moving tracks' world trajectories are written in the paper's low-rank form —
X_t(p) = B₁(p) + Σ_k c_t,k B_k(p), coefficients per frame, bases per track — initialised from the proposed points
(SVD) and optimised for: reprojection (robust, in focal-normalised units) on visible entries, temporal smoothness
(second differences, relative to the point's depth), and a pull towards the proposed depth along each ray weighted
by its certainty. Seconds on a CPU: the unknowns are K·(3P + N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..contracts import Cameras

__all__ = ["RefineConfig", "Refined", "refine_moving"]


@dataclass(frozen=True)
class RefineConfig:
    """bases: K (the first is the static B₁) · steps: Adam steps · smooth: weight of second differences · pull:
    weight of the proposed depth (tuning scenes, moving points within tolerance: 1 → 0.1 → 0.01 gave 0.330 → 0.339
    → 0.324, within noise; below 1 a jittery proposal drifts along its rays, tests/test_refine.py) · huber:
    reprojection robust threshold (normalised image units)."""

    bases: int = 12
    steps: int = 150
    lr: float = 0.02
    smooth: float = 1.0
    pull: float = 1.0
    huber: float = 0.01


@dataclass
class Refined:
    """points (N, M, 3) world for the M refined tracks · bases (M, K, 3) · coefficients (N, K), coefficients[:, 0]
    = 1 · reprojection_px: median reprojection error of visible entries after refinement · error_px (N, M): each
    entry's reprojection error (NaN where not visible)."""

    points: np.ndarray
    bases: np.ndarray
    coefficients: np.ndarray
    reprojection_px: float
    error_px: np.ndarray


def refine_moving(points: np.ndarray, tracks: np.ndarray, visible: np.ndarray, cameras: Cameras,
                  depth: np.ndarray, sigma: np.ndarray, config: RefineConfig = RefineConfig()) -> Refined:
    """points (N, M, 3) proposed world points of M moving tracks · tracks (N, M, 2) px · visible (N, M) bool ·
    depth (N, M) proposed camera-frame depth · sigma (N, M) its relative uncertainty → :class:`Refined`."""
    n, m = visible.shape
    k = int(min(config.bases, n, 3 * m))
    dtype = torch.float32                       # 2× faster than float64; sub-pixel at any scene size we see
    w2c = torch.as_tensor(cameras.world_to_camera, dtype=dtype)
    intr = torch.as_tensor(cameras.intrinsics, dtype=dtype)
    focal = intr[:, [0, 1], [0, 1]].mean(1)                                          # (N,)
    obs = torch.as_tensor(tracks, dtype=dtype)
    vis = torch.as_tensor(visible)
    target = torch.as_tensor(np.log(np.maximum(np.nan_to_num(depth, nan=1.0), 1e-9)), dtype=dtype)
    pull_w = torch.as_tensor(np.where(visible & np.isfinite(depth), 1.0 / np.maximum(sigma, 0.02) ** 2, 0.0),
                             dtype=dtype)
    scale = float(np.median(depth[visible & np.isfinite(depth)])) if (visible & np.isfinite(depth)).any() else 1.0

    start = np.nan_to_num(points.astype(np.float64))
    centre = start.mean(0)                                                            # (M, 3)
    u, s, vt = np.linalg.svd((start - centre).reshape(n, 3 * m), full_matrices=False)
    coeff = torch.tensor(np.concatenate([np.ones((n, 1)), u[:, :k - 1] * s[:k - 1]], 1), dtype=dtype,
                         requires_grad=True)
    bases = torch.tensor(np.concatenate([centre[:, None], vt[:k - 1].reshape(k - 1, m, 3).transpose(1, 0, 2)], 1),
                         dtype=dtype, requires_grad=True)
    # a basis step moves points by its size times the component's coefficients: damped by their RMS (s/√N) where it
    # exceeds 1 — bear.mp4's first component has 22 (up to 77) and, undamped, ran 350 px away from its tracks
    size = np.concatenate([[1.0], np.maximum(s[:k - 1] / np.sqrt(n), 1.0)])
    step = _Adam([coeff, bases], lr=[config.lr * scale, torch.tensor(config.lr * scale / size, dtype=dtype)[:, None]])
    mask = torch.ones(n, k, dtype=dtype)
    mask[:, 0] = 0.0
    fixed = torch.zeros(n, k, dtype=dtype)
    fixed[:, 0] = 1.0

    def trajectories():
        c = coeff * mask + fixed
        return torch.einsum("nk,mkc->nmc", c, bases)                                # (N, M, 3)

    def objective():
        x = trajectories()
        cam = torch.einsum("nij,nmj->nmi", w2c[:, :3, :3], x) + w2c[:, None, :3, 3]
        z = cam[..., 2].clamp(min=1e-6 * scale)
        uv = torch.stack([cam[..., 0] / z * intr[:, None, 0, 0] + intr[:, None, 0, 2],
                          cam[..., 1] / z * intr[:, None, 1, 1] + intr[:, None, 1, 2]], -1)
        residual = (uv - obs).norm(dim=-1) / focal[:, None]
        reproj = torch.nn.functional.huber_loss(residual[vis], torch.zeros_like(residual[vis]),
                                                delta=config.huber, reduction="mean") / config.huber
        pull = (pull_w * (torch.log(z) - target) ** 2).sum() / pull_w.sum().clamp(min=1)
        # accelerations relative to the point's depth: bringing a trajectory nearer the camera must not pay
        smooth = ((x[2:] - 2 * x[1:-1] + x[:-2]).norm(dim=-1) / z[1:-1]).pow(2).mean() if n > 2 else x.sum() * 0
        return reproj + config.pull * pull + config.smooth * 100 * smooth, residual

    for _ in range(config.steps):
        loss, _ = objective()
        step(torch.autograd.grad(loss, [coeff, bases]))
    with torch.no_grad():
        _, residual = objective()
        x = trajectories().double().numpy()
        c = (coeff * mask + fixed).double().numpy()
    px = residual * focal[:, None]
    return Refined(x, bases.detach().double().numpy(), c, float(px[vis].median()) if vis.any() else 0.0,
                   np.where(visible, px.numpy(), np.nan))


class _Adam:
    """Adam on a few tensors, each with its learning rate (a number, or a tensor broadcast to the parameter's shape;
    torch.optim's first step imports torch._dynamo: ~0.9 s in a fresh process)."""

    def __init__(self, params: list[torch.Tensor], lr: list[float | torch.Tensor], betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def __call__(self, grads) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, g, m, v, lr in zip(self.params, grads, self.m, self.v, self.lr):
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(lr * (m / (1 - b1 ** self.t)) / ((v / (1 - b2 ** self.t)).sqrt() + self.eps))
