"""Trajectory, depth and 3D metrics: hand cases, file readers, real SLAM trajectories checked independently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tracks4d.contracts import GroundTruth, Reconstruction
from tracks4d.geometry import invert_rigid, pose_matrix
from tracks4d.evaluation.metrics import (absolute_trajectory_error, depth_metrics, depth_metrics_split, end_point_error,
                              evaluate_reconstruction, relative_pose_error, rotation_angle_deg, trajectory_metrics)
from tracks4d.io.trajectory_io import associate, read_kitti, read_trajectory, read_tum

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "evo_trajectories"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real data absent: {REAL}")


def _poses(centres: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 3) centres with random rotations → (N, 4, 4) camera-to-world."""
    return pose_matrix(Rotation.random(len(centres), random_state=seed).as_matrix(), centres)


def _similar(c2w: np.ndarray, s: float, rot: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The same trajectory in another frame: x ↦ s·R·x + t applied to every pose."""
    return pose_matrix(rot @ c2w[:, :3, :3], s * c2w[:, :3, 3] @ rot.T + t)


# ---------------------------------------------------------------- trajectories, by hand
def test_identical_trajectories_score_zero():
    gt = _poses(np.random.default_rng(0).normal(size=(20, 3)))
    m = trajectory_metrics(gt, gt)
    assert m["ate"] < 1e-12 and m["rpe_trans"] < 1e-12 and m["rpe_rot_deg"] < 1e-5 and m["scale"] == pytest.approx(1)


def test_similarity_transformed_trajectory_scores_zero_after_sim3():
    gt = _poses(np.random.default_rng(1).normal(size=(30, 3)))
    rot = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    pred = _similar(gt, 3.0, rot, np.array([5.0, -2.0, 1.0]))
    m = trajectory_metrics(pred, gt)
    assert m["ate"] < 1e-10 and m["rpe_trans"] < 1e-10 and m["rpe_rot_deg"] < 1e-5
    assert m["scale"] == pytest.approx(1 / 3)
    assert absolute_trajectory_error(pred, gt) < 1e-10
    assert absolute_trajectory_error(pred, gt, with_scale=False) > 1.0


def test_one_displaced_frame_gives_the_closed_form_ate():
    # Centres: the origin plus the 6 unit octahedron vertices (N = 7, Σv = 0, Σvvᵀ = 2I); frame 0 moved by d.
    # Umeyama's residual σ_y² − tr(D)²/σ_x² with σ_y² = tr(D) = (N−1)/N, σ_x² = (N−1)(1 + d²/N)/N gives
    # ATE_Sim3 = d·sqrt((N−1)/N) / sqrt(N + d²); with scale fixed (R = I by symmetry) ATE_SE3 = d·sqrt(N−1)/N.
    centres = np.vstack([np.zeros(3), np.eye(3), -np.eye(3)])
    n, d = len(centres), 0.37
    gt = _poses(centres, seed=2)
    pred = gt.copy()
    pred[0, :3, 3] += d * np.array([2.0, -1.0, 2.0]) / 3.0
    assert absolute_trajectory_error(pred, gt) == pytest.approx(d * np.sqrt((n - 1) / n) / np.sqrt(n + d**2), rel=1e-12)
    assert absolute_trajectory_error(pred, gt, with_scale=False) == pytest.approx(d * np.sqrt(n - 1) / n, rel=1e-12)


def test_rpe_rotation_of_a_known_two_degree_error():
    gt = _poses(np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0.5]]), seed=3)
    pred = gt.copy()
    pred[2, :3, :3] = gt[2, :3, :3] @ Rotation.from_rotvec([0, 0, np.radians(2.0)]).as_matrix()
    rpe = relative_pose_error(pred, gt)  # pairs (0,1): no error, (1,2): 2° and no translation error
    assert rpe["rot_deg"] == pytest.approx(1.0, abs=1e-9) and rpe["trans"] < 1e-12
    assert relative_pose_error(pred, gt, delta=2)["rot_deg"] == pytest.approx(2.0, abs=1e-9)
    with pytest.raises(ValueError, match="delta"):
        relative_pose_error(pred, gt, delta=3)


def test_rotation_angle_is_accurate_near_zero_and_pi():
    for deg in (1e-6, 0.5, 90.0, 179.9999, 180.0):
        rot = Rotation.from_rotvec(np.radians(deg) * np.array([1.0, 2.0, -2.0]) / 3.0).as_matrix()
        assert rotation_angle_deg(rot) == pytest.approx(deg, rel=1e-6)


# ---------------------------------------------------------------- depth and 3D points, by hand
def test_depth_metrics_by_hand():
    gt = np.array([[1.0, 2.0, 3.0]])
    assert depth_metrics(2.0 * gt, gt, np.ones_like(gt, bool)) == {"abs_rel": 0.0, "delta_1": 1.0,
                                                                    "delta_2": 1.0, "delta_3": 1.0}
    pred = np.array([[1.0, 2.0, 6.0]])  # median scale 1; last entry off by 2x (2 > 1.25³)
    split = depth_metrics_split(pred, gt, np.ones((1, 3), bool), np.array([False, False, True]))
    assert split["all"]["abs_rel"] == pytest.approx(1 / 3) and split["all"]["delta_3"] == pytest.approx(2 / 3)
    assert split["dynamic"] == {"abs_rel": 1.0, "delta_1": 0.0, "delta_2": 0.0, "delta_3": 0.0}
    assert np.isnan(depth_metrics_split(pred, gt, np.zeros((1, 3), bool), np.ones(3, bool))["dynamic"]["abs_rel"])


def test_end_point_error_by_hand():
    rng = np.random.default_rng(4)
    n, p = 5, 8
    gt_c2w = _poses(rng.normal(size=(n, 3)), seed=5)
    gt_pts = rng.normal(size=(n, p, 3))
    s, rot, t = 2.0, Rotation.from_rotvec([0.2, 0.4, -0.3]).as_matrix(), np.array([1.0, 2.0, 3.0])
    pred_c2w = _similar(gt_c2w, s, rot, t)
    pred_pts = s * gt_pts @ rot.T + t
    mask = np.ones((n, p), bool)
    assert end_point_error(pred_pts, gt_pts, mask, pred_c2w, gt_c2w)["epe"] < 1e-12
    assert end_point_error(pred_pts, gt_pts, mask)["epe"] < 1e-12
    pred_pts[2, 3] += np.array([0.0, 0.6, 0.8])  # |v| = 1 in the prediction's units → 1/s in GT units
    dyn = np.zeros(p, bool)
    dyn[3] = True
    out = end_point_error(pred_pts, gt_pts, mask, pred_c2w, gt_c2w, dynamic=dyn)
    assert out["epe"] == pytest.approx(1 / s / (n * p)) and out["epe_dynamic"] == pytest.approx(1 / s / n)


def test_evaluate_reconstruction_combines_what_the_ground_truth_allows():
    rng = np.random.default_rng(6)
    n, p = 6, 10
    gt_c2w = _poses(rng.normal(size=(n, 3)), seed=7)
    gt_pts = rng.normal(size=(n, p, 3)) + np.array([0.0, 0.0, 20.0])
    w2c = invert_rigid(gt_c2w)
    gt_depth = np.einsum("nj,npj->np", w2c[:, 2, :3], gt_pts) + w2c[:, None, 2, 3]
    s, rot, t = 0.5, Rotation.from_rotvec([0.1, -0.2, 0.3]).as_matrix(), np.array([0.3, 0.0, -1.0])
    c2w = _similar(gt_c2w, s, rot, t)
    pts = s * gt_pts @ rot.T + t
    rec = Reconstruction(c2w, invert_rigid(c2w), np.tile(np.eye(3), (n, 1, 1)), pts, pts[0], np.ones(p),
                         s * gt_depth, pts[:1] * 0, np.zeros((n, 1)), np.zeros((n, p, 2)), np.ones((n, p), bool))
    dyn = np.zeros((n, p), bool)
    dyn[:, :3] = True
    out = evaluate_reconstruction(rec, GroundTruth(invert_rigid(gt_c2w), gt_depth, dyn), gt_points=gt_pts)
    assert out["ate"] < 1e-5 and out["rpe_rot_deg"] < 1e-3 and out["scale"] == pytest.approx(1 / s, rel=1e-5)
    assert out["depth_abs_rel"] < 1e-5 and out["depth_dynamic_delta_1"] == 1.0
    assert out["epe"] < 1e-5 and out["epe_dynamic"] < 1e-5
    assert set(evaluate_reconstruction(rec, GroundTruth(depth=gt_depth))) == {
        "depth_abs_rel", "depth_delta_1", "depth_delta_2", "depth_delta_3"}


# ---------------------------------------------------------------- file readers
def test_read_tum_kitti_and_errors(tmp_path):
    tum = tmp_path / "traj.txt"
    tum.write_text("# t tx ty tz qx qy qz qw\n1.0 1 2 3 0 0 0 1\n\n1.5 0 0 0 0 0 0.7071068 0.7071068  # 90° about z\n")
    stamps, c2w = read_tum(tum)
    np.testing.assert_allclose(stamps, [1.0, 1.5])
    np.testing.assert_allclose(c2w[0, :3, 3], [1, 2, 3])
    np.testing.assert_allclose(c2w[1, :3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-7)
    kitti = tmp_path / "kitti.txt"
    kitti.write_text("1 0 0 4 0 1 0 5 0 0 1 6\n")
    assert read_trajectory(kitti)[0] is None and read_trajectory(tum)[1].shape == (2, 4, 4)
    np.testing.assert_allclose(read_kitti(kitti)[1][0], pose_matrix(np.eye(3), np.array([4.0, 5, 6])))
    bad = tmp_path / "bad.txt"
    bad.write_text("1.0 1 2 3 0 0 0 1\n2.0 1 2 x 0 0 0 1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: not a number"):
        read_tum(bad)
    bad.write_text("# c\n1.0 1 2 3 0 0 1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 8 numbers"):
        read_tum(bad)
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 12 numbers"):
        read_kitti(bad)


def test_associate_is_one_to_one_within_max_diff():
    a = np.array([0.0, 0.1, 0.2, 0.3, 0.5])
    b = np.array([0.005, 0.011, 0.195, 0.29, 0.41])
    np.testing.assert_array_equal(associate(a, b), [[0, 0], [2, 2], [3, 3]])
    np.testing.assert_array_equal(associate(a, b, max_diff=0.1), [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]])


# ---------------------------------------------------------------- real trajectories, independent cross-check
def _load_tum_independently(path: Path) -> tuple[np.ndarray, np.ndarray, Rotation]:
    data = np.loadtxt(path, comments="#")
    return data[:, 0], data[:, 1:4], Rotation.from_quat(data[:, 4:8])  # scipy order: x, y, z, w


def _nearest_pairs(ta: np.ndarray, tb: np.ndarray, max_diff: float = 0.02) -> np.ndarray:
    j = np.abs(ta[:, None] - tb[None, :]).argmin(1)
    keep = np.abs(ta - tb[j]) < max_diff
    return np.stack([np.nonzero(keep)[0], j[keep]], 1)


def _horn_alignment(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, Rotation, np.ndarray]:
    """Horn (1987) closed-form quaternion rotation, then the least-squares scale for dst ≈ s·R·src + t."""
    xs, xd = src - src.mean(0), dst - dst.mean(0)
    m = xs.T @ xd  # m[a, b] = Σ src_a · dst_b
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = m
    nmat = np.array([
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ])
    w, x, y, z = np.linalg.eigh(nmat)[1][:, -1]
    rot = Rotation.from_quat([x, y, z, w])
    scale = float((xd * rot.apply(xs)).sum() / (xs**2).sum()) if with_scale else 1.0
    return scale, rot, dst.mean(0) - scale * rot.apply(src.mean(0))


def _independent_metrics(cp, rp, cg, rg, with_scale=True) -> dict[str, float]:
    s, ra, t = _horn_alignment(cp, cg, with_scale)
    cp, rp = s * ra.apply(cp) + t, ra * rp
    ate = np.sqrt(((cp - cg) ** 2).sum(1).mean())
    t_rel_p = rp[:-1].inv().apply(cp[1:] - cp[:-1])
    t_rel_g = rg[:-1].inv().apply(cg[1:] - cg[:-1])
    rot_err = ((rg[:-1].inv() * rg[1:]).inv() * (rp[:-1].inv() * rp[1:])).magnitude()
    return {"ate": ate, "rpe_trans": np.linalg.norm(t_rel_p - t_rel_g, axis=1).mean(),
            "rpe_rot_deg": np.degrees(rot_err).mean(), "scale": s}


def _tum_pair(estimate: str):
    """Independent arrays (centres, scipy rotations) and ours (c2w) of one estimate vs fr1_xyz GT, associated."""
    tg, cg, rg = _load_tum_independently(REAL / "freiburg1_xyz-groundtruth.txt")
    te, ce, re_ = _load_tum_independently(REAL / estimate)
    pairs = _nearest_pairs(te, tg)
    stamps_gt, gt = read_tum(REAL / "freiburg1_xyz-groundtruth.txt")
    stamps_pred, pred = read_tum(REAL / estimate)
    np.testing.assert_array_equal(associate(stamps_pred, stamps_gt), pairs)
    i, j = pairs.T
    return (ce[i], re_[i], cg[j], rg[j]), (pred[i], gt[j])


def _assert_agree(ours: dict, ref: dict) -> None:
    for key in ("ate", "rpe_trans", "rpe_rot_deg", "scale"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-6, rel=1e-6), key


@pytest.mark.realdata
@needs_real
def test_real_fr1_xyz_rgbdslam_matches_independent_computation():
    indep, (pred, gt) = _tum_pair("freiburg1_xyz-rgbdslam.txt")
    ours, ref = trajectory_metrics(pred, gt), _independent_metrics(*indep)
    print(f"\nfr1_xyz rgbdslam ({len(gt)} pairs): {ours}")
    _assert_agree(ours, ref)
    _assert_agree(trajectory_metrics(pred, gt, with_scale=False), _independent_metrics(*indep, with_scale=False))
    assert 0.005 < ours["ate"] < 0.05
    assert ours["ate"] <= absolute_trajectory_error(pred, gt, with_scale=False) + 1e-12


@pytest.mark.realdata
@needs_real
def test_real_fr1_xyz_orb_monocular_needs_the_scale():
    indep, (pred, gt) = _tum_pair("freiburg1_xyz-ORB_kf_mono.txt")
    sim3, se3 = trajectory_metrics(pred, gt), absolute_trajectory_error(pred, gt, with_scale=False)
    _assert_agree(sim3, _independent_metrics(*indep))
    print(f"\nfr1_xyz ORB mono keyframes ({len(gt)}): Sim3 {sim3}, SE3 ATE {se3:.4f}")
    assert sim3["ate"] < 0.05 and se3 > 2 * sim3["ate"]
    # Monocular scale is arbitrary: the same estimate at 5x its size keeps its Sim(3) ATE, SE(3) breaks down.
    big = pred.copy()
    big[:, :3, 3] *= 5.0
    assert absolute_trajectory_error(big, gt) == pytest.approx(sim3["ate"], rel=1e-9)
    assert absolute_trajectory_error(big, gt, with_scale=False) > 10 * sim3["ate"]


@pytest.mark.realdata
@needs_real
def test_real_kitti_00_orb_against_ground_truth():
    times, gt = read_kitti(REAL / "KITTI_00_gt.txt", REAL / "KITTI_00_gt_times.txt")
    _, pred = read_trajectory(REAL / "KITTI_00_ORB.txt")
    assert len(pred) == len(gt) == len(times)
    ours = trajectory_metrics(pred, gt)
    se3 = absolute_trajectory_error(pred, gt, with_scale=False)
    print(f"\nKITTI 00 ORB ({len(gt)} frames): {ours}, SE3 ATE {se3:.3f} m")
    to_rot = lambda c2w: Rotation.from_matrix(c2w[:, :3, :3])  # noqa: E731
    _assert_agree(ours, _independent_metrics(pred[:, :3, 3], to_rot(pred), gt[:, :3, 3], to_rot(gt)))
    assert ours["ate"] < 50.0


def test_motion_auc_matches_the_mann_whitney_statistic():
    from scipy.stats import mannwhitneyu

    from tracks4d.evaluation.metrics import motion_auc

    rng = np.random.default_rng(0)
    gamma = np.round(rng.gamma(2.0, size=300), 1)                    # rounded: ties included
    dynamic = rng.random(300) < 0.3
    gamma[dynamic] += 0.4
    expected = mannwhitneyu(gamma[dynamic], gamma[~dynamic]).statistic / (dynamic.sum() * (~dynamic).sum())
    assert motion_auc(gamma, dynamic) == pytest.approx(expected)
    assert motion_auc(np.arange(4.0), np.array([False, False, True, True])) == 1.0
    assert motion_auc(np.arange(4.0), np.array([True, True, False, False])) == 0.0
    assert np.isnan(motion_auc(np.ones(3), np.zeros(3, bool)))
