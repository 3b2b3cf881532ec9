"""Alpha compositing of screen-space splats on the CPU: numba kernels, forward and backward, parallel over tiles.

The rules of :mod:`.reference` (those of 3DGS): front to back, α = min(0.99, o · exp(power)), splats with power > 0
or α < 1/255 skipped, a pixel done once its transmittance would fall below 1e-4. The backward pass walks each
pixel's list back to front, recovering the transmittance by division, and writes each (tile, splat) entry's
gradient to its own slot, so tiles never race; the slots are summed per splat afterwards.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from .reference import MAX_ALPHA, MIN_ALPHA, MIN_TRANSMITTANCE
from .tiles import Tiles, tile_pixels

__all__ = ["composite_cpu"]


_tile_pixels = njit(cache=True, inline="always")(tile_pixels)


@njit(cache=True, inline="always")
def _gather(means2d, conics, opacities, features, gaussians, start, end):  # pragma: no cover - compiled
    """A tile's splats in contiguous arrays (the pixel loops then read memory in order)."""
    n = end - start
    mx, my = np.empty(n, means2d.dtype), np.empty(n, means2d.dtype)
    ca, cb, cc = np.empty(n, conics.dtype), np.empty(n, conics.dtype), np.empty(n, conics.dtype)
    op, cut = np.empty(n, opacities.dtype), np.empty(n, opacities.dtype)
    feat = np.empty((n, features.shape[1]), features.dtype)
    for i in range(n):
        g = gaussians[start + i]
        mx[i], my[i] = means2d[g, 0], means2d[g, 1]
        ca[i], cb[i], cc[i] = conics[g, 0], conics[g, 1], conics[g, 2]
        op[i] = opacities[g]
        # below this power α < MIN_ALPHA: most (pixel, splat) pairs are rejected without an exp
        cut[i] = math.log(MIN_ALPHA / op[i]) - 1e-4 if op[i] > 0 else np.inf
        feat[i] = features[g]
    return mx, my, ca, cb, cc, op, cut, feat


@njit(parallel=True, cache=True)
def _forward(means2d, conics, opacities, features, background, gaussians, ranges, tiles_x, width, height,
             out, t_final, n_contrib):  # pragma: no cover - compiled
    channels = features.shape[1]
    for tile in prange(ranges.shape[0] - 1):
        x0, x1, y0, y1 = _tile_pixels(tile, tiles_x, width, height)
        start, end = ranges[tile], ranges[tile + 1]
        mx, my, ca, cb, cc, op, cut, feat = _gather(means2d, conics, opacities, features, gaussians, start, end)
        for py in range(y0, y1):
            for px in range(x0, x1):
                t = 1.0
                last = 0
                for i in range(end - start):
                    dx = px - mx[i]
                    dy = py - my[i]
                    power = -0.5 * (ca[i] * dx * dx + cc[i] * dy * dy) - cb[i] * dx * dy
                    if power > 0.0 or power < cut[i]:
                        continue
                    alpha = min(MAX_ALPHA, op[i] * math.exp(power))
                    if alpha < MIN_ALPHA:
                        continue
                    after = t * (1.0 - alpha)
                    if after < MIN_TRANSMITTANCE:
                        break
                    w = alpha * t
                    for c in range(channels):
                        out[py, px, c] += w * feat[i, c]
                    t = after
                    last = i + 1
                for c in range(channels):
                    out[py, px, c] += t * background[c]
                t_final[py, px] = t
                n_contrib[py, px] = last


@njit(parallel=True, cache=True)
def _backward(means2d, conics, opacities, features, background, gaussians, ranges, tiles_x, width, height,
              t_final, n_contrib, d_out, d_alpha, g_means, g_conics, g_opacities, g_features
              ):  # pragma: no cover - compiled
    channels = features.shape[1]
    for tile in prange(ranges.shape[0] - 1):
        x0, x1, y0, y1 = _tile_pixels(tile, tiles_x, width, height)
        start, end = ranges[tile], ranges[tile + 1]
        mx, my, ca, cb, cc, op, cut, feat = _gather(means2d, conics, opacities, features, gaussians, start, end)
        behind = np.empty(channels, dtype=features.dtype)
        for py in range(y0, y1):
            for px in range(x0, x1):
                t = t_final[py, px]
                d_alpha_px = d_alpha[py, px] * t_final[py, px]
                for c in range(channels):
                    behind[c] = background[c]
                for i in range(n_contrib[py, px] - 1, -1, -1):
                    k = start + i
                    dx = px - mx[i]
                    dy = py - my[i]
                    power = -0.5 * (ca[i] * dx * dx + cc[i] * dy * dy) - cb[i] * dx * dy
                    if power > 0.0 or power < cut[i]:
                        continue
                    gauss = math.exp(power)
                    raw = op[i] * gauss
                    alpha = min(MAX_ALPHA, raw)
                    if alpha < MIN_ALPHA:
                        continue
                    t = t / (1.0 - alpha)                 # transmittance in front of this splat
                    w = alpha * t
                    dot = 0.0
                    for c in range(channels):
                        grad = d_out[py, px, c]
                        g_features[k, c] += w * grad
                        dot += (feat[i, c] - behind[c]) * grad
                        behind[c] = alpha * feat[i, c] + (1.0 - alpha) * behind[c]
                    if raw > MAX_ALPHA:
                        continue                          # clamped: α does not depend on the splat here
                    d_a = t * dot + d_alpha_px / (1.0 - alpha)
                    g_opacities[k] += gauss * d_a
                    d_power = raw * d_a
                    g_means[k, 0] += d_power * (ca[i] * dx + cb[i] * dy)
                    g_means[k, 1] += d_power * (cb[i] * dx + cc[i] * dy)
                    g_conics[k, 0] += -0.5 * d_power * dx * dx
                    g_conics[k, 1] += -d_power * dx * dy
                    g_conics[k, 2] += -0.5 * d_power * dy * dy


@njit(cache=True)
def _sum_entries(gaussians, per_entry, out):  # pragma: no cover - compiled
    for k in range(gaussians.shape[0]):
        g = gaussians[k]
        for c in range(per_entry.shape[1]):
            out[g, c] += per_entry[k, c]


def _numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, opacities, features, background, tiles: Tiles, width: int, height: int):
        arrays = [_numpy(v) for v in (means2d, conics, opacities, features, background)]
        dtype = arrays[3].dtype
        out = np.zeros((height, width, features.shape[1]), dtype)
        t_final = np.ones((height, width), dtype)
        n_contrib = np.zeros((height, width), np.int64)
        _forward(*arrays, tiles.gaussians, tiles.ranges, tiles.tiles_x, width, height, out, t_final, n_contrib)
        ctx.arrays, ctx.tiles, ctx.size = arrays, tiles, (width, height)
        ctx.t_final, ctx.n_contrib, ctx.device = t_final, n_contrib, means2d.device
        return torch.from_numpy(out).to(means2d.device), torch.from_numpy(1.0 - t_final).to(means2d.device)

    @staticmethod
    def backward(ctx, d_out, d_alpha):
        means2d, conics, opacities, features, background = ctx.arrays
        tiles, (width, height) = ctx.tiles, ctx.size
        entries, dtype = tiles.gaussians.shape[0], features.dtype
        per_entry = np.zeros((entries, 2 + 3 + 1 + features.shape[1]), dtype)
        g_means, g_conics = per_entry[:, 0:2], per_entry[:, 2:5]
        g_opacities, g_features = per_entry[:, 5], per_entry[:, 6:]
        d_out = np.zeros((height, width, features.shape[1]), dtype) if d_out is None else _numpy(d_out).astype(dtype)
        d_alpha = np.zeros((height, width), dtype) if d_alpha is None else _numpy(d_alpha).astype(dtype)
        _backward(means2d, conics, opacities, features, background, tiles.gaussians, tiles.ranges, tiles.tiles_x,
                  width, height, ctx.t_final, ctx.n_contrib, d_out, d_alpha, g_means, g_conics, g_opacities,
                  g_features)
        total = np.zeros((means2d.shape[0], per_entry.shape[1]), dtype)
        _sum_entries(tiles.gaussians, per_entry, total)
        total = torch.from_numpy(total).to(ctx.device)
        return total[:, 0:2], total[:, 2:5], total[:, 5], total[:, 6:], None, None, None, None


def composite_cpu(means2d: torch.Tensor, conics: torch.Tensor, opacities: torch.Tensor, features: torch.Tensor,
                  background: torch.Tensor, tiles: Tiles, width: int, height: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite splats into an image, differentiably (numba).

    means2d (G, 2) px · conics (G, 3) · opacities (G,) · features (G, C) · background (C,) · tiles: from
    :func:`~.tiles.bin_tiles` → image (H, W, C), alpha (H, W). One dtype throughout (float32 or float64)."""
    return _Composite.apply(means2d, conics, opacities, features, background, tiles, width, height)
