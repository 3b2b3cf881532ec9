"""TAP-Vid accuracy of the built-in point tracker on rendered textured scenes with exact ground truth.

    python benchmarks/eval_tracker.py [--seeds 0 1 2] [--frames 50] [--size 640 480] [--noise 2]
                                      [--mode strided|first] [--resize 256 256] [--grid 15] [--query-every 20]

Each scene comes from tracks4d.evaluation.render (a textured room, static boxes, a moving box and card, a handheld camera) and
is tracked with tracks4d.tracking.track_frames. Ground truth is built for the tracker's own queries: each track's
position at its query frame. Prints per scene and on average δ_avg, δ<1…16, occlusion accuracy (OA) and Average
Jaccard (AJ) (tracks4d.evaluation.tapvid), AJ of the queries on the static background and on movers, two diagnostics (missed:
share of truly visible entries the tracker calls occluded; med px: median error where both say visible), tracker
seconds and tracks, and a perfect-tracker row (ground truth fed back as the prediction: every metric must read 1).
Thresholds are in pixels of --size, or of --resize (TAP-Vid evaluates at 256×256).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tracks4d.evaluation.render import ground_truth_tracks, query_bodies, render_scene
from tracks4d.evaluation.tapvid import THRESHOLDS, scored_entries, tapvid_metrics
from tracks4d.tracking import TrackerConfig, track_frames

COLUMNS = ["delta_avg"] + [f"delta_{x}" for x in THRESHOLDS] + ["occlusion_accuracy", "average_jaccard",
                                                                 "aj_static", "aj_moving", "missed", "median_error"]
HEADER = ["δ_avg"] + [f"δ<{x}" for x in THRESHOLDS] + ["OA", "AJ", "AJ stat", "AJ mov", "missed", "med px"]


def scene_metrics(pred_tracks, pred_visible, gt_tracks, gt_occluded, query_frame, moving, scale, mode) -> dict:
    """TAP-Vid metrics of all tracks, AJ of static (moving False) and moving tracks, and two diagnostics: missed =
    fraction of truly visible scored entries predicted occluded, median_error = median distance (px) where both
    say visible. Tracks (N, P, 2) are multiplied by scale (2,) first."""
    args = (pred_tracks * scale, pred_visible, gt_tracks * scale, gt_occluded, query_frame)
    out = tapvid_metrics(*args, mode=mode)
    for name, subset in (("aj_static", ~moving), ("aj_moving", moving)):
        part = [np.compress(subset, a, axis=axis) for a, axis in zip(args, (1, 1, 1, 1, 0))]  # the points axis
        out[name] = tapvid_metrics(*part, mode=mode)["average_jaccard"] if subset.any() else float("nan")
    truly_visible = scored_entries(len(gt_occluded), query_frame, mode) & ~gt_occluded
    out["missed"] = float((truly_visible & ~pred_visible).sum() / max(1, truly_visible.sum()))
    both = truly_visible & pred_visible
    out["median_error"] = float(np.median(np.linalg.norm(args[0] - args[2], axis=-1)[both])) if both.any() \
        else float("nan")
    return out


def row(name: str, metrics: dict, extra: str = "") -> str:
    return f"{name:>8s} " + " ".join(f"{metrics[c]:7.3f}" for c in COLUMNS) + extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", nargs=2, type=int, default=[640, 480], metavar=("W", "H"))
    ap.add_argument("--noise", type=float, default=2.0, help="image noise std in grey levels")
    ap.add_argument("--mode", choices=["strided", "first"], default="strided")
    ap.add_argument("--resize", nargs=2, type=int, default=None, metavar=("W", "H"),
                    help="measure distances in a W×H image (TAP-Vid: 256 256)")
    ap.add_argument("--grid", type=int, default=TrackerConfig.grid)
    ap.add_argument("--query-every", type=int, default=TrackerConfig.query_every)
    args = ap.parse_args()
    config = TrackerConfig(grid=args.grid, query_every=args.query_every)
    scale = np.ones(2) if args.resize is None else np.array(args.resize) / np.array(args.size)
    print(f"{'scene':>8s} " + " ".join(f"{h:>7s}" for h in HEADER) + f" {'seconds':>8s} {'tracks':>7s} {'moving':>7s}")
    results, perfect = [], []
    for seed in args.seeds:
        scene = render_scene(seed, args.frames, tuple(args.size), args.noise)
        start = time.perf_counter()
        tracked = track_frames(scene.frames, config)
        seconds = time.perf_counter() - start
        p = np.arange(tracked.n_points)
        queries = np.column_stack([tracked.query_frame, tracked.tracks[tracked.query_frame, p]])
        gt_tracks, gt_occluded = ground_truth_tracks(scene, queries)
        moving = query_bodies(scene, queries) > 0
        metrics = scene_metrics(tracked.tracks, tracked.visible, gt_tracks, gt_occluded, tracked.query_frame,
                                moving, scale, args.mode)
        results.append(metrics)
        perfect.append(scene_metrics(gt_tracks, ~gt_occluded, gt_tracks, gt_occluded, tracked.query_frame, moving,
                                     scale, args.mode))
        print(row(f"seed {seed}", metrics, f" {seconds:8.2f} {tracked.n_points:7d} {int(moving.sum()):7d}"),
              flush=True)
    mean = lambda rows: {c: float(np.nanmean([r[c] for r in rows])) for c in COLUMNS}  # noqa: E731
    print(row("mean", mean(results)))
    print(row("perfect", mean(perfect)))


if __name__ == "__main__":
    main()
