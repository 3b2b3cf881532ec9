"""Fixed-camera check: on pstudio.mp4 the camera never moves while people do; the estimate must not move either.

    python benchmarks/fixed_camera_check.py CHECKPOINT [--video PATH] [--max-frames N]

Prints, without and with bundle adjustment, the rotation drift (angle of R_0ᵀR_t, degrees: max and mean over
frames) and the translation drift (‖c_t − c_0‖ relative to the median track depth: max and mean).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tracks4d.evaluation.metrics import rotation_angle_deg
from tracks4d.pipeline import ReconstructOptions, run_pipeline

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "tapip3d_demo_videos" / "pstudio.mp4"


def drift(rec) -> dict[str, float]:
    rot = rotation_angle_deg(np.swapaxes(rec.camera_to_world[:1, :3, :3], -1, -2) @ rec.camera_to_world[:, :3, :3])
    centres = rec.camera_to_world[:, :3, 3]
    rel = np.linalg.norm(centres - centres[0], axis=1) / float(np.median(rec.depth[rec.visible]))
    return {"rot_max_deg": float(rot.max()), "rot_mean_deg": float(rot.mean()), "trans_max_rel": float(rel.max()),
            "trans_mean_rel": float(rel.mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--video", default=str(DEFAULT))
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--ba-gamma", type=float, default=None, help="γ threshold for BA (default: the clip's 40th pct)")
    args = ap.parse_args()
    print(f"{'stage':10s} {'frames':>6s} {'rot max°':>9s} {'rot mean°':>9s} {'trans max':>9s} {'trans mean':>10s}  BA")
    for ba in (False, True):
        res = run_pipeline(args.video, ReconstructOptions(checkpoint=args.checkpoint, bundle_adjust=ba,
                                                          ba_gamma=args.ba_gamma, max_frames=args.max_frames,
                                                          progress=False))
        rec, d = res.reconstruction, drift(res.reconstruction)
        note = rec.meta.get("bundle_adjustment", {}).get("skipped", "") if ba else ""
        print(f"{'+BA' if ba else 'network':10s} {rec.n_frames:6d} {d['rot_max_deg']:9.3f} {d['rot_mean_deg']:9.3f} "
              f"{d['trans_max_rel']:9.4f} {d['trans_mean_rel']:10.4f}  {note}", flush=True)


if __name__ == "__main__":
    main()
