"""Gaussian refinement (issue 15) on rendered clips with exact ground truth: held-out-frame PSNR against time,
peak memory, and the 3D error of the tracked points before and after.

    python benchmarks/bench_refine.py [--seeds 0] [--minutes 15] [--motion flat,hierarchical] [--long-side 256]

Each clip is :func:`tracks4d.evaluation.render.render_scene` (640×480, 50 frames, noise 2 grey levels), tracked by the
built-in LK tracker and reconstructed with ``--ba``, exactly as ``tracks4d reconstruct clip.mp4 --ba --refine``
does; then refined once per motion model. Seed 0 is ``examples/rendered_room.mp4``, the clip the defaults were
tried on; seeds 6 400 000 + i (``--seeds held-out``) were never looked at while choosing them.

Rows: held-out PSNR (frames 0, 8, 16, …, never optimised on) after 1, 2, 5, 10 and 15 minutes (of the
optimisation; seeding adds a few seconds), final held-out SSIM, training-frame PSNR, Gaussians, peak RSS of the
process, and for the tracked points with a true 3D position: pct10 (share of visible entries within 10 % of the
median scene depth of the truth, after the Sim(3) of the cameras and static points, as bench_moving_points) of the
reconstruction and of the refined track Gaussians, static and moving apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_moving_points import pct_within, rendered_clip, scene_scale, to_truth  # noqa: E402
from tracks4d.evaluation.render import render_scene  # noqa: E402
from tracks4d.gaussians import RefineConfig, refine_gaussians  # noqa: E402
from tracks4d.pipeline import ReconstructOptions, run_pipeline  # noqa: E402

MARKS_MIN = (1, 2, 5, 10, 15)
HELD_OUT_SEED = 6_400_000


def psnr_at(history: list[dict], minutes: float) -> float:
    """Held-out PSNR of the last evaluation at or before ``minutes``; NaN when the run ended before."""
    rows = [h for h in history if h["seconds"] <= minutes * 60 + 1e-6]
    return rows[-1]["held_out_psnr"] if rows and history[-1]["seconds"] >= minutes * 60 - 30 else float("nan")


def track_positions(scene, rec) -> np.ndarray:
    """(N, P, 3): each track's refined position — its Gaussian's centre in every frame (NaN for tracks without
    one)."""
    out = np.full(rec.points.shape, np.nan)
    ids = scene.track.numpy()
    with torch.no_grad():
        for t in range(rec.n_frames):
            means = scene.at(t)[0].numpy()
            out[t, ids[ids >= 0]] = means[ids >= 0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0", help="comma-separated render seeds, or 'held-out' (6 400 000, …01)")
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--motion", default="flat")
    ap.add_argument("--long-side", type=int, default=256)
    args = ap.parse_args()
    seeds = [HELD_OUT_SEED, HELD_OUT_SEED + 1] if args.seeds == "held-out" else [int(s) for s in args.seeds.split(",")]
    marks = [m for m in MARKS_MIN if m <= args.minutes]
    print(f"{'seed':>8s} {'motion':>12s} | " + " ".join(f"{f'{m} min':>7s}" for m in marks)
          + f" | {'SSIM':>5s} {'train':>6s} {'G':>6s} {'RSS MB':>7s} | {'pct10 rec st/mov':>17s} "
                                                  f"{'refined st/mov':>15s}")
    for seed in seeds:
        clip = rendered_clip(seed, 50)
        frames = render_scene(seed, n_frames=50, size=(640, 480), noise_std=2.0).frames
        rec = run_pipeline(clip.tracks, ReconstructOptions(bundle_adjust=True, progress=False)).reconstruction
        align = to_truth(rec, clip)
        scale = scene_scale(clip)
        seen = rec.visible & clip.true_visible
        masks = {"static": seen & ~clip.dynamic[None], "moving": seen & clip.dynamic[None]}
        before = [pct_within(align(rec.points), clip.world_points, m, scale) for m in masks.values()]
        for motion in args.motion.split(","):
            config = RefineConfig(minutes=args.minutes, motion=motion, long_side=args.long_side)
            result = refine_gaussians(rec, frames, config, progress=False)
            m = result.metrics
            refined = np.nan_to_num(align(track_positions(result.scene, rec)), nan=1e9)
            after = [pct_within(refined, clip.world_points, mask, scale) for mask in masks.values()]
            print(f"{seed:>8d} {motion:>12s} | " + " ".join(f"{psnr_at(m['history'], t):7.2f}" for t in marks)
                  + f" | {m['held_out']['ssim']:5.3f} {m['train']['psnr']:6.2f} {m['gaussians']:6d} "
                    f"{m['peak_rss_mb']:7.0f} | {before[0]:8.3f}/{before[1]:.3f} {after[0]:9.3f}/{after[1]:.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
