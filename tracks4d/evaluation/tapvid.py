"""TAP-Vid metrics of predicted point tracks against ground truth (Doersch et al., "TAP-Vid", NeurIPS 2022).

Computed over the evaluated entries of one video: every frame of a track except its query frame ("strided", the
paper's mode for queries sampled anywhere in the clip), or only the frames after it ("first").

- δ^x: among evaluated entries visible in the ground truth, the fraction whose prediction lies strictly closer than
  x pixels; δ_avg is the mean over x ∈ {1, 2, 4, 8, 16}.
- Occlusion accuracy (OA): fraction of evaluated entries whose predicted visibility equals the true one.
- Jaccard at x: TP / (TP + FP + FN) with TP = visible in truth, predicted visible and within x; FP = predicted
  visible but occluded in truth or not within x; FN = visible in truth but predicted occluded or not within x
  (a visible prediction that is too far counts as both). Average Jaccard (AJ) is the mean over the thresholds.

Thresholds are in the pixels of the given coordinates (the paper evaluates at 256×256; rescale tracks to compare).
"""

from __future__ import annotations

import numpy as np

__all__ = ["THRESHOLDS", "scored_entries", "tapvid_metrics"]

THRESHOLDS = (1, 2, 4, 8, 16)


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator) / denominator if denominator else float("nan")


def scored_entries(n_frames: int, query_frame: np.ndarray, mode: str = "strided") -> np.ndarray:
    """(N, P) bool: the entries a mode scores, given query_frame (P,) int."""
    frames, query = np.arange(n_frames)[:, None], np.asarray(query_frame)[None, :]
    if mode == "strided":
        return frames != query
    if mode == "first":
        return frames > query
    raise ValueError(f"TAP-Vid mode must be 'strided' or 'first', got {mode!r}")


def tapvid_metrics(pred_tracks: np.ndarray, pred_visible: np.ndarray, gt_tracks: np.ndarray,
                   gt_occluded: np.ndarray, query_frame: np.ndarray, mode: str = "strided") -> dict[str, float]:
    """TAP-Vid metrics of one video.

    pred_tracks, gt_tracks: (N, P, 2) pixels (values at occluded truth entries are ignored; NaN allowed) ·
    pred_visible, gt_occluded: (N, P) bool · query_frame: (P,) int · mode: "strided" or "first".
    Returns delta_avg, delta_1 … delta_16, occlusion_accuracy, average_jaccard, jaccard_1 … jaccard_16
    (NaN where a ratio has nothing to count).
    """
    pred_tracks, gt_tracks = np.asarray(pred_tracks, np.float64), np.asarray(gt_tracks, np.float64)
    pred_visible, gt_visible = np.asarray(pred_visible, bool), ~np.asarray(gt_occluded, bool)
    n, p = gt_visible.shape
    if pred_tracks.shape != (n, p, 2) or gt_tracks.shape != (n, p, 2) or pred_visible.shape != (n, p):
        raise ValueError(f"tapvid_metrics: shapes disagree: pred_tracks {pred_tracks.shape}, gt_tracks "
                         f"{gt_tracks.shape}, pred_visible {pred_visible.shape}, gt_occluded {(n, p)}")
    evaluated = scored_entries(n, query_frame, mode)
    with np.errstate(invalid="ignore"):
        distance = np.linalg.norm(pred_tracks - gt_tracks, axis=-1)
    true_visible = gt_visible & evaluated
    predicted_visible = pred_visible & evaluated
    out: dict[str, float] = {}
    for x in THRESHOLDS:
        within = distance < x   # False where either position is NaN
        true_positive = int((true_visible & predicted_visible & within).sum())
        false_positive = int((predicted_visible & (~gt_visible | ~within)).sum())
        false_negative = int((true_visible & (~pred_visible | ~within)).sum())
        out[f"delta_{x}"] = _ratio((true_visible & within).sum(), true_visible.sum())
        out[f"jaccard_{x}"] = _ratio(true_positive, true_positive + false_positive + false_negative)
    out["delta_avg"] = float(np.mean([out[f"delta_{x}"] for x in THRESHOLDS]))
    out["occlusion_accuracy"] = _ratio((evaluated & (pred_visible == gt_visible)).sum(), evaluated.sum())
    out["average_jaccard"] = float(np.mean([out[f"jaccard_{x}"] for x in THRESHOLDS]))
    return out
