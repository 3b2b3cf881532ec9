"""Geometry of the reconstruction on generated clips with exact ground truth: motion levels, cameras, static depth,
time — per scene, on a tuning set and a held-out set — and how time grows with clip length.

    python benchmarks/bench_geometry.py [CHECKPOINT] [--set held-out|tune|both] [--no-ba] [--scaling]
                                        [--markdown PATH]

Scenes come from the synthetic generator (``training.synthetic``: static ground, walls and clutter, 1–3 movers,
phone-like intrinsics given to the pipeline, tracker-like noise: jitter, drift, outliers, lost tracks, wrong
visibility flags) with every seeded track (a 15×15 grid every 20 frames, like the built-in tracker). Camera paths:
orbit, walk, pan (small translation), static (a fixed camera), tripod_walk (still for half the clip, then walking)
at 50 frames, and orbit and walk at 150 frames. Tuning seeds are 4_100_000 + i, held-out seeds 4_000_000 + i;
thresholds were only ever tuned on the tuning set.

Per scene, ``run_pipeline(tracks, bundle_adjust=True)`` (``--no-ba``: without) is scored:

- ``AUC γ``: area under the ROC curve of the motion level γ separating tracks on movers from static ones (1 =
  every mover above every static track; 0.5 = a coin);
- ``ATE %``: RMS camera-centre error after a Sim(3) fit, in % of the median true depth of the static tracks (the
  scene's scale; a path-length percentage is meaningless for a fixed camera); ``rot°``: mean rotation error of the
  cameras after the one world rotation that best aligns them, degrees;
- ``AbsRel st``: depth AbsRel of the static tracks (per-frame median scaling) — unobservable for a fixed camera;
- ``s``: seconds of the pipeline after loading the model (``meta["timings"]["total_s"] − load_model_s``).

``--scaling`` instead times one orbit clip at 50, 100, 150 and 300 frames and prints seconds per stage.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from tracks4d.evaluation.metrics import absolute_trajectory_error, depth_metrics, motion_auc, rotation_angle_deg
from tracks4d.network.checkpoint import default_checkpoint
from tracks4d.network.backends import load_backend
from tracks4d.pipeline import ReconstructOptions, resolve_backend, run_pipeline
from training.synthetic import SceneConfig, generate_scene

SCENES = (("orbit", 50), ("walk", 50), ("pan", 50), ("static", 50), ("tripod_walk", 50), ("orbit", 150),
          ("walk", 150))
SEEDS = {"held-out": 4_000_000, "tune": 4_100_000}


def rotation_errors_deg(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(N,) angles between ``truth`` (N, 3, 3) camera-to-world rotations and ``pred`` after the one world rotation
    that best aligns them (independent of the centres, so a fixed camera is scored too)."""
    u, _, vt = np.linalg.svd(np.einsum("nij,nkj->ik", truth, pred))
    align = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    return rotation_angle_deg(np.swapaxes(align @ pred, 1, 2) @ truth)


def score(rec, scene) -> dict:
    static = ~scene.dynamic
    truth = scene.camera_to_world
    scale = float(np.median(scene.depth[:, static][scene.true_visible[:, static]]))
    ate = absolute_trajectory_error(rec.camera_to_world, truth)
    rot = rotation_errors_deg(rec.camera_to_world[:, :3, :3], truth[:, :3, :3])
    mask = rec.visible & static[None] & (scene.depth > 0)
    timings = rec.meta.get("timings", {})
    return {"auc": motion_auc(rec.motion_level, scene.dynamic), "ate": 100 * ate / scale, "rot": float(rot.mean()),
            "abs_rel": depth_metrics(rec.depth, scene.depth, mask)["abs_rel"],
            "seconds": timings.get("total_s", float("nan")) - timings.get("load_model_s", 0.0)}


def _cameras(meta: dict) -> str:
    """The camera stage's decision in a few words (empty for a pipeline without stages)."""
    cameras = meta.get("stages", {}).get("cameras")
    return "" if cameras is None else f"{cameras['model']}, {cameras['source'].split(':')[0]}"


def run_set(name: str, opts: ReconstructOptions, network, lengths: list[int] | None) -> list[dict]:
    rows = []
    for i, (kind, frames) in enumerate(SCENES):
        if lengths and frames not in lengths:
            continue
        scene = generate_scene(SEEDS[name] + i, replace(SceneConfig(), camera=kind, n_frames=frames))
        rec = run_pipeline(scene.tracks, opts, network=network).reconstruction
        row = {"set": name, "scene": f"{kind} {frames}f", **score(rec, scene),
               "movers": float(scene.dynamic.mean()), "tracks": scene.tracks.n_points,
               "verdict": _cameras(rec.meta)}
        rows.append(row)
        print(f"{row['set']:>8s} {row['scene']:>16s} {row['tracks']:6d} {row['movers']:6.2f} | {row['auc']:6.3f} "
              f"{row['ate']:7.3f} {row['rot']:6.3f} {row['abs_rel']:8.3f} {row['seconds']:6.1f}  {row['verdict']}",
              flush=True)
    return rows


def scaling(opts: ReconstructOptions, network) -> None:
    print("\nframes → seconds per stage (orbit clip, held-out seed)")
    for frames in (50, 100, 150, 300):
        scene = generate_scene(SEEDS["held-out"], replace(SceneConfig(), camera="orbit", n_frames=frames,
                                                          motion_frames=50))
        start = time.perf_counter()
        rec = run_pipeline(scene.tracks, opts, network=network).reconstruction
        wall = time.perf_counter() - start
        stages = {k: v for k, v in rec.meta["timings"].items() if k not in ("total_s", "load_model_s")}
        print(f"{frames:4d} frames, {scene.tracks.n_points:5d} tracks: {wall:6.2f} s  |  "
              + "  ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in stages.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=None)
    ap.add_argument("--set", choices=("held-out", "tune", "both"), default="both")
    ap.add_argument("--no-ba", action="store_true")
    ap.add_argument("--scaling", action="store_true", help="only the frames → seconds table")
    ap.add_argument("--frames", type=int, nargs="*", help="only the scenes of these lengths (default: all)")
    ap.add_argument("--backend", default=None, help="torch or onnx (default: the pipeline's)")
    ap.add_argument("--precision", default=None, help="auto, fp32 or bf16 (default: the pipeline's)")
    ap.add_argument("--markdown", help="also write the per-scene table here")
    args = ap.parse_args()
    checkpoint = args.checkpoint or default_checkpoint("cpu")
    extra = {key: value for key, value in (("backend", args.backend), ("precision", args.precision))
             if value is not None}
    opts = ReconstructOptions(checkpoint=checkpoint, bundle_adjust=not args.no_ba, progress=False, **extra)
    network = load_backend(checkpoint, resolve_backend(opts), opts.device)
    if args.scaling:
        scaling(opts, network)
        return
    print(f"{'set':>8s} {'scene':>16s} {'tracks':>6s} {'movers':>6s} | {'AUC γ':>6s} {'ATE %':>7s} {'rot°':>6s} "
          f"{'AbsRel st':>8s} {'s':>6s}  cameras")
    rows = []
    for name in (("tune", "held-out") if args.set == "both" else (args.set,)):
        rows += run_set(name, opts, network, args.frames)
        part = [r for r in rows if r["set"] == name]
        moving = [r["abs_rel"] for r in part if not r["scene"].startswith("static")]
        print(f"{name:>8s} {'mean':>16s} {'':6s} {'':6s} | {np.mean([r['auc'] for r in part]):6.3f} "
              f"{np.mean([r['ate'] for r in part]):7.3f} {np.mean([r['rot'] for r in part]):6.3f} "
              f"{np.mean(moving):8.3f} {np.mean([r['seconds'] for r in part]):6.1f}  (AbsRel: moving cameras; "
              f"min AUC {min(r['auc'] for r in part):.3f})")
    if args.markdown:
        lines = ["| set | scene | AUC γ | ATE % depth | rot ° | static AbsRel | s | cameras |", "|---" * 8 + "|"]
        lines += [f"| {r['set']} | {r['scene']} | {r['auc']:.3f} | {r['ate']:.3f} | {r['rot']:.3f} | "
                  f"{r['abs_rel']:.3f} | {r['seconds']:.1f} | {r['verdict']} |" for r in rows]
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
