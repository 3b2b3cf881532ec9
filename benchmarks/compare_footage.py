"""Before → after tables from two ``bench_real_footage.py --json`` files (same set, seeds and clips).

    python benchmarks/compare_footage.py BEFORE.json AFTER.json [--per-clip]

Prints, per variant (clean, phone-like), the mean of each metric over the ordinary clips and, separately, over the
close (mover-dominated) ones, before → after; ``--per-clip`` adds every clip's row. ATE % of the path is left out for
pans (their centre moves < 0.1 units: the share is noise) and fixed cameras; depth AbsRel for fixed cameras.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

METRICS = (("lost", "lost"), ("unflagged", "unfl."), ("coverage", "cover"), ("delta_avg", "δavg"),
           ("occlusion_accuracy", "OA"), ("unreliable_ok", "unrel"), ("false_movers", "falsmv"), ("auc", "AUCγ"),
           ("ate_pct", "ATE%"), ("rot_deg", "rot°"), ("pct10_dyn", "pct10"), ("abs_rel", "AbsRel"),
           ("fly", "fly"), ("seconds", "s"))


def value(row: dict, key: str) -> float:
    if key == "ate_pct" and row["kind"] in ("pan", "fixed"):
        return float("nan")
    if key == "unflagged" and "unflagged" not in row:          # older runs: every lost track is unflagged
        return row["lost"]
    v = row.get(key, float("nan"))
    return float("nan") if v is None else float(v)


def mean(rows: list[dict], key: str) -> float:
    values = [value(r, key) for r in rows]
    values = [v for v in values if v == v]
    return float(np.mean(values)) if values else float("nan")


def cell(a: float, b: float) -> str:
    fmt = lambda v: "–" if v != v else (f"{v:.0f}" if abs(v) >= 10 else f"{v:.3f}")  # noqa: E731
    return f"{fmt(a)} → {fmt(b)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--per-clip", action="store_true")
    args = ap.parse_args()
    before, after = (json.load(open(p))["rows"] for p in (args.before, args.after))
    key = lambda r: (r["clip"], r["seed"], r["variant"])  # noqa: E731
    pairs = {key(r): [r, None] for r in before}
    for r in after:
        if key(r) in pairs:
            pairs[key(r)][1] = r
    pairs = {k: v for k, v in pairs.items() if v[1] is not None}
    print("| group | " + " | ".join(name for _, name in METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for variant in ("clean", "phone"):
        for group, close in (("ordinary", False), ("close", True)):
            chosen = [v for k, v in pairs.items() if k[2] == variant and (v[0]["kind"] == "close") == close]
            if not chosen:
                continue
            b, a = [p[0] for p in chosen], [p[1] for p in chosen]
            print(f"| {variant} {group} ({len(chosen)}) | "
                  + " | ".join(cell(mean(b, m), mean(a, m)) for m, _ in METRICS) + " |")
    if args.per_clip:
        for (clip, seed, variant), (b, a) in sorted(pairs.items()):
            print(f"| {clip} {seed} {variant} | " + " | ".join(cell(value(b, m), value(a, m)) for m, _ in METRICS)
                  + " |")


if __name__ == "__main__":
    main()
