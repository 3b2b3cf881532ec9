"""The ``tracks4d`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .checkpoint import CheckpointError, load_model
from .contracts import ContractError, Reconstruction, TrackSet, load_any
from .inference import run_network
from .model import PRESETS, TracksTo4D


def _info(args: argparse.Namespace) -> int:
    print(f"tracks4d {__version__}")
    for name, cfg in PRESETS.items():
        print(f"preset {name:6s}: {TracksTo4D(cfg).num_parameters():>11,d} parameters  "
              f"(width {cfg.width}, {cfg.layers} layers, {cfg.heads}×{cfg.head_dim} heads, MLP {cfg.mlp_dim})")
    return 0


def _check(args: argparse.Namespace) -> int:
    """Validate a track set or reconstruction file and print a one-line summary."""
    path = Path(args.file)
    obj = load_any(path)
    if isinstance(obj, Reconstruction):
        rec = obj
        print(f"{path}: reconstruction, {rec.n_frames} frames, {rec.n_points} points, "
              f"{rec.bases.shape[0]} bases")
    else:
        ts = obj
        print(f"{path}: track set, {ts.n_frames} frames, {ts.n_points} tracks, "
              f"{ts.visible.mean():.1%} visible, intrinsics {'yes' if ts.intrinsics is not None else 'no'}, "
              f"ground truth {'yes' if ts.ground_truth is not None else 'no'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Run the network once on a track file and write reconstruction.npz (no BA, no fine-tuning)."""
    model, _ = load_model(args.checkpoint, args.device)
    rec = run_network(model, TrackSet.load(args.tracks), args.device)
    rec.save(args.output)
    print(f"wrote {args.output}: {rec.n_frames} frames, {rec.n_points} points, "
          f"network {rec.meta['timings']['network_s']:.2f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracks4d", description=__doc__)
    p.add_argument("--version", action="version", version=f"tracks4d {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions and model presets").set_defaults(func=_info)
    c = sub.add_parser("check", help="validate a track set or reconstruction .npz")
    c.add_argument("file")
    c.set_defaults(func=_check)
    r = sub.add_parser("predict", help="one network pass on a track .npz → reconstruction.npz")
    r.add_argument("tracks")
    r.add_argument("-o", "--output", required=True)
    r.add_argument("--checkpoint", required=True)
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=_predict)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ContractError, CheckpointError, ValueError) as exc:
        print(f"tracks4d: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
