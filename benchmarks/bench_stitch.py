"""Long-video stitching with the real network: stitched ATE against the mean per-window ATE, per stage.

    python benchmarks/bench_stitch.py [CHECKPOINT] [--scenes 9] [--frames 150] [--window 50] [--overlap 10]

Held-out synthetic scenes (seeds 3_000_003 + i, camera paths orbit / walk / pan in turn, generator noise) of
``--frames`` frames are cut into windows (``tracks4d.stitch.split_windows``) and reconstructed two ways:

- net: each window by the network alone, stitched (``stitch``);
- +BA: the pipeline's long-clip path (``run_pipeline(..., bundle_adjust=True)``, ``pipeline._adjust_long``: windows
  adjusted then the stitched clip, or the stitched network output adjusted as one, whichever leaves more static
  tracks); its per-window column adjusts each window alone (``pipeline._adjust``).

Per-window ATE: each window's own cameras, Sim(3)-aligned to the truth of its frames (for +BA: the adjusted
windows); stitched ATE: the whole trajectory aligned once. All ATEs in % of the camera path length. Issue 4 asks for
stitched ≤ 1.5 × mean per-window.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from tracks4d.checkpoint import default_checkpoint, load_model
from tracks4d.inference import run_network
from tracks4d.metrics import absolute_trajectory_error
from tracks4d.pipeline import ReconstructOptions, _adjust, run_pipeline
from tracks4d.stitch import split_windows, stitch
from training.synthetic import SceneConfig, generate_scene

SEED = 3_000_003
KINDS = ("orbit", "walk", "pan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=None)
    ap.add_argument("--scenes", type=int, default=9)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--overlap", type=int, default=10)
    ap.add_argument("--max-tracks", type=int, default=600)
    args = ap.parse_args()
    checkpoint = args.checkpoint or default_checkpoint("cpu")
    model, _ = load_model(checkpoint)
    opts = ReconstructOptions(checkpoint=checkpoint, bundle_adjust=True, window=args.window, overlap=args.overlap,
                              progress=False)
    print(f"{'scene':>14s} | {'net: window':>11s} {'stitched':>8s} {'ratio':>5s} | "
          f"{'+BA: window':>11s} {'stitched':>8s} {'ratio':>5s} {'time':>5s}")
    ratios = {"net": [], "ba": []}
    for i in range(args.scenes):
        kind = KINDS[i % len(KINDS)]
        scene = generate_scene(SEED + i, replace(SceneConfig(), n_frames=args.frames, camera=kind,
                                                 motion_frames=args.window))
        tracks = scene.tracks
        if tracks.n_points > args.max_tracks:
            keep = np.sort(np.random.default_rng(i).choice(tracks.n_points, args.max_tracks, replace=False))
            tracks = tracks.subset(points=keep)
        truth = scene.camera_to_world
        path = float(np.linalg.norm(np.diff(truth[:, :3, 3], axis=0), axis=1).sum())

        def ate(c2w: np.ndarray, start: int = 0) -> float:
            return 100.0 * absolute_trajectory_error(c2w, truth[start:start + len(c2w)]) / path

        row = []
        for stage in ("net", "ba"):
            t = time.perf_counter()
            windows = []
            for span, idx, sub in split_windows(tracks, args.window, args.overlap):
                rec = run_network(model, sub)
                windows.append((span, idx, _adjust(rec, opts, True) if stage == "ba" else rec))
            per_window = float(np.mean([ate(rec.camera_to_world, span[0]) for span, _, rec in windows]))
            whole = run_pipeline(tracks, opts).reconstruction if stage == "ba" else stitch(tracks, windows)
            stitched = ate(whole.camera_to_world)
            ratios[stage].append(stitched / per_window)
            row.append(f"{per_window:11.3f} {stitched:8.3f} {ratios[stage][-1]:5.2f}")
            seconds = time.perf_counter() - t
        print(f"{kind + ' ' + str(SEED + i):>14s} | {row[0]} | {row[1]} {seconds:4.0f}s", flush=True)
    for stage, r in ratios.items():
        print(f"{stage}: mean ratio {np.mean(r):.2f}, max {np.max(r):.2f} (target ≤ 1.5 on each scene)")


if __name__ == "__main__":
    main()
