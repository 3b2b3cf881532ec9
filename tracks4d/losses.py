"""Self-supervised losses of TracksTo4D (DESIGN §6, paper §2.3 and appendix).

All terms use normalised image coordinates. Per-window values are averaged over the windows of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .geometry import project_normalized
from .model import ModelOutput, to_camera

__all__ = ["LossWeights", "LossTerms", "tracks4d_loss", "pretrain_camera_loss", "cauchy_nll", "PRETRAIN_CENTRE"]

PRETRAIN_CENTRE = (0.0, 0.0, -15.0)
"""Camera pre-training target: identity rotation, centre behind the origin, looking at it."""


@dataclass(frozen=True)
class LossWeights:
    reprojection: float = 50.0
    static: float = 1.0
    negative_depth: float = 1.0
    sparse: float = 0.001


@dataclass
class LossTerms:
    """total: scalar tensor to back-propagate; the other fields are unweighted per-term scalars."""

    total: torch.Tensor
    reprojection: torch.Tensor
    static: torch.Tensor
    negative_depth: torch.Tensor
    sparse: torch.Tensor

    def as_floats(self) -> dict[str, float]:
        return {k: float(v.detach()) for k, v in vars(self).items()}


def _per_window_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values, mask: (B, ...) → (B,) mean of values where mask is True (0 for an empty window)."""
    w = mask.to(values.dtype)
    dims = tuple(range(1, values.ndim))
    return (values * w).sum(dims) / w.sum(dims).clamp(min=1)


def cauchy_nll(residual: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Cauchy negative log-likelihood up to a constant: log(γ + r²/γ). Minimal over γ at γ = r."""
    return torch.log(gamma + residual**2 / gamma)


def tracks4d_loss(out: ModelOutput, target: torch.Tensor, visible: torch.Tensor,
                  point_mask: torch.Tensor | None = None, weights: LossWeights = LossWeights()) -> LossTerms:
    """The training objective.

    out: network output (B windows) · target: (B, N, P, 2) normalised tracks · visible: (B, N, P) bool, already
    False on padded frames/tracks · point_mask: (B, P) bool real tracks (for the sparse term), None = all real.

    - reprojection (×50): ‖π(X_t) − m‖ with cameras and B₁ detached, mean over visible entries;
    - static (×1): log(γ + r²/γ) with r the reprojection error of B₁, mean over visible entries;
    - negative depth (×1): −Σ min(Z, 0) of the per-frame points over visible entries;
    - sparse (×0.001): mean over k ≥ 2, tracks and xyz of |B_k| / γ with γ detached.
    """
    focal = out.focal_scale[:, :, None, None]
    cam_dyn = to_camera(out.points(detach_static=True), out.rotation.detach(), out.centre.detach())
    r_dyn = (focal * project_normalized(cam_dyn) - target).norm(dim=-1)
    static_world = out.static_points[:, None].expand(-1, target.shape[1], -1, -1)
    r_static = (focal * project_normalized(to_camera(static_world, out.rotation, out.centre)) - target).norm(dim=-1)
    gamma = out.motion_level[:, None].expand_as(r_static)

    reprojection = _per_window_mean(r_dyn, visible).mean()
    static = _per_window_mean(cauchy_nll(r_static, gamma), visible).mean()
    negative_depth = (-(cam_dyn[..., 2].clamp(max=0)) * visible).sum(dim=(1, 2)).mean()
    ratio = (out.bases[:, :, 1:] / out.motion_level.detach()[:, :, None, None]).abs()  # (B, P, K-1, 3)
    pmask = torch.ones(ratio.shape[:2], dtype=torch.bool, device=ratio.device) if point_mask is None else point_mask
    sparse = _per_window_mean(ratio, pmask[:, :, None, None].expand_as(ratio)).mean()
    total = (weights.reprojection * reprojection + weights.static * static
             + weights.negative_depth * negative_depth + weights.sparse * sparse)
    return LossTerms(total, reprojection, static, negative_depth, sparse)


def pretrain_camera_loss(out: ModelOutput, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(1/N) Σ_t [ ‖c_t − (0,0,−15)‖² / 100 + ‖R_t − I‖²_F ], averaged over windows. frame_mask: (B, N) or None."""
    target = torch.tensor(PRETRAIN_CENTRE, dtype=out.centre.dtype, device=out.centre.device)
    eye = torch.eye(3, dtype=out.rotation.dtype, device=out.rotation.device)
    per_frame = ((out.centre - target) ** 2).sum(-1) / 100.0 + ((out.rotation - eye) ** 2).sum((-1, -2))
    mask = torch.ones_like(per_frame, dtype=torch.bool) if frame_mask is None else frame_mask
    return _per_window_mean(per_frame, mask).mean()
