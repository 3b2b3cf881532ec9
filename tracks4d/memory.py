"""Memory on long clips: what a video will cost and the frame stride that keeps it under a limit
(``--max-memory``), and giving freed memory back to the system.

The pipeline's peak resident memory grows with the frames it reads: the decoded frames and the tracker's grey and
texture maps (bytes per pixel per frame), and the (frame × track) arrays of the later stages — a clip holds about
:data:`TRACKS_PER_CLIP_FRAME` tracks per frame it has (4.6–9.8 measured on 600–1,800-frame takes), so these grow
with the square of its length. Fitted to the long-clip benchmark (``benchmarks/bench_long_clips.py``, peak resident
memory of one process on generated 640×480 clips: 0.69 GB at 50 frames, 1.86 GB at 600, 5.56 GB at 1,800); it errs
high (0.78, 1.92 and 6.1 GB there).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass

__all__ = ["MemoryPlan", "estimate_peak_gb", "plan_stride", "give_back_freed", "BASE_GB", "MIN_FRAMES"]

BASE_GB = 0.7                # the process, both networks and a short clip's working set
BYTES_PER_PIXEL = 5.0        # RGB frame, grey and texture code, per pixel per frame
TRACKS_PER_CLIP_FRAME = 10   # tracks a clip holds per frame it has
BYTES_PER_ENTRY = 82.0       # per (frame, track) of the clip: positions, visibility, confidence, points, depth, …
MIN_FRAMES = 50              # a stride never leaves fewer frames than a network window


@dataclass(frozen=True)
class MemoryPlan:
    """limit_gb: the limit asked for · frames: the source's frames (after the user's stride and frame cap) ·
    estimated_gb: the peak estimated at that rate · stride: the extra stride chosen (1: none needed) ·
    estimated_after_gb: the estimate at that stride (above the limit when even :data:`MIN_FRAMES` frames exceed it)."""

    limit_gb: float
    frames: int
    estimated_gb: float
    stride: int
    estimated_after_gb: float

    @property
    def fits(self) -> bool:
        return self.estimated_after_gb <= self.limit_gb

    def to_meta(self) -> dict:
        return {"limit_gb": self.limit_gb, "frames": self.frames, "estimated_gb": round(self.estimated_gb, 2),
                "stride": self.stride, "estimated_after_gb": round(self.estimated_after_gb, 2), "fits": self.fits}

    def sentence(self) -> str | None:
        """The verdict's note when a stride was taken or the limit cannot be met, else None."""
        if self.stride > 1:
            return (f"--max-memory {self.limit_gb:g} GB: every {_ordinal(self.stride)} frame was read "
                    f"({-(-self.frames // self.stride)} of {self.frames}; all of them would take an estimated "
                    f"{self.estimated_gb:.1f} GB)")
        if not self.fits:
            return f"--max-memory {self.limit_gb:g} GB: an estimated {self.estimated_gb:.1f} GB is needed"
        return None


def estimate_peak_gb(n_frames: int, width: int, height: int) -> float:
    """Estimated peak resident memory (GB) of the pipeline on ``n_frames`` frames of width × height (working
    resolution)."""
    tracks = TRACKS_PER_CLIP_FRAME * n_frames
    return BASE_GB + n_frames * (width * height * BYTES_PER_PIXEL + tracks * BYTES_PER_ENTRY) / 1e9


def plan_stride(n_frames: int, width: int, height: int, limit_gb: float) -> MemoryPlan:
    """The smallest stride ≥ 1 whose frames fit ``limit_gb`` — but never one leaving fewer than :data:`MIN_FRAMES`
    frames (a clip that short does not fit is run at that stride, and the plan says it does not fit)."""
    if not limit_gb > 0:
        raise ValueError(f"max_memory must be positive (GB), got {limit_gb}")
    full = estimate_peak_gb(n_frames, width, height)
    stride = 1
    while (estimate_peak_gb(-(-n_frames // stride), width, height) > limit_gb
           and -(-n_frames // (stride + 1)) >= MIN_FRAMES):
        stride += 1
    return MemoryPlan(float(limit_gb), n_frames, full, stride,
                      estimate_peak_gb(-(-n_frames // stride), width, height))


def _ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def give_back_freed() -> None:
    """Hand freed heap memory back to the system (glibc's ``malloc_trim``). Torch's CPU work leaves its freed
    blocks in malloc's per-thread arenas, and a long clip's network windows pile them up: +0.8 GB resident on 600
    frames, kept to the end. A no-op where the C library has no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
