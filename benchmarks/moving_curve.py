"""Learning curve of the geometry-conditioned network: held-out moving-point accuracy against training CPU-hours.

    python benchmarks/moving_curve.py CHECKPOINT... [--set held-out] [--scenes 2] [--png docs/moving_curve.png]

Each checkpoint (snapshots of one ``training.conditioned`` run) runs the whole pipeline (``--ba``) on the sets of
``bench_moving_points`` (scenes generated and tracked once); its CPU-hours are those recorded in the checkpoint.
Prints pct10 and dynamic AbsRel per set and draws them against CPU-hours, with the frozen-scene oracle for scale.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_moving_points import scenes, score  # noqa: E402
from tracks4d.network.checkpoint import default_checkpoint, load_checkpoint  # noqa: E402
from tracks4d.network.backends import load_backend  # noqa: E402
from tracks4d.pipeline import ReconstructOptions, run_pipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--set", default="held-out")
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--png", default=None)
    ap.add_argument("--cache", default=None, help="JSON file of rows already measured (by checkpoint path, size)")
    args = ap.parse_args()
    cache = json.loads(Path(args.cache).read_text()) if args.cache and Path(args.cache).exists() else {}
    first = default_checkpoint("cpu")
    network = load_backend(first, "torch", "cpu")
    sets = {name: list(scenes(name, args.scenes, 50)) for name in args.set.split(",")}  # made once
    hours = {c: float(load_checkpoint(c).get("extra", {}).get("cpu_seconds", 0.0)) / 3600 for c in args.checkpoints}
    table = []
    print(f"{'checkpoint':>28s} {'CPU-h':>6s} " + " ".join(f"{n + ' pct10':>15s} {'dynAbsRel':>9s}" for n in sets))
    for ckpt in sorted(args.checkpoints, key=hours.get):
        key = f"{ckpt}|{Path(ckpt).stat().st_size}|{args.set}|{args.scenes}"
        if key in cache:
            row = cache[key]
        else:
            opts = ReconstructOptions(checkpoint=first, bundle_adjust=True, progress=False, moving_checkpoint=ckpt)
            row = {"checkpoint": ckpt, "hours": hours[ckpt]}
            for name, items in sets.items():
                scores = [score(run_pipeline(scene.tracks, opts, network=network).reconstruction, scene)
                          for _, scene in items]
                row[name] = {k: float(np.nanmean([s[k] for s in scores])) for k in scores[0]}
            cache[key] = row
            if args.cache:
                Path(args.cache).write_text(json.dumps(cache, indent=1))
        table.append(row)
        print(f"{Path(ckpt).name:>28s} {row['hours']:6.2f} " + " ".join(
            f"{row[n]['pct10']:15.3f} {row[n]['dyn_abs_rel']:9.3f}" for n in sets), flush=True)
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        x = [r["hours"] for r in table]
        for name in sets:
            axes[0].plot(x, [r[name]["pct10"] for r in table], "o-", label=f"{name}")
            axes[0].axhline(table[-1][name]["frozen"], ls="--", lw=0.8, color="0.5")
            axes[1].plot(x, [r[name]["dyn_abs_rel"] for r in table], "o-", label=name)
        axes[0].axhline(0.5, ls=":", color="r", lw=0.8, label="target 0.5")
        axes[1].axhline(0.15, ls=":", color="r", lw=0.8, label="target 0.15")
        axes[0].set_title("moving points within 10 % (dashed: frozen-scene oracle)")
        axes[1].set_title("dynamic depth AbsRel")
        for ax in axes:
            ax.set_xlabel("training CPU core-hours")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
