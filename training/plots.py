"""Training curves as a PNG: loss terms and held-out metrics against the step, read from ``log.csv``."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

__all__ = ["plot_training_log"]

PANELS = (
    ("loss (weighted total)", ("loss",)),
    ("reprojection (normalised)", ("reprojection",)),
    ("held-out ATE / median depth (untrained at step 0)", ("val_ate_rel",)),
    ("held-out depth AbsRel (untrained at step 0)", ("val_abs_rel",)),
)


def plot_training_log(log_csv: str | Path, png: str | Path) -> Path:
    """Draw the four panels of :data:`PANELS` from a trainer log; returns the PNG path."""
    rows = list(csv.DictReader(open(log_csv, newline="")))
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for ax, (title, keys) in zip(axes.flat, PANELS):
        for key in keys:
            held_out = key.startswith("val_")
            pts = [(int(r["step"]), float(r[key])) for r in rows
                   if r.get(key) and (held_out or r["phase"] == "train")]
            if pts:
                ax.plot(*zip(*pts), "o-" if held_out else "-", ms=4, lw=1.2 if held_out else 0.8,
                        label="held-out scenes" if held_out else "training batches")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.suptitle(f"tracks4d-train: {Path(log_csv).parent.name}")
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
