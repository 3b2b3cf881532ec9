"""Self-supervised losses of TracksTo4D (paper §2.3 and appendix).

All terms use normalised image coordinates. Per-window values are averaged over the windows of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..geometry.transforms import project_normalized
from .model import ModelOutput, to_camera

__all__ = ["LossWeights", "LossTerms", "tracks4d_loss", "pretrain_camera_loss", "supervised_loss", "cauchy_nll",
           "PRETRAIN_CENTRE"]

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


def supervised_loss(out: ModelOutput, gt_points: torch.Tensor, gt_camera_to_world: torch.Tensor,
                    mask: torch.Tensor, has_gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scale- and gauge-free losses against ground truth (synthetic windows), for windows where ``has_gt``.

    gt_points: (B, N, P, 3) true camera-frame point of every track in every frame (occluded ones too) ·
    gt_camera_to_world: (B, N, 4, 4) · mask: (B, N, P) bool real entries · has_gt: (B,) bool.

    The prediction's scale s = exp(mean log(z_true / z_pred)) (detached) brings it to the truth's units; then
    - points: mean ‖s·X_cam − X_cam_true‖ / z_true (relative 3D error in the camera frame);
    - rotation: mean ‖R₀ᵀR_t − R₀*ᵀR_t*‖_F (rotations relative to the window's first frame);
    - translation: mean ‖s·R₀ᵀ(c_t − c₀) − R₀*ᵀ(c_t* − c₀*)‖ / median z_true.
    Returns a dict of (unweighted) scalar tensors; all zero when no window has ground truth."""
    zero = out.centre.sum() * 0.0
    if not bool(has_gt.any()):
        return {"points": zero, "rotation": zero, "translation": zero}
    sel = has_gt.nonzero().squeeze(1)
    rotation, centre = out.rotation[sel], out.centre[sel]
    cam = to_camera(out.points()[sel], rotation, centre)
    true, valid = gt_points[sel].to(cam.dtype), mask[sel] & (gt_points[sel, ..., 2] > 1e-6)
    w = valid.to(cam.dtype)
    count = w.sum((1, 2)).clamp(min=1)
    log_ratio = torch.log(true[..., 2].clamp(min=1e-6)) - torch.log(cam[..., 2].clamp(min=1e-3))
    scale = torch.exp((log_ratio * w).sum((1, 2)) / count).detach()               # (b,)
    rel = (scale[:, None, None, None] * cam - true).norm(dim=-1) / true[..., 2].clamp(min=1e-6)
    points = ((rel * w).sum((1, 2)) / count).mean()

    gt = gt_camera_to_world[sel].to(cam.dtype)
    rel_rot = rotation[:, :1].transpose(-1, -2) @ rotation
    rel_rot_true = gt[:, :1, :3, :3].transpose(-1, -2) @ gt[:, :, :3, :3]
    frames = mask[sel].any(2).to(cam.dtype)                                          # (b, N) real frames
    rot_err = (rel_rot - rel_rot_true).flatten(-2).norm(dim=-1)
    rotation_loss = ((rot_err * frames).sum(1) / frames.sum(1).clamp(min=1)).mean()
    step = torch.einsum("bji,bnj->bni", rotation[:, 0], centre - centre[:, :1])
    step_true = torch.einsum("bji,bnj->bni", gt[:, 0, :3, :3], gt[:, :, :3, 3] - gt[:, :1, :3, 3])
    depth_scale = torch.stack([true[i, ..., 2][valid[i]].median() for i in range(len(sel))]).clamp(min=1e-6)
    trans_err = (scale[:, None, None] * step - step_true).norm(dim=-1) / depth_scale[:, None]
    translation = ((trans_err * frames).sum(1) / frames.sum(1).clamp(min=1)).mean()
    return {"points": points, "rotation": rotation_loss, "translation": translation}
