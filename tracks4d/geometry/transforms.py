"""Camera geometry in the OpenCV convention (x right, y down, z forward).

Torch functions work on any leading batch shape; numpy functions are for evaluation and I/O (float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "rot6d_to_matrix", "matrix_to_rot6d", "project_normalized", "pixels_to_normalized", "normalized_to_pixels",
    "invert_rigid", "pose_matrix", "transform_points", "umeyama_sim3", "apply_sim3", "Sim3", "MIN_DEPTH",
]

MIN_DEPTH = 0.01
"""Depth clamp used when dividing by z (normalised coordinates), as the paper's projection."""


def rot6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Gram–Schmidt 6D → rotation (Zhou et al.), the official convention: the two 3-vectors are the first two ROWS.

    d6: (..., 6) → (..., 3, 3) with rows (b1, b2, b1 × b2).
    """
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-2)


def matrix_to_rot6d(rot: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rot6d_to_matrix`: (..., 3, 3) → (..., 6), the first two rows."""
    return torch.cat((rot[..., 0, :], rot[..., 1, :]), dim=-1)


def project_normalized(points_cam: torch.Tensor) -> torch.Tensor:
    """Pinhole projection to normalised image coordinates, z clamped ≥ :data:`MIN_DEPTH`.

    points_cam: (..., 3) camera-frame points → (..., 2).
    """
    z = points_cam[..., 2:3].clamp(min=MIN_DEPTH)
    return points_cam[..., :2] / z


def pixels_to_normalized(pixels: np.ndarray | torch.Tensor, intrinsics: np.ndarray | torch.Tensor):
    """Apply K⁻¹ to pixel coordinates.

    pixels: (N, P, 2) · intrinsics: (3, 3) or (N, 3, 3) → (N, P, 2), same array type as ``pixels``.
    """
    is_torch = isinstance(pixels, torch.Tensor)
    lib = torch if is_torch else np
    k = intrinsics if not is_torch else torch.as_tensor(intrinsics, dtype=pixels.dtype, device=pixels.device)
    if k.ndim == 2:
        k = k[None]
    fx, fy, cx, cy, s = k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2], k[:, 0, 1]
    y = (pixels[..., 1] - cy[:, None]) / fy[:, None]
    x = (pixels[..., 0] - cx[:, None] - s[:, None] * y) / fx[:, None]
    return lib.stack((x, y), -1) if is_torch else np.stack((x, y), -1)


def normalized_to_pixels(xy: np.ndarray | torch.Tensor, intrinsics: np.ndarray | torch.Tensor):
    """Apply K to normalised coordinates: (N, P, 2) and (3, 3) or (N, 3, 3) → (N, P, 2) pixels."""
    is_torch = isinstance(xy, torch.Tensor)
    k = intrinsics if not is_torch else torch.as_tensor(intrinsics, dtype=xy.dtype, device=xy.device)
    if k.ndim == 2:
        k = k[None]
    u = k[:, 0, 0, None] * xy[..., 0] + k[:, 0, 1, None] * xy[..., 1] + k[:, 0, 2, None]
    v = k[:, 1, 1, None] * xy[..., 1] + k[:, 1, 2, None]
    return torch.stack((u, v), -1) if is_torch else np.stack((u, v), -1)


def pose_matrix(rotation, translation):
    """Stack R (..., 3, 3) and t (..., 3) into homogeneous (..., 4, 4) (numpy or torch)."""
    if isinstance(rotation, torch.Tensor):
        top = torch.cat((rotation, translation[..., None]), -1)
        bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=top.dtype, device=top.device)
        bottom[..., 0, 3] = 1
        return torch.cat((top, bottom), -2)
    out = np.zeros(np.shape(rotation)[:-2] + (4, 4))
    out[..., :3, :3] = rotation
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(pose):
    """Invert rigid transforms (camera-to-world ↔ world-to-camera): (..., 4, 4) → (..., 4, 4)."""
    rot = pose[..., :3, :3]
    rt = rot.transpose(-1, -2) if isinstance(pose, torch.Tensor) else np.swapaxes(rot, -1, -2)
    t = -(rt @ pose[..., :3, 3:])[..., 0]
    return pose_matrix(rt, t)


def transform_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Rigid poses (N, 4, 4) applied per frame to points (P, 3) (the same in every frame) or (N, P, 3) → (N, P, 3);
    with world-to-camera poses the result is camera-frame points, its [..., 2] their depth."""
    return np.matmul(points, np.swapaxes(pose[:, :3, :3], 1, 2)) + pose[:, None, :3, 3]  # BLAS, unlike einsum


def umeyama_sim3(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ≈ s·R·src + t (Umeyama 1991).

    src, dst: (M, 3) → (s, R (3, 3), t (3,)). Needs M ≥ 3 points not all collinear for a unique rotation.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 2:
        raise ValueError(f"umeyama_sim3 needs two (M>=2, 3) arrays of one shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs**2).sum() / len(src)
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if with_scale and var_s > 0 else 1.0
    t = mu_d - scale * rot @ mu_s
    return scale, rot, t


def apply_sim3(scale: float, rot: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """s·R·x + t for points (..., 3)."""
    return scale * points @ rot.T + t


@dataclass(frozen=True)
class Sim3:
    """x ↦ s·R·x + t."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def points(self, x: np.ndarray) -> np.ndarray:
        return self.scale * x @ self.rotation.T + self.translation

    def camera_to_world(self, c2w: np.ndarray) -> np.ndarray:
        """(N, 4, 4) camera-to-world poses moved by this similarity (rotation and centre; scale goes to depth)."""
        out = c2w.copy()
        out[:, :3, :3] = self.rotation @ c2w[:, :3, :3]
        out[:, :3, 3] = self.points(c2w[:, :3, 3])
        return out

    def world_to_camera(self, w2c: np.ndarray) -> np.ndarray:
        """(N, 4, 4) world-to-camera poses moved by this similarity."""
        return invert_rigid(self.camera_to_world(invert_rigid(w2c)))
