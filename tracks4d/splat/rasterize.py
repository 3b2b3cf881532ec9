"""The one rendering function: 3D Gaussians seen by one camera → features, alpha and depth per pixel.

Backends, all behind :func:`rasterize` and differentiable with respect to every Gaussian parameter:

- ``"cpu"``: torch projection + numba compositing (:mod:`.cpu`), parallel over tiles — the CPU default;
- ``"torch"``: torch projection + the pure-torch compositing (:mod:`.reference`) the others are tested against;
- ``"gsplat"``: gsplat's CUDA rasteriser, for tensors on a GPU (``pip install gsplat`` on a CUDA machine: in no extra, it builds CUDA code);
- ``"auto"``: gsplat for CUDA tensors when it is installed, else ``"cpu"``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from .projection import BLUR_PX, NEAR, project
from .reference import composite_torch
from .tiles import bin_tiles

__all__ = ["Rendered", "rasterize", "BACKENDS"]

BACKENDS = ("auto", "cpu", "torch", "gsplat")


@dataclass
class Rendered:
    """features (H, W, C): Σ wᵢ fᵢ + T·background · alpha (H, W): 1 − T · depth (H, W): Σ wᵢ zᵢ, the accumulated
    camera depth (divide by alpha for the expected depth); wᵢ = αᵢ Πⱼ₍ⱼ<ᵢ₎(1 − αⱼ), T the transmittance left ·
    means2d: the splats' screen positions (G, 2) in the graph (call ``retain_grad()`` on it before ``backward()``
    for the screen-space gradients that drive densification; gsplat's shape is (1, G, 2))."""

    features: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    means2d: torch.Tensor | None = None


def rasterize(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
              features: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor, width: int, height: int,
              background: torch.Tensor | None = None, backend: str = "auto") -> Rendered:
    """Render Gaussians into one camera (OpenCV axes, pixel centres at integer coordinates).

    means (G, 3) world · quats (G, 4) (w, x, y, z), any norm · scales (G, 3) standard deviations, > 0 ·
    opacities (G,) in [0, 1] · features (G, C), any channels (colour, track positions, …) · K (3, 3) ·
    world_to_camera (4, 4) · background (C,) or None (zeros) · backend: one of :data:`BACKENDS`."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    if background is None:
        background = features.new_zeros(features.shape[1])
    if backend == "auto":
        backend = "gsplat" if means.is_cuda and importlib.util.find_spec("gsplat") else "cpu"
    if backend == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, features, K, world_to_camera, width, height,
                                 background)
    proj = project(means, quats, scales, K, world_to_camera, width, height)
    tiles = bin_tiles(proj.means2d.detach().cpu().numpy(), proj.radii.cpu().numpy(),
                      proj.depths.detach().cpu().numpy(), width, height)
    channels = torch.cat([features, proj.depths[:, None]], 1)
    back = torch.cat([background, background.new_zeros(1)])
    if backend == "cpu":
        from .cpu import composite_cpu               # numba compiles on first use
        image, alpha = composite_cpu(proj.means2d, proj.conics, opacities, channels, back, tiles, width, height)
    else:
        image, alpha = composite_torch(proj.means2d, proj.conics, opacities, channels, back, tiles, width, height)
    return Rendered(image[..., :-1], alpha, image[..., -1], proj.means2d)


def _rasterize_gsplat(means, quats, scales, opacities, features, K, world_to_camera, width, height, background):
    from gsplat import rasterization

    k = K.clone()
    k[:2, 2] += 0.5                                  # gsplat's pixel centres are at half-integers
    colours, alphas, meta = rasterization(
        means, quats, scales, opacities, features, world_to_camera[None], k[None], width, height,
        near_plane=NEAR, eps2d=BLUR_PX, render_mode="RGB+D", backgrounds=torch.cat([background,
                                                                                    background.new_zeros(1)])[None])
    return Rendered(colours[0, ..., :-1], alphas[0, ..., 0], colours[0, ..., -1], meta.get("means2d"))
