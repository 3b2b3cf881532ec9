"""Which splats touch which screen tiles, front to back: the work list every compositing backend walks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TILE", "Tiles", "bin_tiles", "tile_pixels"]

TILE = 16            # tile side in pixels


@dataclass
class Tiles:
    """The splats of each tile, sorted near to far: tile ``k``'s are ``gaussians[ranges[k]:ranges[k + 1]]``.

    gaussians (E,) int64 splat index per entry · ranges (T + 1,) int64 · tiles_x, tiles_y: the grid."""

    gaussians: np.ndarray
    ranges: np.ndarray
    tiles_x: int
    tiles_y: int

    def pixels(self, tile: int, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, x1, y0, y1) pixel bounds of ``tile`` (end exclusive)."""
        return tile_pixels(tile, self.tiles_x, width, height)


def tile_pixels(tile, tiles_x, width, height):
    """Pixel bounds (x0, x1, y0, y1), ends exclusive, of tile number ``tile`` in a grid ``tiles_x`` wide (plain
    arithmetic, so the numba kernels compile it too)."""
    ty = tile // tiles_x
    tx = tile - ty * tiles_x
    return tx * TILE, min((tx + 1) * TILE, width), ty * TILE, min((ty + 1) * TILE, height)


def bin_tiles(means2d: np.ndarray, radii: np.ndarray, depths: np.ndarray, width: int, height: int) -> Tiles:
    """means2d (G, 2) px · radii (G,) px, 0 = culled · depths (G,) → the tiles each splat's square of half-side
    ``radius`` overlaps, each tile's list sorted by depth (ties by index, so every backend sees one order)."""
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    live = np.flatnonzero(radii > 0)
    mx, my, r = means2d[live, 0], means2d[live, 1], radii[live].astype(np.float64)
    x0 = np.clip(np.floor((mx - r) / TILE), 0, tiles_x).astype(np.int64)
    x1 = np.clip(np.floor((mx + r) / TILE) + 1, 0, tiles_x).astype(np.int64)
    y0 = np.clip(np.floor((my - r) / TILE), 0, tiles_y).astype(np.int64)
    y1 = np.clip(np.floor((my + r) / TILE) + 1, 0, tiles_y).astype(np.int64)
    nx, ny = np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)
    count = nx * ny
    owner = np.repeat(np.arange(live.size), count)
    # position of each entry inside its splat's rectangle → (tile x, tile y)
    local = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
    tile = (y0[owner] + local // np.maximum(nx[owner], 1)) * tiles_x + x0[owner] + local % np.maximum(nx[owner], 1)
    gaussians = live[owner]
    order = np.lexsort((gaussians, depths[gaussians], tile))
    tile, gaussians = tile[order], gaussians[order]
    ranges = np.searchsorted(tile, np.arange(tiles_x * tiles_y + 1)).astype(np.int64)
    return Tiles(gaussians.astype(np.int64), ranges, tiles_x, tiles_y)
