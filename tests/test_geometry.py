"""Geometry: 6D rotations, projection, normalisation by K, rigid inverses, Umeyama Sim(3)."""

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from tracks4d.geometry import (invert_rigid, matrix_to_rot6d, normalized_to_pixels, pixels_to_normalized,
                               pose_matrix, project_normalized, rot6d_to_matrix, umeyama_sim3)


def test_rot6d_round_trip_and_orthonormal():
    rot = torch.from_numpy(Rotation.random(20, random_state=0).as_matrix())
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(rot)), rot, atol=1e-12)
    out = rot6d_to_matrix(torch.randn(100, 6, dtype=torch.float64))
    np.testing.assert_allclose(out @ out.transpose(-1, -2), torch.eye(3).expand(100, 3, 3), atol=1e-12)
    np.testing.assert_allclose(torch.linalg.det(out), torch.ones(100), atol=1e-12)


def test_rot6d_hand_computed():
    # rows: b1 = normalise(2,0,0) = x; b2 = (1,1,0) minus its x part = y; b3 = x × y = z
    r = rot6d_to_matrix(torch.tensor([2.0, 0, 0, 1, 1, 0]))
    np.testing.assert_allclose(r, torch.eye(3), atol=1e-7)
    r = rot6d_to_matrix(torch.tensor([0.0, 1, 0, 3, 0, 0]))  # rows y, x, y × x = −z
    np.testing.assert_allclose(r, torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]]), atol=1e-7)


def test_projection_hand_computed_and_clamp():
    pts = torch.tensor([[2.0, -1.0, 4.0], [1.0, 1.0, -3.0]])
    out = project_normalized(pts)
    np.testing.assert_allclose(out[0], [0.5, -0.25])
    np.testing.assert_allclose(out[1], [100.0, 100.0])  # z clamped to 0.01


def test_pixel_normalisation_round_trip():
    k = np.array([[500.0, 0, 320], [0, 450, 240], [0, 0, 1]])
    px = np.array([[[320.0, 240.0], [820.0, 690.0]]])
    xy = pixels_to_normalized(px, k)
    np.testing.assert_allclose(xy[0], [[0, 0], [1, 1]])
    np.testing.assert_allclose(normalized_to_pixels(xy, k), px)
    ks = np.stack([k, k * [[2], [2], [1]]])
    px2 = np.random.default_rng(0).uniform(0, 640, (2, 5, 2))
    np.testing.assert_allclose(normalized_to_pixels(pixels_to_normalized(px2, ks), ks), px2)
    t = pixels_to_normalized(torch.from_numpy(px2), ks)
    np.testing.assert_allclose(t.numpy(), pixels_to_normalized(px2, ks))


def test_invert_rigid():
    rot = Rotation.random(5, random_state=1).as_matrix()
    pose = pose_matrix(rot, np.random.default_rng(1).normal(size=(5, 3)))
    np.testing.assert_allclose(invert_rigid(pose) @ pose, np.tile(np.eye(4), (5, 1, 1)), atol=1e-12)
    tp = torch.from_numpy(pose)
    np.testing.assert_allclose(invert_rigid(tp).numpy(), invert_rigid(pose), atol=1e-12)
    # camera at (0,0,-5) looking along +z: the world origin is 5 units in front of it
    c2w = pose_matrix(np.eye(3), np.array([0.0, 0, -5]))
    np.testing.assert_allclose(invert_rigid(c2w) @ [0, 0, 0, 1.0], [0, 0, 5, 1])


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(3)
    src = rng.normal(size=(50, 3))
    rot = Rotation.random(random_state=4).as_matrix()
    dst = 2.5 * src @ rot.T + [1.0, -2.0, 3.0]
    s, r, t = umeyama_sim3(src, dst)
    assert abs(s - 2.5) < 1e-10
    np.testing.assert_allclose(r, rot, atol=1e-10)
    np.testing.assert_allclose(t, [1, -2, 3], atol=1e-10)
    s1, _, _ = umeyama_sim3(src, dst, with_scale=False)
    assert s1 == 1.0
