"""Phone-like degradations (tracks4d.evaluation.degrade): shape, determinism, vignetting, an H.264 round trip."""

from __future__ import annotations

import numpy as np
import pytest

from tracks4d.evaluation.degrade import encode_h264, exposure_gain, phone_like, vignette_map
from tracks4d.io.video import read_video

N, H, W = 12, 48, 64


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """(N, H, W, 3) uint8: a mid-grey clip with some texture."""
    rng = np.random.default_rng(0)
    base = 128 + 40 * np.sin(np.arange(W) / 3.0)[None, :, None] * np.cos(np.arange(H) / 5.0)[:, None, None]
    return np.clip(base[None] + rng.normal(0, 5, (N, H, W, 3)), 0, 255).astype(np.uint8)


def test_shape_dtype_and_determinism(frames):
    out = phone_like(frames, 3)
    assert out.shape == frames.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, phone_like(frames, 3))
    assert not np.array_equal(out, phone_like(frames, 4))
    assert not np.array_equal(out, frames)


def test_corners_darker_than_centre():
    flat = np.full((N, H, W, 3), 150, np.uint8)
    out = phone_like(flat, 1).astype(np.float64).mean((0, 3))     # (H, W) mean over frames and channels
    centre = out[H // 2 - 4:H // 2 + 4, W // 2 - 4:W // 2 + 4].mean()
    corners = np.mean([out[:4, :4].mean(), out[:4, -4:].mean(), out[-4:, :4].mean(), out[-4:, -4:].mean()])
    assert corners < 0.8 * centre
    v = vignette_map((W, H), 0.35)
    assert v.shape == (H, W) and v.max() <= 1.0 and abs(v.min() - 0.65) < 1e-6


def test_exposure_stays_in_range_and_drifts():
    gain = exposure_gain(50, np.random.default_rng(5))
    assert gain.shape == (50,) and gain.min() >= 0.7 and gain.max() <= 1.3
    assert np.ptp(gain) > 0.25                                     # it drifts over the clip


def test_h264_round_trip(frames, tmp_path):
    out = phone_like(frames, 2)
    path = encode_h264(out, tmp_path / "clip.mp4", fps=30, crf=30)
    clip = read_video(path, long_side=None)
    assert clip.frames.shape == out.shape
    mse = np.mean((clip.frames.astype(np.float64) - out.astype(np.float64)) ** 2)
    psnr = 10 * np.log10(255.0 ** 2 / mse)
    assert 20.0 < psnr < 60.0
    with pytest.raises(ValueError):
        encode_h264(out[:, :, :-1], tmp_path / "odd.mp4")


def test_render_options_keep_ground_truth_and_blur():
    """The renderer's camera kinds, close mover and motion blur (tracks4d.evaluation.render), on tiny frames."""
    from tracks4d.evaluation.render import CAMERA_KINDS, render_scene

    size, n = (64, 48), 6
    fixed = render_scene(2, n, size, camera="fixed")
    np.testing.assert_array_equal(fixed.camera_to_world, np.broadcast_to(fixed.camera_to_world[0], (n, 4, 4)))
    sharp = render_scene(2, n, size, camera="fast")
    blurred = render_scene(2, n, size, camera="fast", subframes=3)
    np.testing.assert_array_equal(sharp.camera_to_world, blurred.camera_to_world)     # truth at the frame's time
    np.testing.assert_array_equal(sharp.face_id, blurred.face_id)
    assert not np.array_equal(sharp.frames, blurred.frames)
    close = render_scene(2, n, size, camera="orbit", close_mover=True)
    assert close.body_to_world.shape[1] == 4 and max(f.body for f in close.faces) == 3
    bodies = np.array([f.body for f in close.faces])[close.face_id]
    assert (bodies == 3).mean() > 0.25                                                 # it fills the view
    for kind in CAMERA_KINDS:
        scene = render_scene(2, n, size, camera=kind)
        np.testing.assert_array_equal(scene.intrinsics, fixed.intrinsics)             # one seed, one K
