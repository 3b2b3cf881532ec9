"""Errors of the built-in point tracker, measured in the terms of the synthetic generator's noise model.

    python benchmarks/measure_tracker_noise.py [--scenes 4] [--frames 50] [--noise-std 2] [--seed-offset 0]
                                               [--json PATH]

Scenes seed-offset … seed-offset + scenes − 1 are rendered at 640×480 (tracks4d.evaluation.render, image noise --noise-std grey
levels) and tracked with the default TrackerConfig (tracks4d.tracking.track_frames); exact ground truth is built for
the tracker's own queries (benchmarks/eval_tracker.py does the same). e = tracked − true (px) on entries where both
say visible. training.synthetic.SceneConfig models e per axis as jitter j_t ~ N(0, σ_j²) plus a random walk with
step std σ_d that is zero at the query frame, rare outliers, and wrong visibility flags. Measured:

* σ_j, σ_d per track from differences of e over consecutive usable frames (both visible, |e| ≤ 10 px, not the query
  frame), x and y pooled: V1 = E[(Δe)²] = 2σ_j² + σ_d² and V2 = E[(Δ²e)²] = 6σ_j² + 2σ_d², so σ_j² = (V2 − 2·V1)/2
  and σ_d² = 3·V1 − V2 (clipped at 0; tracks with fewer than 10 second differences are skipped). Medians and
  10/90th percentiles over tracks. The model needs the lag-1 correlation of Δe, ρ = 1 − V2/(2·V1) = −σ_j²/V1,
  in [−0.5, 0]; ρ > 0 means errors that keep their direction (drift with momentum), which this reads as σ_j = 0 and
  σ_d inflated by √(1 + 2ρ). Cross-check from the pooled growth of the error with distance k from the query frame:
  median |e|² / (2 ln 2) (the per-axis variance of isotropic Gaussian e) fitted as σ_j² + k·σ_d².
* outlier rate: share of non-query entries with |e| > 10 px; their median magnitude.
* median and 90th percentile of |e| by distance from the query frame.
* flags, query frames left out: wrong-flag rate more than one frame from a true visibility change and within one
  frame of one (as in the generator, only over entries truly visible or in view); lost = share of truly visible
  entries reported invisible, false visible = share of truly invisible (occluded or out of view) reported visible.

Ends with a suggested SceneConfig noise setting: per-track ranges from 10/90th percentiles over tracks, per-scene
ones (outlier_rate, flip_rate) from the lowest and highest scene.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tracks4d.evaluation.render import ground_truth_tracks, render_scene  # noqa: E402
from tracks4d.tracking import track_frames  # noqa: E402
from training.synthetic import SceneConfig  # noqa: E402

SIZE = (640, 480)
OUTLIER_PX = 10.0
MIN_SECOND_DIFFERENCES = 10
DISTANCE_BINS = (("0", 0, 0), ("1-5", 1, 5), ("6-15", 6, 15), ("16-30", 16, 30), (">30", 31, np.inf))
FLAGS = ("away", "near", "lost", "false_visible")


@dataclass
class SceneErrors:
    """seed · error: (N, P, 2) tracked − true px · pred_visible, true_visible, in_view: (N, P) · distance: (N, P)
    frames from each track's query frame · seconds: tracker time."""

    seed: int
    error: np.ndarray
    pred_visible: np.ndarray
    true_visible: np.ndarray
    in_view: np.ndarray
    distance: np.ndarray
    seconds: float

    @property
    def usable(self) -> np.ndarray:
        """Both visible, not the query frame."""
        return self.pred_visible & self.true_visible & (self.distance > 0)


def track_scene(seed: int, n_frames: int, noise_std: float) -> SceneErrors:
    """Render and track scene ``seed``; ground truth for the tracker's own queries. Tracks whose query shows no
    surface in the ground truth (on a face edge) are dropped."""
    scene = render_scene(seed, n_frames, SIZE, noise_std)
    start = time.perf_counter()
    tracked = track_frames(scene.frames)
    seconds = time.perf_counter() - start
    p = np.arange(tracked.n_points)
    queries = np.column_stack([tracked.query_frame, tracked.tracks[tracked.query_frame, p]])
    gt_tracks, occluded = ground_truth_tracks(scene, queries)
    keep = ~occluded[tracked.query_frame, p]
    x, y = gt_tracks[..., 0], gt_tracks[..., 1]
    in_view = (x >= -0.5) & (x <= SIZE[0] - 0.5) & (y >= -0.5) & (y <= SIZE[1] - 0.5)  # False where NaN
    distance = np.abs(np.arange(n_frames)[:, None] - tracked.query_frame[None])
    return SceneErrors(seed, (tracked.tracks - gt_tracks)[:, keep], tracked.visible[:, keep], ~occluded[:, keep],
                       in_view[:, keep], distance[:, keep], seconds)


def jitter_drift(s: SceneErrors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-track σ_j, σ_d (px, per axis) and lag-1 correlation of Δe, 1 − V2 / (2·V1), from first and second
    differences (module docstring); (P,) each, tracks with too few second differences left out."""
    ok = s.usable & (np.linalg.norm(s.error, axis=-1) <= OUTLIER_PX)
    ok1 = ok[1:] & ok[:-1]
    ok2 = ok1[1:] & ok1[:-1]
    enough = ok2.sum(0) >= MIN_SECOND_DIFFERENCES
    v1, v2 = (((np.where(m[..., None], d, 0.0) ** 2).sum((0, 2)) / np.maximum(1, 2 * m.sum(0)))[enough]
              for d, m in ((np.diff(s.error, axis=0), ok1), (np.diff(s.error, 2, axis=0), ok2)))
    return np.sqrt(np.clip((v2 - 2 * v1) / 2, 0, None)), np.sqrt(np.clip(3 * v1 - v2, 0, None)), 1 - v2 / (2 * v1)


def flag_counts(s: SceneErrors) -> dict[str, tuple[int, int]]:
    """(wrong, total) for each of FLAGS (module docstring)."""
    truth, pred, not_query = s.true_visible, s.pred_visible, s.distance > 0
    change = np.zeros_like(truth)
    step = truth[1:] != truth[:-1]
    change[1:] |= step
    change[:-1] |= step
    eligible = not_query & (truth | s.in_view)
    wrong = pred != truth
    count = lambda bad, base: (int((bad & base).sum()), int(base.sum()))  # noqa: E731
    return {"away": count(wrong, eligible & ~change), "near": count(wrong, eligible & change),
            "lost": count(~pred, truth & not_query), "false_visible": count(pred, ~truth & not_query)}


def growth_fit(magnitude: np.ndarray, distance: np.ndarray) -> tuple[float, float]:
    """(σ_j, σ_d) from a least-squares fit of median |e|² / (2 ln 2) = σ_j² + k·σ_d² over distances k ≥ 1 with at
    least 50 entries."""
    ks = [k for k in np.unique(distance) if k > 0 and (distance == k).sum() >= 50]
    variance = [np.median(magnitude[distance == k] ** 2) / (2 * np.log(2)) for k in ks]
    slope, intercept = np.polyfit(ks, variance, 1)
    return float(np.sqrt(max(intercept, 0.0))), float(np.sqrt(max(slope, 0.0)))


def spread(values: np.ndarray) -> dict[str, float]:
    """10th, 50th and 90th percentiles (NaN when empty)."""
    p10, p50, p90 = np.percentile(values, [10, 50, 90]) if len(values) else (np.nan,) * 3
    return {"p10": float(p10), "median": float(p50), "p90": float(p90)}


def summarize(scenes: list[SceneErrors]) -> dict:
    """All measurements of the module docstring, per scene and pooled, and the suggested SceneConfig noise."""
    per_scene, jitter, drift, rho, magnitude, distance = [], [], [], [], [], []
    totals = {name: np.zeros(2, int) for name in FLAGS}
    for s in scenes:
        j, d, r = jitter_drift(s)
        counts = flag_counts(s)
        e = np.linalg.norm(s.error, axis=-1)
        both = s.pred_visible & s.true_visible
        for values, out in ((j, jitter), (d, drift), (r, rho), (e[both], magnitude), (s.distance[both], distance)):
            out.append(values)
        for name in FLAGS:
            totals[name] += counts[name]
        per_scene.append({"seed": s.seed, "tracks": s.error.shape[1], "jitter_median": float(np.median(j)),
                          "drift_median": float(np.median(d)), "outlier_rate": float((e[s.usable] > OUTLIER_PX).mean()),
                          **{name: wrong / max(1, total) for name, (wrong, total) in counts.items()},
                          "tracker_seconds": s.seconds})
    jitter, drift, rho, magnitude, distance = map(np.concatenate, (jitter, drift, rho, magnitude, distance))
    by_distance = []
    for label, lo, hi in DISTANCE_BINS:
        e = magnitude[(distance >= lo) & (distance <= hi)]
        if len(e):
            by_distance.append({"frames": label, "entries": len(e), "median": float(np.median(e)),
                                "p90": float(np.percentile(e, 90)), "outlier_rate": float((e > OUTLIER_PX).mean())})
    growth = growth_fit(magnitude, distance)
    flags = {name: float(wrong / max(1, total)) for name, (wrong, total) in totals.items()}
    out = {"scenes": per_scene, "tracks_estimated": len(jitter), "jitter_px": spread(jitter),
           "drift_px": spread(drift), "lag1_correlation": spread(rho),
           "growth_fit": {"jitter_px": growth[0], "drift_px": growth[1]},
           "outlier_rate": float((magnitude[distance > 0] > OUTLIER_PX).mean()),
           "outlier_px": spread(magnitude[(distance > 0) & (magnitude > OUTLIER_PX)]),
           "error_by_distance": by_distance, "flags": flags}
    tracks = lambda key: (out[key]["p10"], out[key]["p90"])  # noqa: E731
    scene = lambda key: (min(r[key] for r in per_scene), max(r[key] for r in per_scene))  # noqa: E731
    out["suggested"] = {"jitter_px": tracks("jitter_px"), "drift_px": tracks("drift_px"),
                        "outlier_rate": scene("outlier_rate"), "outlier_px": tracks("outlier_px"),
                        "flip_rate": scene("away"), "boundary_flip": flags["near"]}
    return out


def report(result: dict) -> None:
    """Print the pooled tables and the suggested and current SceneConfig noise (the per-scene rows come first)."""
    print(f"\nper track, px per axis ({result['tracks_estimated']} tracks with ≥ {MIN_SECOND_DIFFERENCES} second "
          f"differences)\n{'':22s} {'p10':>7s} {'median':>7s} {'p90':>7s}")
    for label, key in (("jitter σ_j", "jitter_px"), ("drift step σ_d", "drift_px"),
                       ("lag-1 corr. of Δe", "lag1_correlation"), ("outlier |e| > 10 px", "outlier_px")):
        print(f"{label:22s} " + " ".join(f"{result[key][q]:7.3f}" for q in ("p10", "median", "p90")))
    growth = result["growth_fit"]
    print(f"growth fit (pooled): σ_j {growth['jitter_px']:.3f}  σ_d {growth['drift_px']:.3f}")
    print(f"outliers: {result['outlier_rate']:.4f} of non-query entries, median {result['outlier_px']['median']:.1f} "
          f"px\n\n|e| by distance from the query frame\n{'frames':>7s} {'entries':>8s} {'median':>7s} {'p90':>7s} "
          f"{'>10 px':>7s}")
    for b in result["error_by_distance"]:
        print(f"{b['frames']:>7s} {b['entries']:8d} {b['median']:7.3f} {b['p90']:7.3f} {b['outlier_rate']:7.4f}")
    print("\nflags (all scenes): " + "  ".join(f"{name} {result['flags'][name]:.4f}" for name in FLAGS))
    show = lambda v: f"({v[0]:.3g}, {v[1]:.3g})" if isinstance(v, tuple) else f"{v:.3g}"  # noqa: E731
    defaults = {f.name: f.default for f in fields(SceneConfig)}
    print("\nsuggested: SceneConfig(" + ", ".join(f"{k}={show(v)}" for k, v in result["suggested"].items()) + ")")
    print("current:   SceneConfig(" + ", ".join(f"{k}={show(defaults[k])}" for k in result["suggested"]) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=4)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--noise-std", type=float, default=2.0, help="image noise std in grey levels")
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    print(f"{'seed':>5s} {'tracks':>6s} {'σ_j med':>8s} {'σ_d med':>8s} {'outlier':>8s} {'flip far':>8s} "
          f"{'flip near':>9s} {'lost':>7s} {'false vis':>9s} {'track s':>8s}")
    scenes = []
    for seed in range(args.seed_offset, args.seed_offset + args.scenes):
        scenes.append(track_scene(seed, args.frames, args.noise_std))
        r = summarize(scenes[-1:])["scenes"][0]
        print(f"{seed:5d} {r['tracks']:6d} {r['jitter_median']:8.3f} {r['drift_median']:8.3f} "
              f"{r['outlier_rate']:8.4f} {r['away']:8.4f} {r['near']:9.4f} {r['lost']:7.4f} "
              f"{r['false_visible']:9.4f} {r['tracker_seconds']:8.2f}", flush=True)
    result = summarize(scenes)
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
