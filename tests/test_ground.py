"""The ground-contact prior: plane fit, object grouping, contact depth — on constructed scenes with known answers."""

import numpy as np

from tracks4d.contracts import Cameras
from tracks4d.geometry.ground import GroundPlane, contact_depth, fit_ground, group_objects
from tracks4d.geometry.transforms import invert_rigid
from helpers import K, look_at

SIZE = (640, 480)




def cameras(n: int) -> Cameras:
    c2w = np.stack([look_at(np.array([0.3 * t / n, -6.0, 1.6]), np.array([0.0, 0.0, 0.5])) for t in range(n)])
    return Cameras(invert_rigid(c2w), np.broadcast_to(K, (n, 3, 3)).copy())


def project(cams: Cameras, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """points (N, P, 3) → pixels (N, P, 2), camera depth (N, P)."""
    cam = np.einsum("nij,npj->npi", cams.world_to_camera[:, :3, :3], points) + cams.world_to_camera[:, None, :3, 3]
    pix = cam @ K.T
    return pix[..., :2] / pix[..., 2:], cam[..., 2]


def test_fit_ground_finds_the_floor_not_a_wall():
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(-4, 4, (300, 2)), rng.normal(0, 0.005, 300)]
    wall = np.c_[rng.uniform(-4, 4, 200), np.full(200, 4.0), rng.uniform(0, 3, 200)]
    clutter = np.c_[rng.uniform(-2, 2, (80, 2)), rng.uniform(0.1, 1.0, 80)]
    plane = fit_ground(np.concatenate([floor, wall, clutter, [[np.nan] * 3]]), cameras(10))
    assert plane is not None and plane.normal[2] > 0.999 and abs(plane.offset) < 0.01
    assert plane.inliers >= 280
    assert fit_ground(wall, cameras(10)) is None  # no floor visible: no plane


def test_group_objects_joins_tracks_that_stay_close():
    n = 20
    t = np.arange(n)[:, None]
    a = np.stack([100 + 5 * t + np.arange(4)[None] * 10, 200 + 0 * t + np.arange(4)[None] * 8], -1)
    b = np.stack([500 - 3 * t + np.arange(3)[None] * 10, 300 + 0 * t + np.arange(3)[None] * 6], -1)
    still = np.full((n, 2, 2), 50.0)
    tracks = np.concatenate([a, b, still], 1).astype(np.float64)
    labels = group_objects(tracks, np.ones((n, 9), bool), np.array([True] * 7 + [False] * 2), float(np.hypot(*SIZE)))
    assert len(set(labels[:4])) == 1 and len(set(labels[4:7])) == 1 and labels[0] != labels[4]
    assert (labels[7:] == -1).all()


def test_contact_depth_is_exact_for_an_upright_board_standing_on_the_ground():
    """A flat upright object facing the camera, its lowest tracked point on the ground: every track's depth is
    recovered from the contact; an object cut off by the image's bottom edge gets none."""
    n = 12
    cams = cameras(n)
    centres = cams.centres
    walk = np.array([[0.1 * t, 0.0, 0.0] for t in range(n)])               # the board's base point per frame
    points = np.empty((n, 5, 3))
    for t in range(n):
        facing = centres[t] - walk[t]
        facing[2] = 0
        facing /= np.linalg.norm(facing)
        side = np.cross([0, 0, 1.0], facing)
        offsets = [(0, 0), (0.3, 0.5), (-0.2, 0.9), (0.1, 1.4), (-0.3, 0.2)]
        points[t] = [walk[t] + u * side + np.array([0, 0, h]) for u, h in offsets]
    pixels, depth = project(cams, points)
    labels = np.zeros(5, int)
    estimate = contact_depth(pixels, np.ones((n, 5), bool), cams, GroundPlane(np.array([0, 0, 1.0]), 0.0, 0),
                             labels, SIZE)
    np.testing.assert_allclose(estimate, depth, rtol=1e-6)
    cut = pixels.copy()
    cut[:, 0, 1] = SIZE[1] - 1                                             # the lowest point at the bottom edge
    none = contact_depth(cut, np.ones((n, 5), bool), cams, GroundPlane(np.array([0, 0, 1.0]), 0.0, 0), labels,
                         SIZE)
    assert np.isnan(none).all()
    assert np.isnan(contact_depth(pixels, np.ones((n, 5), bool), cams, None, labels, SIZE)).all()
