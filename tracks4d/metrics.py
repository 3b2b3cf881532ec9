"""Accuracy metrics against ground truth (paper / official evaluation definitions).

ATE: RMSE of camera centres after a Sim(3) Umeyama alignment. Depth: per-frame median scaling at track points,
then AbsRel and δ < 1.25^k.
"""

from __future__ import annotations

import numpy as np

from .geometry import apply_sim3, umeyama_sim3

__all__ = ["absolute_trajectory_error", "depth_metrics"]


def absolute_trajectory_error(pred_camera_to_world: np.ndarray, gt_camera_to_world: np.ndarray) -> float:
    """RMSE of camera centres after Sim(3) alignment of the prediction onto the ground truth.

    pred_camera_to_world, gt_camera_to_world: (N, 4, 4). Units are the ground truth's.
    """
    pred_c = np.asarray(pred_camera_to_world, dtype=np.float64)[:, :3, 3]
    gt_c = np.asarray(gt_camera_to_world, dtype=np.float64)[:, :3, 3]
    if pred_c.shape != gt_c.shape:
        raise ValueError(f"trajectories differ in length: {pred_c.shape[0]} vs {gt_c.shape[0]} frames")
    s, r, t = umeyama_sim3(pred_c, gt_c)
    return float(np.sqrt(((apply_sim3(s, r, t, pred_c) - gt_c) ** 2).sum(-1).mean()))


def depth_metrics(pred_depth: np.ndarray, gt_depth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Depth accuracy with per-frame median scaling.

    pred_depth, gt_depth: (N, P) · mask: (N, P) bool, entries to score (also requires gt > 0 and pred > 0).
    Returns abs_rel, delta_1 (δ<1.25), delta_2 (δ<1.25²), delta_3 (δ<1.25³), each the mean over frames that have
    at least one scored entry; NaN when no frame has one.
    """
    pred = np.asarray(pred_depth, dtype=np.float64)
    gt = np.asarray(gt_depth, dtype=np.float64)
    ok = np.asarray(mask, dtype=bool) & (gt > 0) & (pred > 0)
    rows = {"abs_rel": [], "delta_1": [], "delta_2": [], "delta_3": []}
    for frame in range(pred.shape[0]):
        sel = ok[frame]
        if not sel.any():
            continue
        p, g = pred[frame, sel], gt[frame, sel]
        p = p * np.median(g) / np.median(p)
        ratio = np.maximum(p / g, g / p)
        rows["abs_rel"].append(np.mean(np.abs(p - g) / g))
        for k in (1, 2, 3):
            rows[f"delta_{k}"].append(np.mean(ratio < 1.25**k))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in rows.items()}
