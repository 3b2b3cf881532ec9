"""Alpha compositing of screen-space splats in plain torch, tile by tile: the reference the fast paths are tested
against (autograd gives its gradients).

The rules (3DGS's): splats front to back; α = min(MAX_ALPHA, opacity · exp(power)); splats with power > 0 or
α < MIN_ALPHA skipped; a pixel is done before the splat that would bring its transmittance below MIN_TRANSMITTANCE.
"""

from __future__ import annotations

import numpy as np
import torch

from .tiles import Tiles

__all__ = ["composite_torch", "MAX_ALPHA", "MIN_ALPHA", "MIN_TRANSMITTANCE"]

MAX_ALPHA = 0.99
MIN_ALPHA = 1.0 / 255.0
MIN_TRANSMITTANCE = 1e-4


def composite_torch(means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor, features: torch.Tensor,
                    background: torch.Tensor, tiles: Tiles, width: int, height: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as :func:`~.cpu.composite_cpu`: → image (H, W, C), alpha (H, W)."""
    channels = features.shape[1]
    index, colours, alphas = [], [], []
    for tile in range(tiles.tiles_x * tiles.tiles_y):
        x0, x1, y0, y1 = tiles.pixels(tile, width, height)
        ys, xs = np.mgrid[y0:y1, x0:x1]
        index.append(torch.from_numpy((ys * width + xs).ravel()))
        g = torch.from_numpy(tiles.gaussians[tiles.ranges[tile]:tiles.ranges[tile + 1]])
        n_pix = xs.size
        if g.numel() == 0:
            colours.append(background.expand(n_pix, channels))
            alphas.append(means2d.new_zeros(n_pix))
            continue
        px = torch.from_numpy(xs.ravel()).to(means2d)[:, None]
        py = torch.from_numpy(ys.ravel()).to(means2d)[:, None]
        dx, dy = px - means2d[g, 0], py - means2d[g, 1]
        a, b, c = conics[g].unbind(-1)
        power = -0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy
        alpha = torch.clamp(opacities[g] * torch.exp(torch.clamp(power, max=0.0)), max=MAX_ALPHA)
        alpha = torch.where((power <= 0) & (alpha >= MIN_ALPHA), alpha, torch.zeros_like(alpha))
        keep = torch.cumprod(1 - alpha.detach(), 1) >= MIN_TRANSMITTANCE
        alpha = alpha * keep
        through = torch.cumprod(1 - alpha, 1)
        front = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], 1)
        colours.append((alpha * front) @ features[g] + through[:, -1:] * background)
        alphas.append(1 - through[:, -1])
    index = torch.cat(index)
    image = features.new_zeros(height * width, channels).index_copy(0, index, torch.cat(colours))
    alpha = means2d.new_zeros(height * width).index_copy(0, index, torch.cat(alphas))
    return image.reshape(height, width, channels), alpha.reshape(height, width)
