"""Are the conditioned network's training inputs like the pipeline's? (issue 14: geometry inputs are simulated —
true cameras with about the solved cameras' error, no bundle adjustment per window — and checked here.)

    python benchmarks/check_conditioning.py [--scenes 2] [--set held-out]

For each scene of a moving-points benchmark set (``bench_moving_points``), the geometry inputs
(:func:`training.conditioned.window_inputs`) are computed twice: under the cameras ``run_pipeline(bundle_adjust=True)``
solved (and its rotation-only verdict), and the way training simulates them. Columns compare them with the truth:
share of entries with a known static depth and its median |log error|; AUC of the motion score (movers against
static); whether a ground was found; share of moving entries with a contact depth and its median |log error|.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_moving_points import scenes  # noqa: E402
from tracks4d.contracts import Cameras  # noqa: E402
from tracks4d.evaluation.metrics import motion_auc  # noqa: E402
from tracks4d.network.conditioned import FEATURES  # noqa: E402
from tracks4d.pipeline import ReconstructOptions, run_pipeline  # noqa: E402
from training.conditioned import _perturbed, _rotation_only, window_inputs  # noqa: E402


def stats(cond, scene) -> dict:
    f = cond.features
    visible = scene.tracks.visible & scene.true_visible
    known = (f[..., 5] > 0.5) & visible
    truth = np.log(np.maximum(scene.depth, 1e-9) / (np.median(scene.depth[known]) if known.sum() >= 8 else 1.0))
    moving = visible & scene.dynamic[None]
    contact = moving & (f[..., 7] > 0.5)
    return {"known": known.mean(), "static_err": np.median(np.abs(f[..., 4] - truth)[known]) if known.any() else np.nan,
            "auc": motion_auc(f[0, :, 3], scene.dynamic), "ground": f[0, 0, FEATURES.index("ground_known")],
            "cover": contact.sum() / max(moving.sum(), 1),
            "contact_err": np.median(np.abs(f[..., 6] - truth)[contact]) if contact.any() else np.nan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=int, default=2)
    ap.add_argument("--set", default="held-out")
    args = ap.parse_args()
    opts = ReconstructOptions(bundle_adjust=True, progress=False, moving_checkpoint="none", refine_moving=False)
    keys = ("known", "static_err", "auc", "ground", "cover", "contact_err")
    print(f"{'scene':>10s} {'inputs':>9s} " + " ".join(f"{k:>11s}" for k in keys))
    rows = {"pipeline": [], "simulated": []}
    rng = np.random.default_rng(0)
    for label, scene in scenes(args.set, args.scenes, 50):
        t = scene.tracks
        size = tuple(int(v) for v in t.image_size)
        rec = run_pipeline(t, opts).reconstruction
        solved = Cameras(rec.world_to_camera, rec.intrinsics)
        rotation = rec.meta["stages"]["cameras"]["model"] == "rotation"
        for name, cams, rot in (("pipeline", solved, rotation), ("simulated", _perturbed(scene, rng),
                                                                  _rotation_only(scene))):
            row = stats(window_inputs(t.tracks, t.visible, cams, rot, size)[0], scene)
            rows[name].append(row)
            print(f"{label:>10s} {name:>9s} " + " ".join(f"{row[k]:11.3f}" for k in keys), flush=True)
    for name, rs in rows.items():
        print(f"{'mean':>10s} {name:>9s} " + " ".join(f"{np.nanmean([r[k] for r in rs]):11.3f}" for k in keys))


if __name__ == "__main__":
    main()
