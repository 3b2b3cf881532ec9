"""Make clean rendered frames look like phone footage: exposure drift, vignetting, sensor noise, H.264 compression.

Motion blur is not added here: it comes from rendering each frame over an exposure
(:func:`tracks4d.evaluation.render.render_scene` with ``subframes`` > 1), where the scene's geometry is known.

    frames = phone_like(render_scene(seed, subframes=5).frames, seed)
    encode_h264(frames, "clip.mp4", crf=30)

The degradations, in the order a camera applies them (on display-referred values; no tone curve is modelled):

- exposure: a smooth gain over the clip (two slow random sinusoids, kept within ``gain_range``) times a small
  per-frame flicker (Gaussian, ``flicker`` relative std) and a slight smooth white-balance drift per channel; pixels
  pushed over 255 clip, as a phone's highlights do;
- vignetting: brightness × (1 − ``vignette`` · r²), r the distance from the image centre with r = 1 at the corners
  (``vignette`` = 0.35: corners 35 % darker);
- sensor noise: Gaussian with variance ``read_std``² + ``shot_gain`` · value (grey levels; shot noise grows with the
  signal), mostly per channel plus a shared luminance part, slightly correlated between neighbouring pixels as
  demosaicing leaves it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["phone_like", "exposure_gain", "vignette_map", "encode_h264"]


def exposure_gain(n_frames: int, rng: np.random.Generator, gain_range: tuple[float, float] = (0.7, 1.3),
                  flicker: float = 0.015) -> np.ndarray:
    """Per-frame exposure gain (N,) float64: a smooth random curve spanning most of ``gain_range`` over the clip,
    times per-frame flicker of relative std ``flicker``; always inside ``gain_range``."""
    lo, hi = gain_range
    tau = np.linspace(0.0, 1.0, n_frames)
    curve = np.zeros(n_frames)
    for cycles in (rng.uniform(0.3, 0.8), rng.uniform(0.8, 2.0)):
        curve += np.sin(2 * np.pi * cycles * tau + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    span = np.ptp(curve)
    curve = (curve - curve.min()) / span if span > 0 else np.full(n_frames, 0.5)
    reach = rng.uniform(0.7, 1.0)                         # how much of the range this clip sweeps
    start = rng.uniform(0.0, 1.0 - reach)
    gain = lo + (hi - lo) * (start + reach * curve)
    gain *= 1.0 + flicker * rng.standard_normal(n_frames)
    return np.clip(gain, lo, hi)


def vignette_map(size: tuple[int, int], strength: float = 0.35) -> np.ndarray:
    """Brightness factor (H, W) float32 for an image of size (W, H): 1 at the centre, 1 − ``strength`` at the
    corners, falling off with the squared distance from the centre."""
    width, height = size
    y, x = np.mgrid[:height, :width].astype(np.float64)
    r2 = ((x - (width - 1) / 2) ** 2 + (y - (height - 1) / 2) ** 2) / (((width - 1) / 2) ** 2 + ((height - 1) / 2) ** 2)
    return (1.0 - strength * r2).astype(np.float32)


def phone_like(frames: np.ndarray, seed: int, *, gain_range: tuple[float, float] = (0.7, 1.3),
               flicker: float = 0.015, white_balance: float = 0.03, vignette: float = 0.35,
               read_std: float = 1.5, shot_gain: float = 0.08) -> np.ndarray:
    """Phone-camera degradations of a clip (module docstring): exposure drift and flicker, white-balance drift,
    vignetting and signal-dependent sensor noise.

    frames: (N, H, W, 3) uint8 RGB → (N, H, W, 3) uint8 RGB. The same frames and seed give the same output.
    gain_range: the exposure gain's bounds · flicker: per-frame relative gain std · white_balance: the largest
    relative drift of a channel's gain · vignette: darkening at the corners (0.35 = 35 %) · read_std: signal-free
    noise std (grey levels) · shot_gain: noise variance per grey level of signal (0.08: std ≈ 3.5 at 128)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    n, height, width, _ = frames.shape
    rng = np.random.default_rng([int(seed), 2])
    gain = exposure_gain(n, rng, gain_range, flicker)
    tau = np.linspace(0.0, 1.0, n)[:, None]
    balance = 1.0 + white_balance * np.sin(2 * np.pi * rng.uniform(0.2, 0.8, 3) * tau + rng.uniform(0, 2 * np.pi, 3))
    falloff = vignette_map((width, height), vignette)[..., None]
    out = np.empty_like(frames)
    for t in range(n):
        image = frames[t].astype(np.float32) * falloff * (gain[t] * balance[t]).astype(np.float32)
        image = np.minimum(image, 255.0)
        std = np.sqrt(read_std ** 2 + shot_gain * image)
        noise = 0.85 * rng.standard_normal(image.shape, dtype=np.float32) \
            + 0.5 * rng.standard_normal(image.shape[:2] + (1,), dtype=np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.6) * 2.05    # demosaicing correlates neighbours (std kept ≈ 1)
        out[t] = np.clip(np.round(image + std * noise), 0, 255).astype(np.uint8)
    return out


def encode_h264(frames: np.ndarray, path: str | Path, fps: float = 30, crf: int = 30,
                preset: str = "medium") -> Path:
    """Write frames (N, H, W, 3) uint8 RGB (even W and H) as an H.264 mp4 (libx264 via PyAV, yuv420p, constant
    rate factor ``crf``: 18 ≈ visually lossless, 30 ≈ a phone's or a messenger's heavy compression). Returns the
    path."""
    import av
    from fractions import Fraction

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    n, height, width, _ = frames.shape
    if width % 2 or height % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": preset}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
