"""Accuracy metrics against ground truth (paper / official evaluation definitions).

Poses are camera-to-world (N, 4, 4). Every camera metric first aligns the predicted camera centres onto the ground
truth's with one Sim(3) Umeyama fit (scale included; ``with_scale=False`` gives SE(3)), and applies it to the whole
predicted pose: P ↦ (R_a·R_P, s·R_a·t_P + t_a).

- ATE: RMSE over frames of ‖aligned centre − GT centre‖ (GT units).
- RPE (frame step ``delta``): E_i = (G_i⁻¹ G_{i+δ})⁻¹ (P_i⁻¹ P_{i+δ}) with P aligned; ``trans`` is the mean of ‖t(E_i)‖
  (GT units; equals ‖s·t_rel(P) − t_rel(G)‖ rotated, so only the fitted scale matters), ``rot_deg`` the mean
  rotation angle of R(E_i) in degrees. Means (not RMSE), over the N − δ consecutive pairs.
- Depth: per-frame median scaling at track points, then AbsRel and δ < 1.25^k, averaged over frames.
- EPE: mean ‖s·R·x + t − x_gt‖ over scored (frame, track) entries, the Sim(3) taken from the cameras when given.
"""

from __future__ import annotations

import numpy as np

from ..geometry.motion import motion_auc  # noqa: F401 (re-exported: a metric the motion stage also uses)
from ..geometry.transforms import apply_sim3, invert_rigid, umeyama_sim3

__all__ = [
    "motion_auc",
    "absolute_trajectory_error",
    "align_trajectory",
    "depth_metrics",
    "depth_metrics_split",
    "end_point_error",
    "evaluate_reconstruction",
    "relative_pose_error",
    "rotation_angle_deg",
    "trajectory_metrics",
]


def _centres(pred_camera_to_world: np.ndarray, gt_camera_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred_c = np.asarray(pred_camera_to_world, dtype=np.float64)[:, :3, 3]
    gt_c = np.asarray(gt_camera_to_world, dtype=np.float64)[:, :3, 3]
    if pred_c.shape != gt_c.shape:
        raise ValueError(f"trajectories differ in length: {pred_c.shape[0]} vs {gt_c.shape[0]} frames")
    return pred_c, gt_c


def align_trajectory(pred_camera_to_world: np.ndarray, gt_camera_to_world: np.ndarray,
                     with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama fit of predicted onto GT camera centres: (s, R (3, 3), t (3,)) with gt_c ≈ s·R·pred_c + t.

    pred_camera_to_world, gt_camera_to_world: (N, 4, 4); with_scale=False fixes s = 1 (SE(3)).
    """
    pred_c, gt_c = _centres(pred_camera_to_world, gt_camera_to_world)
    return umeyama_sim3(pred_c, gt_c, with_scale=with_scale)


def _apply_to_poses(scale: float, rot: np.ndarray, t: np.ndarray, camera_to_world: np.ndarray) -> np.ndarray:
    """Similarity applied to camera-to-world poses (N, 4, 4): rotation R·R_P, centre s·R·t_P + t."""
    out = np.array(camera_to_world, dtype=np.float64)
    out[:, :3, :3] = rot @ out[:, :3, :3]
    out[:, :3, 3] = apply_sim3(scale, rot, t, out[:, :3, 3])
    return out


def absolute_trajectory_error(pred_camera_to_world: np.ndarray, gt_camera_to_world: np.ndarray,
                              *, with_scale: bool = True) -> float:
    """RMSE of camera centres after Sim(3) (or SE(3) with with_scale=False) alignment onto the ground truth.

    pred_camera_to_world, gt_camera_to_world: (N, 4, 4). Units are the ground truth's.
    """
    pred_c, gt_c = _centres(pred_camera_to_world, gt_camera_to_world)
    s, r, t = umeyama_sim3(pred_c, gt_c, with_scale=with_scale)
    return float(np.sqrt(((apply_sim3(s, r, t, pred_c) - gt_c) ** 2).sum(-1).mean()))


def rotation_angle_deg(rot: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees of rotation matrices (..., 3, 3) → (...), stable near 0 and 180°."""
    rot = np.asarray(rot, dtype=np.float64)
    skew = np.stack((rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0],
                     rot[..., 1, 0] - rot[..., 0, 1]), -1)
    cos = (np.trace(rot, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arctan2(np.linalg.norm(skew, axis=-1) / 2.0, cos))


def _rpe(aligned_pred: np.ndarray, gt: np.ndarray, delta: int) -> dict[str, float]:
    if not 1 <= delta < len(gt):
        raise ValueError(f"RPE needs 1 <= delta < N frames, got delta={delta} with N={len(gt)}")
    rel_p = invert_rigid(aligned_pred[:-delta]) @ aligned_pred[delta:]
    rel_g = invert_rigid(gt[:-delta]) @ gt[delta:]
    err = invert_rigid(rel_g) @ rel_p
    return {"trans": float(np.linalg.norm(err[:, :3, 3], axis=-1).mean()),
            "rot_deg": float(rotation_angle_deg(err[:, :3, :3]).mean())}


def relative_pose_error(pred_camera_to_world: np.ndarray, gt_camera_to_world: np.ndarray, delta: int = 1,
                        *, with_scale: bool = True) -> dict[str, float]:
    """RPE between frames i and i+delta after Sim(3) alignment of centres (module docstring for the definition).

    pred_camera_to_world, gt_camera_to_world: (N, 4, 4) → {"trans": GT units, "rot_deg": degrees}, means over pairs.
    """
    s, r, t = align_trajectory(pred_camera_to_world, gt_camera_to_world, with_scale)
    gt = np.asarray(gt_camera_to_world, dtype=np.float64)
    return _rpe(_apply_to_poses(s, r, t, pred_camera_to_world), gt, delta)


def trajectory_metrics(pred_camera_to_world: np.ndarray, gt_camera_to_world: np.ndarray,
                       *, with_scale: bool = True) -> dict[str, float]:
    """ATE, RPE (delta 1) and the fitted scale from one alignment.

    pred_camera_to_world, gt_camera_to_world: (N, 4, 4) → {"ate", "rpe_trans", "rpe_rot_deg", "scale"}.
    """
    s, r, t = align_trajectory(pred_camera_to_world, gt_camera_to_world, with_scale)
    gt = np.asarray(gt_camera_to_world, dtype=np.float64)
    aligned = _apply_to_poses(s, r, t, pred_camera_to_world)
    rpe = _rpe(aligned, gt, 1)
    ate = float(np.sqrt(((aligned[:, :3, 3] - gt[:, :3, 3]) ** 2).sum(-1).mean()))
    return {"ate": ate, "rpe_trans": rpe["trans"], "rpe_rot_deg": rpe["rot_deg"], "scale": float(s)}


def _depth_scores(pred: np.ndarray, gt: np.ndarray, scale_mask: np.ndarray, score_mask: np.ndarray) -> dict[str, float]:
    """Per-frame median scale fitted on scale_mask, scores on score_mask (both (N, P) bool, already gt, pred > 0)."""
    rows = {"abs_rel": [], "delta_1": [], "delta_2": [], "delta_3": []}
    for frame in range(pred.shape[0]):
        fit, sel = scale_mask[frame], score_mask[frame]
        if not sel.any():
            continue
        p = pred[frame, sel] * np.median(gt[frame, fit]) / np.median(pred[frame, fit])
        g = gt[frame, sel]
        ratio = np.maximum(p / g, g / p)
        rows["abs_rel"].append(np.mean(np.abs(p - g) / g))
        for k in (1, 2, 3):
            rows[f"delta_{k}"].append(np.mean(ratio < 1.25**k))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in rows.items()}


def _valid_depth(pred_depth, gt_depth, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = np.asarray(pred_depth, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    return pred, gt, np.asarray(mask, dtype=bool) & (gt > 0) & (pred > 0)


def depth_metrics(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Depth accuracy with per-frame median scaling.

    pred_depth, gt_depth: (N, P) · mask: (N, P) bool, entries to score (also requires gt > 0 and pred > 0).
    Returns abs_rel, delta_1 (δ<1.25), delta_2 (δ<1.25²), delta_3 (δ<1.25³), each the mean over frames that have
    at least one scored entry; NaN when no frame has one.
    """
    pred, gt, ok = _valid_depth(pred_depth, gt_depth, mask)
    return _depth_scores(pred, gt, ok, ok)


def depth_metrics_split(pred_depth: np.ndarray, gt_depth: np.ndarray, visible: np.ndarray,
                        dynamic: np.ndarray) -> dict[str, dict[str, float]]:
    """Depth metrics over all visible entries and over the visible dynamic ones.

    pred_depth, gt_depth, visible: (N, P) · dynamic: (P,) or (N, P) bool → {"all": ..., "dynamic": ...}, each as
    :func:`depth_metrics`. Both use the same per-frame median scale, fitted on all visible entries of the frame
    (a frame's scale does not depend on which subset is scored).
    """
    pred, gt, ok = _valid_depth(pred_depth, gt_depth, visible)
    dyn = np.broadcast_to(np.asarray(dynamic, dtype=bool), ok.shape)
    return {"all": _depth_scores(pred, gt, ok, ok), "dynamic": _depth_scores(pred, gt, ok, ok & dyn)}


def end_point_error(pred_points: np.ndarray, gt_points: np.ndarray, mask: np.ndarray,
                    pred_camera_to_world: np.ndarray | None = None, gt_camera_to_world: np.ndarray | None = None,
                    dynamic: np.ndarray | None = None) -> dict[str, float]:
    """Mean 3D end-point error after Sim(3) alignment (GT units).

    pred_points, gt_points: (N, P, 3) world points · mask: (N, P) bool entries to score · cameras: (N, 4, 4)
    camera-to-world; when both are given the Sim(3) is the camera-centre fit (as for ATE), else Umeyama on the masked
    points · dynamic: optional (P,) or (N, P) bool. Returns {"epe"} and, with dynamic, {"epe_dynamic"}; NaN for an
    empty selection.
    """
    pred = np.asarray(pred_points, dtype=np.float64)
    gt = np.asarray(gt_points, dtype=np.float64)
    ok = np.asarray(mask, dtype=bool)
    if pred.shape != gt.shape or ok.shape != pred.shape[:2]:
        raise ValueError(f"EPE needs points (N, P, 3) of one shape and mask (N, P): "
                         f"got {pred.shape}, {gt.shape}, {ok.shape}")
    if pred_camera_to_world is not None and gt_camera_to_world is not None:
        s, r, t = align_trajectory(pred_camera_to_world, gt_camera_to_world)
    else:
        s, r, t = umeyama_sim3(pred[ok], gt[ok])
    err = np.linalg.norm(apply_sim3(s, r, t, pred) - gt, axis=-1)
    mean = lambda sel: float(err[sel].mean()) if sel.any() else float("nan")  # noqa: E731
    out = {"epe": mean(ok)}
    if dynamic is not None:
        out["epe_dynamic"] = mean(ok & np.broadcast_to(np.asarray(dynamic, dtype=bool), ok.shape))
    return out


def evaluate_reconstruction(rec, gt, gt_points: np.ndarray | None = None) -> dict[str, float]:
    """Every metric the ground truth allows, as one flat dict (missing GT → those keys absent).

    rec: :class:`~tracks4d.contracts.Reconstruction` · gt: object with ``world_to_camera`` (N, 4, 4),
    ``depth`` (N, P) (0 = unknown) and ``dynamic`` (N, P) bool attributes, any of them None (e.g.
    :class:`~tracks4d.contracts.GroundTruth`) · gt_points: optional (N, P, 3) world points, NaN = unknown.
    Keys: ate, rpe_trans, rpe_rot_deg, scale (cameras); depth_{abs_rel,delta_1,delta_2,delta_3} and
    depth_dynamic_* (depth, scored where the track is visible); epe, epe_dynamic (points, scored where visible).
    """
    out: dict[str, float] = {}
    w2c, depth, dynamic = (getattr(gt, name, None) for name in ("world_to_camera", "depth", "dynamic"))
    gt_c2w = None if w2c is None else invert_rigid(np.asarray(w2c, dtype=np.float64))
    if gt_c2w is not None:
        out.update(trajectory_metrics(rec.camera_to_world, gt_c2w))
    if depth is not None:
        if dynamic is None:
            out.update({f"depth_{k}": v for k, v in depth_metrics(rec.depth, depth, rec.visible).items()})
        else:
            split = depth_metrics_split(rec.depth, depth, rec.visible, dynamic)
            out.update({f"depth_{k}": v for k, v in split["all"].items()})
            out.update({f"depth_dynamic_{k}": v for k, v in split["dynamic"].items()})
    if gt_points is not None:
        gp = np.asarray(gt_points, dtype=np.float64)
        mask = np.asarray(rec.visible, dtype=bool) & np.isfinite(gp).all(-1)
        cams = (rec.camera_to_world, gt_c2w) if gt_c2w is not None else (None, None)
        out.update(end_point_error(rec.points, np.nan_to_num(gp), mask, *cams, dynamic=dynamic))
    return out
