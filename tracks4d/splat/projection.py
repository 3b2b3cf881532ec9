"""3D Gaussians to 2D screen-space Gaussians (EWA splatting, as in 3DGS), in differentiable torch.

Shared by every compositing backend: gradients flow through this projection by autograd, and the backends only
differentiate the per-pixel compositing with respect to the 2D quantities it produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Projected", "project", "quaternion_to_matrix", "BLUR_PX", "NEAR"]

BLUR_PX = 0.3        # added to the 2D covariance's diagonal: every splat covers at least about a pixel
NEAR = 0.01          # Gaussians nearer than this (camera z) are culled
SIGMAS = 3.0         # a splat's radius on screen: this many standard deviations of its major axis
FOV_CLAMP = 1.3      # the Jacobian is taken at x/z clamped to this × the half field of view (3DGS)


@dataclass
class Projected:
    """means2d (G, 2) px · conics (G, 3): the inverse 2D covariance (a, b, c) of a x² + 2b xy + c y² · depths (G,)
    camera z · radii (G,) int64 px, 0 where culled (behind the near plane, degenerate or off screen)."""

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor


def quaternion_to_matrix(quats: torch.Tensor) -> torch.Tensor:
    """(G, 4) quaternions (w, x, y, z), any norm → (G, 3, 3) rotations."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(quats.shape[:-1] + (3, 3))


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, K: torch.Tensor,
            world_to_camera: torch.Tensor, width: int, height: int) -> Projected:
    """Project Gaussians into one camera (OpenCV, pixel centres at integer coordinates).

    means (G, 3) world · quats (G, 4) (w, x, y, z) · scales (G, 3) standard deviations along the Gaussian's axes
    · K (3, 3) · world_to_camera (4, 4) · width, height: the image's size in pixels."""
    rot, trans = world_to_camera[:3, :3], world_to_camera[:3, 3]
    cam = means @ rot.T + trans
    x, y, z = cam.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    zs = z.clamp_min(NEAR)
    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], -1)

    lim_x = FOV_CLAMP * 0.5 * width / fx
    lim_y = FOV_CLAMP * 0.5 * height / fy
    tx = (x / zs).clamp(-lim_x, lim_x) * zs
    ty = (y / zs).clamp(-lim_y, lim_y) * zs
    zero = torch.zeros_like(zs)
    jac = torch.stack([fx / zs, zero, -fx * tx / zs ** 2, zero, fy / zs, -fy * ty / zs ** 2], -1).reshape(-1, 2, 3)

    r = quaternion_to_matrix(quats)
    m = r * scales[:, None, :]                                   # R S
    cov_world = m @ m.transpose(1, 2)
    t = jac @ rot                                                # (G, 2, 3)
    cov = t @ cov_world @ t.transpose(1, 2)
    a = cov[:, 0, 0] + BLUR_PX
    b = cov[:, 0, 1]
    c = cov[:, 1, 1] + BLUR_PX
    det = a * c - b * b
    ok = (z > NEAR) & (det > 0)
    inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c * inv, -b * inv, a * inv], -1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt((mid * mid - det).clamp_min(0.1))
        radii = torch.ceil(SIGMAS * torch.sqrt(lam)).to(torch.int64)
        mx, my = means2d[:, 0], means2d[:, 1]
        on_screen = (mx + radii > 0) & (mx - radii < width) & (my + radii > 0) & (my - radii < height)
        radii = torch.where(ok & on_screen & torch.isfinite(means2d).all(-1), radii, torch.zeros_like(radii))
    return Projected(means2d, conics, z, radii)

