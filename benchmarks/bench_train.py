"""Training throughput (windows/s) per preset: data generation and optimiser step timed separately.

    python benchmarks/bench_train.py [--presets small paper] [--batch-size 4] [--frames 22 50] [--steps 5]

Prints figures; no asserts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tracks4d.network.losses import tracks4d_loss
from tracks4d.network.model import ModelConfig, TracksTo4D
from training.datasets import SyntheticDataset, collate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["small", "paper"])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--frames", nargs="+", type=int, default=[22, 50])
    ap.add_argument("--tracks", type=int, default=100)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    data = SyntheticDataset()
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size} × {args.tracks} tracks")
    print(f"{'preset':7s} {'N':>3s} {'data s/batch':>13s} {'step s/batch':>13s} {'windows/s (step)':>17s} "
          f"{'windows/s (all)':>16s}")
    for preset in args.presets:
        model = TracksTo4D(ModelConfig.preset(preset)).to(args.device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        for n in args.frames:
            data_t = step_t = 0.0
            for i in range(args.steps + 1):
                t0 = time.perf_counter()
                b = collate([data.sample(rng, n, args.tracks) for _ in range(args.batch_size)]).to(args.device)
                t1 = time.perf_counter()
                out = model(b.inputs, b.frame_mask, b.point_mask)
                loss = tracks4d_loss(out, b.inputs[..., :2], b.visible, b.point_mask).total
                opt.zero_grad()
                loss.backward()
                opt.step()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                if i:  # first step is warm-up
                    data_t += t1 - t0
                    step_t += t2 - t1
            d, s = data_t / args.steps, step_t / args.steps
            print(f"{preset:7s} {n:3d} {d:13.3f} {s:13.3f} {args.batch_size / s:17.1f} "
                  f"{args.batch_size / (d + s):16.1f}", flush=True)


if __name__ == "__main__":
    main()
