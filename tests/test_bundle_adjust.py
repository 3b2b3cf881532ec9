"""Bundle adjustment on a synthetic noisy scene with known geometry."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycolmap")

from tracks4d.contracts import Cameras, Reconstruction  # noqa: E402
from tracks4d.geometry.bundle_adjust import BAReport, bundle_adjust  # noqa: E402
from tracks4d.geometry import invert_rigid, pose_matrix, umeyama_sim3  # noqa: E402

F, W, H = 500.0, 640, 480


def _rotation(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: (3,) → (3, 3)."""
    angle = np.linalg.norm(axis_angle)
    if angle < 1e-12:
        return np.eye(3)
    k = axis_angle / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def make_scene(n: int = 50, n_static: int = 300, n_dynamic: int = 50, seed: int = 0, focal_error: float = 0.0,
               n_outliers: int = 0, arc: float = 0.6):
    """A noisy reconstruction of a known scene → (reconstruction, true c2w (N, 4, 4), outliers (O, 2) (frame, point)).

    Cameras on an arc of ±``arc`` radians (0: a fixed camera) looking at the origin; the last ``n_dynamic`` points move (γ = 0.1), the rest are static
    (γ = 0.001). Initial cameras are perturbed by ~1° and ~1 % of their distance to the scene, static points by
    ~1 %, pixels carry 0.5 px noise; ``n_outliers`` observations are pushed 50 px away; the initial focal is off
    by ``focal_error``.
    """
    rng = np.random.default_rng(seed)
    angles = np.linspace(-arc, arc, n)
    centres = np.stack([4 * np.sin(angles), 0.3 * np.cos(3 * angles), -4 * np.cos(angles)], 1)
    c2w = []
    for c in centres:
        z = -c / np.linalg.norm(c)
        x = np.cross([0.0, 1.0, 0.0], z)
        x /= np.linalg.norm(x)
        c2w.append(pose_matrix(np.stack([x, np.cross(z, x), z], 1), c))
    c2w = np.stack(c2w)
    w2c = invert_rigid(c2w)
    static = rng.uniform(-1.5, 1.5, (n_static, 3))
    dynamic = rng.uniform(-1, 1, (n_dynamic, 3))[None] + 0.3 * np.sin(np.linspace(0, 3, n))[:, None, None]
    points = np.concatenate([np.broadcast_to(static, (n, n_static, 3)), dynamic], 1)
    k = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    pix = cam @ k.T
    tracks = pix[..., :2] / pix[..., 2:] + rng.normal(0, 0.5, (n, points.shape[1], 2))
    visible = rng.random((n, points.shape[1])) < 0.8
    outliers = np.stack(np.unravel_index(rng.choice(n * n_static, n_outliers, replace=False), (n, n_static)), 1)
    tracks[outliers[:, 0], outliers[:, 1]] += 50.0 * np.array([0.6, 0.8])
    visible[outliers[:, 0], outliers[:, 1]] = True

    noisy_c2w = c2w.copy()
    for t in range(1, n):
        noisy_c2w[t, :3, :3] = _rotation(rng.normal(0, np.deg2rad(1.0) / np.sqrt(3), 3)) @ c2w[t, :3, :3]
        noisy_c2w[t, :3, 3] += rng.normal(0, 0.04 / np.sqrt(3), 3)
    noisy_w2c = invert_rigid(noisy_c2w)
    noisy_static = static + rng.normal(0, 0.02 / np.sqrt(3), static.shape)
    k0 = k.copy()
    k0[[0, 1], [0, 1]] *= 1 + focal_error
    # Initial dynamic points: consistent with the noisy cameras (tracks lifted at the true depth).
    noisy_points = np.concatenate([np.broadcast_to(noisy_static, (n, n_static, 3)), np.zeros((n, n_dynamic, 3))], 1)
    dyn_cam = np.concatenate([(tracks[:, n_static:] - k0[:2, 2]) / k0[0, 0], np.ones((n, n_dynamic, 1))], -1)
    dyn_cam *= cam[:, n_static:, 2:]
    noisy_points[:, n_static:] = np.einsum("nij,npj->npi", noisy_c2w[:, :3, :3], dyn_cam) + noisy_c2w[:, None, :3, 3]
    depth = np.einsum("nj,npj->np", noisy_w2c[:, 2, :3], noisy_points) + noisy_w2c[:, None, 2, 3]
    gamma = np.r_[np.full(n_static, 1e-3), np.full(n_dynamic, 0.1)]
    static_all = np.concatenate([noisy_static, noisy_points[0, n_static:]])
    rec = Reconstruction(noisy_c2w, noisy_w2c, np.broadcast_to(k0, (n, 3, 3)), noisy_points, static_all, gamma,
                         depth, np.zeros((1, points.shape[1], 3)), np.zeros((n, 1)), tracks, visible, {"x": 1})
    return rec, c2w, outliers


def _centre_error(c2w_est: np.ndarray, c2w_true: np.ndarray) -> float:
    """RMS camera-centre error after Sim(3) alignment."""
    s, r, t = umeyama_sim3(c2w_est[:, :3, 3], c2w_true[:, :3, 3])
    aligned = s * c2w_est[:, :3, 3] @ r.T + t
    return float(np.sqrt(((aligned - c2w_true[:, :3, 3]) ** 2).sum(1).mean()))


def adjust(rec: Reconstruction, **kwargs):
    """Bundle adjustment of ``rec``'s cameras and its static points (γ < 0.008) → (cameras, points (P, 3), report)."""
    return bundle_adjust(rec.tracks, rec.visible, Cameras(rec.world_to_camera, rec.intrinsics),
                         rec.static_points.astype(np.float64), rec.motion_level < 0.008, **kwargs)


@pytest.fixture(scope="module")
def scene():
    return make_scene(n_outliers=20)


@pytest.fixture(scope="module")
def adjusted(scene):
    rec, _, _ = scene
    return adjust(rec, max_initial_error_px=20.0)


def test_lowers_error_and_improves_cameras(scene, adjusted):
    rec, c2w_true, _ = scene
    cameras, _, report = adjusted
    assert report.initial_rms_px > 3.0 and report.final_rms_px < 1.0
    assert _centre_error(cameras.camera_to_world, c2w_true) < 0.3 * _centre_error(rec.camera_to_world, c2w_true)
    np.testing.assert_allclose(cameras.world_to_camera @ cameras.camera_to_world,
                               np.tile(np.eye(4), (rec.n_frames, 1, 1)), atol=1e-9)


def test_only_static_points_move(scene, adjusted):
    rec, _, _ = scene
    _, points, _ = adjusted
    dyn = rec.motion_level >= 0.008
    np.testing.assert_array_equal(points[dyn], rec.static_points[dyn].astype(np.float64))
    assert np.abs(points[~dyn] - rec.static_points[~dyn]).max() > 1e-4


def test_outliers_gated_and_dynamic_points_excluded(scene, adjusted):
    rec, _, outliers = scene
    cameras, points, report = adjusted
    static = np.flatnonzero(rec.motion_level < 0.008)
    assert report.n_points == len(static) == 300  # γ above the threshold: not adjusted
    assert report.n_observations == int(rec.visible[:, static].sum())
    assert report.n_observations - report.n_inliers >= len(outliers)
    # 20 observations 50 px off would lift the RMS over the kept ones far above 1 px: they were gated out.
    f, p = outliers.T
    w2c = cameras.world_to_camera[f]
    proj = cameras.intrinsics[f] @ (w2c[:, :3, :3] @ points[p, :, None] + w2c[:, :3, 3:])
    error = np.linalg.norm(proj[:, :2, 0] / proj[:, 2:, 0] - rec.tracks[f, p], axis=-1)
    assert (error > 40).all() and report.final_rms_px < 1.0


def test_report_fields(adjusted):
    _, _, report = adjusted
    d = report.to_dict()
    assert isinstance(report, BAReport) and d["skipped"] == "" and not d["refined_focal"]
    assert d["n_frames"] == 50 and d["iterations"] >= 1 and d["termination"]
    assert d["final_median_px"] <= d["initial_median_px"] and d["final_median_px"] < 1.0
    assert 0 < d["seconds"]


def test_refine_focal_recovers_focal():
    rec, c2w_true, _ = make_scene(n=30, n_static=200, n_dynamic=20, seed=1, focal_error=0.10)
    cameras, _, report = adjust(rec, refine_focal=True, max_initial_error_px=60.0)
    assert report.refined_focal and abs(report.focal_px - F) / F < 0.02
    np.testing.assert_allclose(cameras.intrinsics[:, 0, 0], report.focal_px)
    assert report.final_rms_px < 1.0


def test_too_few_points_skips():
    rec, _, _ = make_scene(n=10, n_static=5, n_dynamic=5, seed=2)
    cameras, points, report = adjust(rec)
    assert report.skipped.startswith("skipped") and "static points" in report.skipped
    np.testing.assert_array_equal(cameras.world_to_camera, rec.world_to_camera)
    np.testing.assert_array_equal(points, rec.static_points)


def test_bad_arguments():
    rec, _, _ = make_scene(n=5, n_static=10, n_dynamic=2, seed=3)
    with pytest.raises(ValueError, match="loss"):
        adjust(rec, loss="tukey")
    with pytest.raises(ValueError, match="max_initial_error_px"):
        adjust(rec, max_initial_error_px=0.0)


def test_focal_needs_enough_points():
    rec, _, _ = make_scene(n_static=20, n_dynamic=5, seed=4)
    _, _, report = adjust(rec, refine_focal=True, max_initial_error_px=40.0)
    assert not report.refined_focal and any("focal kept" in note for note in report.notes)
