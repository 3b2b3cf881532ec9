"""Trajectories that could happen: a moving point's jump along its ray that its neighbours do not share."""

import numpy as np

from tracks4d.contracts import Cameras
from tracks4d.geometry.plausible import flying_entries, plausible_trajectories


def test_a_jump_along_the_ray_is_replaced_by_the_objects_motion():
    rng = np.random.default_rng(0)
    n, p = 20, 12
    k = np.array([[400.0, 0, 200], [0, 400.0, 150], [0, 0, 1]])
    cameras = Cameras(np.broadcast_to(np.eye(4), (n, 4, 4)).copy(), np.broadcast_to(k, (n, 3, 3)).copy())
    start = np.column_stack([rng.uniform(-0.5, 0.5, p), rng.uniform(-0.5, 0.5, p), rng.uniform(4.9, 5.1, p)])
    truth = start[None] + np.array([0.01, 0, 0]) * np.arange(n)[:, None, None]     # an object sliding slowly
    pixels = truth[..., :2] / truth[..., 2:] * 400 + np.array([200, 150])
    points = truth.copy()
    points[8:, 3] *= 1.6                                    # track 3 jumps 3 units back along its ray at frame 8
    points[12, 5] *= 0.5                                    # track 5 flies towards the camera for one frame
    visible = np.ones((n, p), bool)
    moving = np.ones(p, bool)
    before = flying_entries(points, pixels, visible, moving, 5.0)
    assert before[8, 3] and before[12, 5] and before.sum() <= 3
    fixed, replaced = plausible_trajectories(points, pixels, visible, moving, cameras, 5.0)
    assert not flying_entries(fixed, pixels, visible, moving, 5.0).any()
    assert replaced[8, 3] and replaced[12, 5]
    np.testing.assert_allclose(fixed[:, 5], truth[:, 5], atol=0.02)                 # back on its path
    assert np.abs(fixed[:, 3] - truth[:, 3]).max() < 0.05                             # follows the object
    reproj = fixed[..., :2] / fixed[..., 2:] * 400 + np.array([200, 150])
    np.testing.assert_allclose(reproj, pixels, atol=1e-6)                           # still on their rays
    np.testing.assert_array_equal(fixed[:, ~replaced.any(0)], points[:, ~replaced.any(0)])


def test_unseen_entries_lie_between_sightings():
    from tracks4d.geometry.plausible import between_sightings

    n = 10
    points = np.zeros((n, 3, 3))
    points[:, :, 0] = np.arange(n)[:, None]                     # moving along x, one unit a frame
    points[3:7, 0] = 40.0                                       # an extrapolation far away where track 0 is unseen
    points[:, 2] = 99.0                                         # a static track: left alone
    visible = np.ones((n, 3), bool)
    visible[3:7, 0] = False
    visible[:2, 1] = visible[8:, 1] = False
    out = between_sightings(points, visible, np.array([True, True, False]))
    np.testing.assert_allclose(out[:, 0, 0], np.arange(n))      # linear between frames 2 and 7
    np.testing.assert_allclose(out[:2, 1, 0], 2.0) and np.testing.assert_allclose(out[8:, 1, 0], 7.0)
    np.testing.assert_array_equal(out[:, 2], points[:, 2])
    np.testing.assert_array_equal(out[visible], points[visible])


def test_a_track_off_its_objects_depth_is_scaled_back_onto_it():
    from tracks4d.geometry.plausible import on_their_object

    rng = np.random.default_rng(4)
    n, p = 20, 80
    k = np.array([[400.0, 0, 200], [0, 400.0, 150], [0, 0, 1]])
    w2c = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    start = np.column_stack([rng.uniform(-0.6, 0.6, p), rng.uniform(-0.5, 0.5, p), rng.uniform(2.9, 3.1, p)])
    truth = start[None] + np.array([0.02, 0, 0.01]) * np.arange(n)[:, None, None]    # an object walking away
    pixels = truth[..., :2] / truth[..., 2:] * 400 + np.array([200, 150])
    points = truth.copy()
    points[:, 5] *= 2.0                       # track 5 placed at twice the object's depth, on its own rays
    points[10:15, 7] *= 1.6                   # track 7 behind it for five frames
    visible = np.ones((n, p), bool)
    visible[:3, 9] = False
    moving = np.ones(p, bool)
    fixed, moved = on_their_object(points, pixels, visible, moving, w2c, 400.0)
    assert moved[:, 5].all() and moved[10:15, 7].all() and not moved[:10, 7].any()
    depth_ratio = fixed[..., 2] / truth[..., 2]
    assert np.abs(depth_ratio[:, [5, 7]] - 1).max() < 0.1                            # back at the object's depth
    others = np.setdiff1d(np.arange(p), [5, 7])
    np.testing.assert_array_equal(fixed[:, others], points[:, others])              # the rest untouched
    reproj = fixed[..., :2] / fixed[..., 2:] * 400 + np.array([200, 150])
    np.testing.assert_allclose(reproj, pixels, atol=1e-6)                           # still on their rays
    # a second object at twice the depth, as many tracks: its own neighbourhood, left alone
    far = points.copy()
    far[:, 40:] *= 2.0
    far[:, 5] = truth[:, 5]
    far[10:15, 7] = truth[10:15, 7]
    far_pixels = pixels.copy()
    far_pixels[:, 40:, 0] += 300                                                    # elsewhere in the image
    _, moved = on_their_object(far, far_pixels, visible, moving, w2c, 700.0)
    assert not moved.any()
