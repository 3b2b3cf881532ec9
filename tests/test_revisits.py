"""Revisits: a camera that pans away and comes back sees its old view again; the returning view's tracks get an
observation in the old view, where the scene point really is; a pan that never returns, and a short clip, get none."""

import cv2
import numpy as np

from tracks4d.contracts import TrackSet
from tracks4d.tracking.revisits import REVISIT_GAP, find_revisits, seen_again

W, H, LIFE = 160, 120, 30


def _texture(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = cv2.GaussianBlur(rng.uniform(0, 255, (H + 40, 900)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def _clip(offsets: np.ndarray) -> tuple[np.ndarray, TrackSet]:
    """Frames looking at a textured wall through a window at x = offsets[t] (sub-pixel), and exact tracks that live
    ``LIFE`` frames each, seeded every 10 frames on a grid (so the tracks of a returning view are new ones)."""
    wall = _texture()
    frames = np.stack([np.repeat(cv2.warpAffine(wall, np.float32([[1, 0, -x], [0, 1, -20]]), (W, H),
                                                flags=cv2.INTER_LINEAR)[..., None], 3, -1) for x in offsets])
    n = len(offsets)
    gx, gy = np.meshgrid(np.linspace(20, W - 20, 8), np.linspace(20, H - 20, 6))
    seeds = [(t0, x + offsets[t0], y) for t0 in range(0, n, 10) for x, y in zip(gx.ravel(), gy.ravel())]
    tracks = np.zeros((n, len(seeds), 2), np.float32)
    visible = np.zeros((n, len(seeds)), bool)
    for j, (t0, wx, wy) in enumerate(seeds):
        tracks[:, j] = np.stack([wx - offsets, np.full(n, wy)], 1)
        life = slice(t0, min(n, t0 + LIFE))
        visible[life, j] = (tracks[life, j, 0] > 2) & (tracks[life, j, 0] < W - 3)
    return frames, TrackSet(tracks, visible, image_size=np.array([W, H]))


def test_a_returning_pan_is_seen_where_it_returns():
    n = 240
    offsets = np.concatenate([np.linspace(0, 600, n // 2), np.linspace(600, 0.4, n // 2)])
    frames, tracks = _clip(offsets)
    revisits = find_revisits(frames, tracks)
    linked = seen_again(tracks, revisits)
    assert len(revisits) >= 5
    for revisit in revisits:
        assert revisit.later - revisit.earlier >= REVISIT_GAP and len(revisit.tracks) >= 20
        assert not tracks.visible[revisit.earlier, revisit.tracks].any() and tracks.visible[revisit.later,
                                                                                            revisit.tracks].all()
        assert abs(offsets[revisit.earlier] - offsets[revisit.later]) < 40      # the same view, seen again
    added = linked.visible & ~tracks.visible
    assert added.sum() == sum(len(r.tracks) for r in revisits)
    frame, track = np.nonzero(added)
    world_x = tracks.tracks[tracks.visible.argmax(0)[track], track, 0] + offsets[tracks.visible.argmax(0)[track]]
    error = np.abs(linked.tracks[frame, track, 0] - (world_x - offsets[frame]))
    assert np.median(error) < 0.2 and np.percentile(error, 95) < 1.0
    np.testing.assert_array_equal(linked.tracks[tracks.visible], tracks.tracks[tracks.visible])  # seen: unchanged
    # in pixels twice the frames' (a clip read at half size), the added entries come back in those pixels
    double = TrackSet((tracks.tracks + 0.5) * 2 - 0.5, tracks.visible, image_size=np.array([2 * W, 2 * H]))
    linked2 = seen_again(double, find_revisits(frames, double, scale=(0.5, 0.5)))
    np.testing.assert_allclose(linked2.tracks[added], (linked.tracks[added] + 0.5) * 2 - 0.5, atol=1e-3)


def test_a_pan_that_never_returns_and_a_short_clip_have_no_revisits():
    frames, tracks = _clip(np.linspace(0, 700, 240))
    assert find_revisits(frames, tracks) == [] and seen_again(tracks, []) is tracks
    short_frames, short = _clip(np.concatenate([np.linspace(0, 300, 50), np.linspace(300, 0, 50)]))
    assert find_revisits(short_frames, short) == []
