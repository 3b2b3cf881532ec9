"""Speed of the built-in LK tracker on one core: 50 frames at 640×480, grid 15 (the paper's schedule).

    python benchmarks/bench_tracker.py [--frames 50] [--grid 15] [--repeats 3]

Clips: a rendered textured scene (tracks4d.evaluation.render) and, when ../shared/data/real is present, the real clips resized
to 640×480. Prints seconds per clip (best of --repeats), tracks and visible fraction. No asserts.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from tracks4d.evaluation.render import render_scene
from tracks4d.tracking import TrackerConfig, track_frames
from tracks4d.io.video import read_video

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
CLIPS = ("cotracker_demo_videos/cat.mp4", "cotracker_demo_videos/bear.mp4", "tapip3d_demo_videos/sheep.mp4",
         "tapip3d_demo_videos/pstudio.mp4")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--grid", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    clips = {"rendered scene (seed 0)": render_scene(0, n_frames=args.frames, size=(640, 480)).frames}
    for name in CLIPS:
        if (REAL / name).exists():
            frames = read_video(REAL / name, max_frames=args.frames, long_side=None).frames
            clips[name] = np.stack([cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA) for f in frames])
    config = TrackerConfig(grid=args.grid)
    print(f"one core, {args.frames} frames at 640x480, grid {args.grid}, queries every {config.query_every} frames")
    print(f"{'clip':40s} {'seconds':>8s} {'tracks':>7s} {'visible':>8s}")
    for name, frames in clips.items():
        best = np.inf
        for _ in range(args.repeats):
            t = time.perf_counter()
            ts = track_frames(frames, config)
            best = min(best, time.perf_counter() - t)
        print(f"{name:40s} {best:8.2f} {ts.n_points:7d} {ts.visible.mean():8.1%}", flush=True)


if __name__ == "__main__":
    main()
