"""Bundle adjustment on a synthetic noisy scene with known geometry."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pycolmap")

from tracks4d.contracts import Cameras, Reconstruction  # noqa: E402
from tracks4d.geometry.bundle_adjust import BAReport, bundle_adjust  # noqa: E402
from helpers import F, centre_error, make_scene









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
    assert centre_error(cameras.camera_to_world, c2w_true) < 0.3 * centre_error(rec.camera_to_world, c2w_true)
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
