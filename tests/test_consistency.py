"""The fold check (issue 22): distant windows of a long clip must agree on the static scene."""

import numpy as np

from tracks4d.contracts import Cameras
from tracks4d.geometry.consistency import FOLD_SHARE, static_consistency
from tracks4d.geometry.transforms import transform_points

K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
SIZE = (640, 480)


def walk(n_frames: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray, Cameras]:
    """A camera walking along a textured wall 4 units away (x from 0 to 6, looking at +z), each static point tracked
    for a random 40–80-frame stretch of the frames it is in view → tracks (N, P, 2), visible (N, P), points (P, 3),
    cameras."""
    points = np.column_stack([rng.uniform(-3, 9, 4000), rng.uniform(-2, 2, 4000), 4 + 0.3 * rng.random(4000)])
    w2c = np.tile(np.eye(4), (n_frames, 1, 1))
    w2c[:, 0, 3] = -np.linspace(0, 6, n_frames)
    cameras = Cameras(w2c, np.tile(K, (n_frames, 1, 1)))
    cam = transform_points(w2c, points)
    uv = cam[..., :2] / cam[..., 2:] * 500 + np.array([320, 240])
    in_view = (uv[..., 0] >= 0) & (uv[..., 0] <= 639) & (uv[..., 1] >= 0) & (uv[..., 1] <= 479)
    visible = np.zeros_like(in_view)
    for p in range(points.shape[0]):
        frames = np.flatnonzero(in_view[:, p])
        if frames.size:
            start = rng.integers(frames[0], frames[-1] + 1)
            visible[start:start + rng.integers(40, 80), p] = True
    return uv, visible & in_view, points, cameras


def test_a_consistent_long_clip_passes():
    tracks, visible, points, cameras = walk(300, np.random.default_rng(0))
    check = static_consistency(tracks, visible, cameras, points, SIZE)
    assert check.pairs >= 5 and check.worst_share < 0.05 and not check.folded
    assert check.sentence() is None


def test_a_fold_fails_the_check():
    """The second half rebuilt 1.2 units nearer (cameras and the points first seen there moved together; tracks
    crossing frame 150 end there): every frame still reprojects exactly, and the check fails."""
    tracks, visible, points, cameras = walk(300, np.random.default_rng(1))
    shift = np.eye(4)
    shift[2, 3] = -1.2
    later = np.argmax(visible, 0) >= 150
    visible[150:, ~later] = False
    folded_points = points.copy()
    folded_points[later] = transform_points(shift[None], points[later])[0]
    w2c = cameras.world_to_camera.copy()
    w2c[150:] = w2c[150:] @ np.linalg.inv(shift)
    folded = Cameras(w2c, cameras.intrinsics)
    seen_later = visible[150:, later]
    cam = transform_points(w2c[150:], folded_points[later])
    reprojected = cam[..., :2] / cam[..., 2:] * 500 + np.array([320, 240])
    assert np.abs(reprojected - tracks[150:, later])[seen_later].max() < 1e-6     # invisible to reprojection
    assert not static_consistency(tracks, visible, cameras, points, SIZE).folded  # the same tracks, unfolded
    check = static_consistency(tracks, visible, folded, folded_points, SIZE)
    assert check.folded and check.worst_share > FOLD_SHARE
    assert "folds" in check.sentence()
    assert check.worst[0] >= 150 > check.worst[1] or check.worst[1] >= 150 > check.worst[0]


def test_short_clips_are_not_judged():
    tracks, visible, points, cameras = walk(100, np.random.default_rng(2))
    check = static_consistency(tracks, visible, cameras, points, SIZE)
    assert check.pairs == 0 and check.worst is None and not check.folded
