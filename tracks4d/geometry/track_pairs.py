"""Comparing tracks over the frames they share, at a cost linear in the clip's length: each track's span of frames,
a bounded sample of a span's frames, and medians over frames that ignore the unseen ones."""

from __future__ import annotations

import numpy as np

COMPARED_FRAMES = 50      # medians over a longer span are taken on this many of its frames, evenly spread


def spans(seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """seen (N, P) bool → (first, last) (P,) int: the first and last frame each track is seen in (0 and N − 1 for a
    track never seen)."""
    return seen.argmax(0), len(seen) - 1 - seen[::-1].argmax(0)


def spread_frames(start: int, stop: int) -> np.ndarray:
    """Frames start … stop − 1, at most ``COMPARED_FRAMES`` of them, evenly spread: (F,) int."""
    if stop - start <= COMPARED_FRAMES:
        return np.arange(start, stop)
    return np.unique(np.linspace(start, stop - 1, COMPARED_FRAMES).round().astype(int))


def nan_median(values: np.ndarray) -> np.ndarray:
    """Median over axis 0 ignoring NaN (NaN where all are): ``np.nanmedian``'s result, by one sort (NaN sort last)."""
    ordered = np.sort(values, axis=0)
    count = np.isfinite(ordered).sum(0)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[None], 0)[0]
    high = np.take_along_axis(ordered, np.maximum(count // 2, 0)[None], 0)[0]
    return np.where(count > 0, 0.5 * (low + high), np.nan)
