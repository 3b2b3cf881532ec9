"""Long-video stitching with the real network: stitched ATE against the mean per-window ATE.

    python benchmarks/bench_stitch.py CHECKPOINT [--scenes 3] [--frames 150] [--window 50] [--overlap 10]

Held-out synthetic scenes (seeds 3_000_003 + i, camera paths orbit / walk / pan in turn, generator noise) of
``--frames`` frames are cut into windows (``tracks4d.stitch.split_windows``), each reconstructed by the network, and
stitched (``stitch``). Per-window ATE: each window's own cameras, Sim(3)-aligned to the truth of its frames; stitched
ATE: the whole stitched trajectory aligned once. Issue 4 asks for stitched ≤ 1.5 × mean per-window.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from tracks4d.checkpoint import load_model
from tracks4d.inference import run_network
from tracks4d.metrics import absolute_trajectory_error
from tracks4d.stitch import split_windows, stitch
from training.synthetic import SceneConfig, generate_scene

SEED = 3_000_003
KINDS = ("orbit", "walk", "pan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--overlap", type=int, default=10)
    ap.add_argument("--max-tracks", type=int, default=600)
    args = ap.parse_args()
    model, _ = load_model(args.checkpoint)
    print(f"{'scene':>14s} {'windows':>7s} {'per-window ATE':>15s} {'stitched ATE':>13s} {'ratio':>6s}")
    ratios = []
    for i in range(args.scenes):
        kind = KINDS[i % len(KINDS)]
        scene = generate_scene(SEED + i, replace(SceneConfig(), n_frames=args.frames, camera=kind,
                                                 motion_frames=args.window))
        tracks = scene.tracks
        if tracks.n_points > args.max_tracks:
            keep = np.sort(np.random.default_rng(i).choice(tracks.n_points, args.max_tracks, replace=False))
            tracks = tracks.subset(points=keep)
        windows, per_window = [], []
        for span, idx, sub in split_windows(tracks, args.window, args.overlap):
            rec = run_network(model, sub)
            windows.append((span, idx, rec))
            per_window.append(absolute_trajectory_error(rec.camera_to_world,
                                                        scene.camera_to_world[span[0]:span[1]]))
        whole = stitch(tracks, windows)
        stitched = absolute_trajectory_error(whole.camera_to_world, scene.camera_to_world)
        ratios.append(stitched / np.mean(per_window))
        print(f"{kind + ' ' + str(SEED + i):>14s} {len(windows):7d} {np.mean(per_window):15.4f} {stitched:13.4f} "
              f"{ratios[-1]:6.2f}", flush=True)
    print(f"mean ratio {np.mean(ratios):.2f} (max {np.max(ratios):.2f}); target ≤ 1.5")


if __name__ == "__main__":
    main()
