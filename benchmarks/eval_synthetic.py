"""Held-out synthetic accuracy of a checkpoint against the untrained network of the same preset.

    python benchmarks/eval_synthetic.py CHECKPOINT [--frames 22 50] [--scenes 12] [--tracks 100]

Scenes are the trainer's fixed validation scenes (training.trainer.held_out_scenes). Prints ATE (Sim(3)-aligned
camera centres, scene units), ATE / median depth, depth AbsRel and δ<1.25 (per-frame median scaling).
"""

from __future__ import annotations

import argparse

import torch

from tracks4d.network.checkpoint import load_model
from tracks4d.network.model import TracksTo4D
from training.trainer import held_out_scenes, validate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--frames", nargs="+", type=int, default=[22, 50])
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--tracks", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0, help="seed of the untrained network's initialisation")
    args = ap.parse_args()
    trained, _ = load_model(args.checkpoint)
    torch.manual_seed(args.seed)
    untrained = TracksTo4D(trained.config).eval()
    print(f"{'frames':>6s} {'network':9s} {'ATE':>7s} {'ATE/depth':>9s} {'AbsRel':>7s} {'δ<1.25':>7s}")
    for n in args.frames:
        scenes = held_out_scenes(args.scenes, n, args.tracks)
        for name, model in (("untrained", untrained), ("trained", trained)):
            m = validate(model, scenes, torch.device("cpu"))
            print(f"{n:6d} {name:9s} {m['val_ate']:7.4f} {m['val_ate_rel']:9.4f} {m['val_abs_rel']:7.4f} "
                  f"{m['val_delta1']:7.3f}", flush=True)


if __name__ == "__main__":
    main()
