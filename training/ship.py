"""Turn a training run into a shipped checkpoint: fp16 weights, no optimiser state, provenance in ``extra``.

    python -m training.ship RUN_DIR [--which best|last] [-o checkpoints/tracks4d-small.pt] [--fp32]

Provenance recorded: the run's data, preset and steps, its wall time up to the shipped step (summed over the run
folder's ``log*.csv``, one per resumed phase), the hardware, the date, and the largest relative output difference
between the shipped (fp16) and the trained (fp32) weights on a held-out synthetic window (fp16 is kept only when it
is below ``MAX_FP16_DIFF``).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import platform
import sys
from pathlib import Path

import torch

from tracks4d.network.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from tracks4d.network.inference import network_inputs

from .synthetic import SceneConfig, generate_scene

__all__ = ["ship", "run_wall_time", "max_output_difference", "MAX_FP16_DIFF"]

MAX_FP16_DIFF = 2e-3
"""Largest accepted change of any camera centre / point coordinate, relative to the largest such coordinate."""


def run_wall_time(run: Path, up_to_step: int | None = None) -> float:
    """Seconds of training in a run folder up to ``up_to_step`` (None: all): for each ``log*.csv`` (one per resumed
    phase), the last logged time at or before that step minus the first."""
    total = 0.0
    for log in sorted(run.glob("log*.csv")):
        times = [float(r["time"]) for r in csv.DictReader(open(log))
                 if r.get("time") and (up_to_step is None or int(r["step"]) <= up_to_step)]
        if len(times) > 1:
            total += times[-1] - times[0]
    return total


def max_output_difference(a: torch.nn.Module, b: torch.nn.Module, seed: int = 2_000_001) -> float:
    """Largest absolute difference of centres and per-frame points of two models on one held-out window, relative to
    the largest absolute value among them."""
    ts = generate_scene(seed, SceneConfig(n_frames=50)).tracks
    inputs = network_inputs(ts)[None]
    with torch.inference_mode():
        oa, ob = a(inputs), b(inputs)
    values = torch.cat([oa.centre.flatten(), oa.points().flatten()])
    diffs = torch.cat([(oa.centre - ob.centre).flatten(), (oa.points() - ob.points()).flatten()])
    return float(diffs.abs().max() / values.abs().max().clamp(min=1e-12))


def ship(run: Path, output: Path, which: str = "best", half: bool = True) -> dict:
    """Write the shipped checkpoint; returns its provenance record."""
    source = run / f"{which}.pt"
    payload = load_checkpoint(source)
    model = model_from_checkpoint(payload, source).eval()
    extra = payload.get("extra", {})
    record = {"source": str(source), "preset": extra.get("preset"), "data": extra.get("data"),
              "steps": int(payload.get("step", 0)),
              "wall_time_s": round(run_wall_time(run, int(payload.get("step", 0))), 1),
              "hardware": f"{platform.machine()} {platform.processor() or platform.system()}, "
                          f"{torch.get_num_threads()} CPU threads" if not torch.cuda.is_available()
              else torch.cuda.get_device_name(0),
              "date": datetime.date.today().isoformat(), "weights": "fp16" if half else "fp32"}
    if half:
        tmp = output.with_name(output.name + ".check")
        save_checkpoint(tmp, model, half=True)
        shipped = model_from_checkpoint(load_checkpoint(tmp), tmp).eval()
        tmp.unlink()
        record["fp16_max_diff"] = max_output_difference(model, shipped)
        if record["fp16_max_diff"] > MAX_FP16_DIFF:
            record["weights"], half = "fp32", False
    save_checkpoint(output, model, step=record["steps"], extra={"provenance": record}, half=half)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="training run folder (holds best.pt / last.pt and log*.csv)")
    ap.add_argument("--which", choices=("best", "last"), default="best")
    ap.add_argument("-o", "--output", type=Path, default=Path("checkpoints/tracks4d-small.pt"))
    ap.add_argument("--fp32", action="store_true", help="keep fp32 weights")
    args = ap.parse_args(argv)
    try:
        record = ship(args.run, args.output, args.which, half=not args.fp32)
    except CheckpointError as exc:
        print(f"training.ship: error: {exc}", file=sys.stderr)
        return 2
    size = args.output.stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB): " + ", ".join(f"{k} {v}" for k, v in record.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
