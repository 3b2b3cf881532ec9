"""Reconstruction accuracy and speed on a fixed suite of rendered scenes with exact ground truth, against COLMAP
(incremental) and GLOMAP (global).

    python benchmarks/bench_reconstruction.py CHECKPOINT [--scenes 3] [--frames 50] [--finetune 50] [--no-colmap]
                                              [--no-glomap] [--colmap-matching sequential|exhaustive] [--markdown PATH]

Scenes: ``render_scene(seed, n_frames, (640, 480), noise_std=2.0)`` for seeds 0..scenes-1 (moving camera, moving
objects). Each scene is written as PNG frames, tracked once with the built-in LK tracker (timed) and reconstructed by
``run_pipeline`` from that track set in stages:

- ``net``      the network alone (intrinsics known: the rendered K)
- ``+BA``      network + bundle adjustment (intrinsics known)
- ``+FT+BA``   test-time fine-tuning (``--finetune`` steps) + network + bundle adjustment (intrinsics known)
- ``unk-K``    intrinsics unknown: the pipeline guesses f = (W+H)/2, BA refines it; ``f err`` is
               |f − f_true| / f_true before BA (network output) → after BA
- ``colmap``   COLMAP through pycolmap (CPU SIFT, sequential or exhaustive matching, incremental mapping, the largest
               model; PINHOLE camera fixed to the rendered K). Cameras scored on the registered frames only.
- ``glomap``   GLOMAP through pycolmap ≥ 4 (``pycolmap.global_mapping``: rotation averaging → global positioning →
               BA → retriangulation; the largest model) on a copy of the same database as ``colmap`` (same
               features and matches), K trusted and fixed in its BA (no ``calibrate_view_graph``), CPU, seed 0; run
               in a child process (``glomap_peer.py``) so that a native abort becomes a failed row (0 registered).
               Scored like ``colmap``.

Peers' times are extraction + matching (measured once, shared by both peers: the same numbers in both rows'
breakdowns) + the peer's own mapping (``map``).

Cameras: ATE / RPE (δ=1; translation in scene units, rotation in degrees) after a Sim(3) fit of the camera centres
(``tracks4d.evaluation.metrics.trajectory_metrics``). Depth: AbsRel and δ<1.25 at the tracks (per-frame median scaling, scored
where the tracker marks the track visible), against the exact depth of the surface point seen at each track's query
pixel in its query frame, moved with its body to every frame; ``dyn`` is AbsRel over the tracks on moving bodies.
Times are seconds: tracking + fine-tuning + network + BA (model loading excluded; ``breakdown`` lists them).
``--no-colmap`` / ``--no-glomap`` drop a peer; with both, no features are extracted.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from tracks4d.contracts import TrackSet
from tracks4d.evaluation.metrics import depth_metrics_split, trajectory_metrics
from tracks4d.io.overlay import save_video
from tracks4d.pipeline import ReconstructOptions, run_pipeline
from tracks4d.evaluation.render import _surface_points, render_scene
from tracks4d.tracking import TrackerConfig, track_clip
from tracks4d.io.video import read_video

SIZE = (640, 480)
NOISE = 2.0


# ------------------------------------------------------------------------------------------------- ground truth
def gt_track_depth(scene, tracks: TrackSet) -> tuple[np.ndarray, np.ndarray]:
    """Exact camera-z (N, P) of the surface point under each track's query pixel at its query frame, in every frame
    (0 where the query shows no surface or the point is behind the camera), and (P,) bool: on a moving body."""
    p = tracks.n_points
    qf = np.asarray(tracks.query_frame, dtype=int)
    queries = np.concatenate([qf[:, None].astype(np.float64), tracks.tracks[qf, np.arange(p)].astype(np.float64)], 1)
    face_index, local = _surface_points(scene, queries)
    bodies = np.array([scene.faces[f].body if f >= 0 else 0 for f in face_index])
    pose = scene.world_to_camera[:, None] @ scene.body_to_world  # (N, B, 4, 4) body → camera
    rows = pose[:, bodies, 2]  # (N, P, 4) third row per track's body
    z = np.einsum("npj,pj->np", rows[..., :3], local) + rows[..., 3]
    z[:, face_index < 0] = 0.0
    z[z <= 0] = 0.0
    return z, (bodies > 0) & (face_index >= 0)


# ------------------------------------------------------------------------------------------------- ours
def score_rec(rec, scene, gt_depth, dynamic) -> dict:
    out = trajectory_metrics(rec.camera_to_world, scene.camera_to_world)
    split = depth_metrics_split(rec.depth, gt_depth, rec.visible, dynamic)
    out.update(abs_rel=split["all"]["abs_rel"], delta_1=split["all"]["delta_1"],
               abs_rel_dyn=split["dynamic"]["abs_rel"])
    return out


def run_ours(checkpoint, tracks: TrackSet, k: np.ndarray | None, **options):
    kw = {} if k is None else dict(fx=float(k[0, 0]), fy=float(k[1, 1]), cx=float(k[0, 2]), cy=float(k[1, 2]))
    res = run_pipeline(tracks, ReconstructOptions(checkpoint=checkpoint, progress=False, **kw, **options))
    return res.reconstruction


def stage_time(rec, tracking_s: float) -> tuple[float, str]:
    t = rec.meta.get("timings", {})
    parts = {"track": tracking_s, "ft": t.get("finetune_s", 0.0), "net": t.get("network_s", 0.0),
             "cams": t.get("cameras_s", 0.0), "geo": t.get("motion_s", 0.0) + t.get("points_s", 0.0)}
    return sum(parts.values()), " ".join(f"{k} {v:.2f}" for k, v in parts.items() if k == "track" or v > 0)


def ba_note(rec) -> str:
    notes = [f"FT loss {r['initial_loss']:.4g}→{r['best_loss']:.4g} (best step {r['best_step']})"
             for r in rec.meta.get("finetune", [])]
    ba = rec.meta.get("stages", {}).get("cameras", {}).get("bundle_adjustment")
    if ba:
        notes.append(f"BA {ba['skipped']}" if ba.get("skipped") else
                     f"BA rms {ba['initial_rms_px']:.2f}→{ba['final_rms_px']:.2f} px, {ba['n_points']} pts, "
                     f"{ba['n_frames']} frames")
    return "; ".join(notes)


# ------------------------------------------------------------------------------------------------- COLMAP / GLOMAP
GLOMAP_SCRIPT = Path(__file__).with_name("glomap_peer.py")
GLOMAP_TIMEOUT_S = 1800


def colmap_features(image_dir: Path, work: Path, k: np.ndarray, matching: str) -> tuple[Path, dict]:
    """pycolmap SIFT (CPU) → sequential / exhaustive matching into ``work/database.db``; (database, timings)."""
    import pycolmap

    pycolmap.logging.minloglevel = 2  # errors only
    db = work / "database.db"
    work.mkdir(parents=True, exist_ok=True)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    # COLMAP puts pixel centres at +0.5 (image corner at 0); the renderer's K has them at integers.
    reader.camera_params = f"{k[0, 0]},{k[1, 1]},{k[0, 2] + 0.5},{k[1, 2] + 0.5}"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.use_gpu = False
    extraction.sift.max_num_features = 4096
    timings = {}
    t = time.perf_counter()
    pycolmap.extract_features(db, image_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    timings["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    matching_opts = pycolmap.FeatureMatchingOptions()
    matching_opts.use_gpu = False
    if matching == "exhaustive":
        pycolmap.match_exhaustive(db, matching_options=matching_opts, device=pycolmap.Device.cpu)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 10
        pairing.loop_detection = False
        pycolmap.match_sequential(db, matching_options=matching_opts, pairing_options=pairing,
                                  device=pycolmap.Device.cpu)
    timings["match"] = time.perf_counter() - t
    return db, timings


def model_poses(models: list) -> dict:
    """Camera-to-world poses of the largest model (most registered images) by frame index (image name stem)."""
    result = {"frames": np.zeros(0, int), "c2w": np.zeros((0, 4, 4)), "n_models": len(models)}
    if not models:
        return result
    best = max(models, key=lambda r: r.num_reg_images())
    frames, c2w = [], []
    for image in best.images.values():
        if not image.has_pose:
            continue
        w2c = np.eye(4)
        w2c[:3] = image.cam_from_world().matrix()
        frames.append(int(Path(image.name).stem))
        c2w.append(np.linalg.inv(w2c))
    if frames:
        order = np.argsort(frames)
        result.update(frames=np.asarray(frames)[order], c2w=np.asarray(c2w)[order])
    return result


def colmap_incremental(db: Path, image_dir: Path, out: Path) -> dict:
    """Incremental mapping (K fixed) on a database with features and matches; poses of the largest model."""
    import pycolmap

    pycolmap.logging.minloglevel = 2  # errors only: incremental mapping logs every registration
    out.mkdir(parents=True, exist_ok=True)
    options = pycolmap.IncrementalPipelineOptions()
    options.ba_refine_focal_length = False
    options.ba_refine_principal_point = False
    options.ba_refine_extra_params = False
    options.mapper.abs_pose_refine_focal_length = False
    options.mapper.abs_pose_refine_extra_params = False
    options.random_seed = 0
    t = time.perf_counter()
    models = pycolmap.incremental_mapping(db, image_dir, out, options=options)
    seconds = time.perf_counter() - t
    return {**model_poses(list(models.values())), "timings": {"map": seconds}}


def glomap_global(db: Path, image_dir: Path, work: Path) -> dict:
    """GLOMAP global mapping (``glomap_peer.py``, K fixed) on a copy of ``db``, in a child process so that a native
    abort becomes an exception; poses of the largest model. ``timings["map"]``: global_mapping alone."""
    import pycolmap

    out = work / "sparse"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    copy = work / "database.db"
    shutil.copyfile(db, copy)  # opened read-write by the mapper, and a child abort must not touch the shared one
    try:
        proc = subprocess.run([sys.executable, str(GLOMAP_SCRIPT), str(copy), str(image_dir), str(out)],
                              capture_output=True, text=True, timeout=GLOMAP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"global_mapping timed out after {GLOMAP_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        code = signal.Signals(-proc.returncode).name if proc.returncode < 0 else f"exit {proc.returncode}"
        raise RuntimeError(f"global_mapping {code}: {lines[-1][-200:] if lines else 'no output'}")
    timing = json.loads((out / "timing.json").read_text())
    models = [pycolmap.Reconstruction(str(d)) for d in sorted(out.iterdir()) if (d / "images.bin").is_file()]
    return {**model_poses(models), "timings": {"map": timing["map_s"]}}


def run_colmap(image_dir: Path, work: Path, k: np.ndarray, n_frames: int, matching: str) -> dict:
    """pycolmap SIFT (CPU) → matching → incremental mapping; poses of the largest model by frame index."""
    db, timings = colmap_features(image_dir, work, k, matching)
    result = colmap_incremental(db, image_dir, work / "sparse")
    result["timings"] = {**timings, **result["timings"]}
    return result


def peer_row(name: str, method: str, result: dict | None, err: str, shared: dict, scene, n_frames: int,
             note: str) -> dict:
    """Table row of a COLMAP-family peer: registered fraction, cameras scored on the registered frames only; time =
    the shared extraction + matching + this peer's own mapping."""
    result = result or {"frames": np.zeros(0, int), "timings": {}}
    timings = {**shared, **result["timings"]}
    n_reg = len(result["frames"])
    row = {"scene": name, "method": method, "reg": n_reg / n_frames, "time_s": sum(timings.values()),
           "breakdown": " ".join(f"{a} {b:.1f}" for a, b in timings.items()),
           "note": err or f"{result.get('n_models', 0)} model(s); {note}"}
    if n_reg >= 3:
        row.update(trajectory_metrics(result["c2w"], scene.camera_to_world[result["frames"]]))
        if n_reg < n_frames:
            row["note"] += "; RPE over consecutive registered frames"
    elif not err:
        row["note"] += f"; {n_reg} frames registered: not scored"
    return row


# ------------------------------------------------------------------------------------------------- table
COLUMNS = [("scene", "{}"), ("method", "{}"), ("reg", "{:.2f}"), ("ATE", "{:.4f}"), ("RPE t", "{:.4f}"),
           ("RPE r°", "{:.3f}"), ("AbsRel", "{:.3f}"), ("δ<1.25", "{:.3f}"), ("dyn AbsRel", "{:.3f}"),
           ("f err", "{}"), ("time s", "{:.2f}"), ("breakdown", "{}"), ("note", "{}")]
KEYS = ["scene", "method", "reg", "ate", "rpe_trans", "rpe_rot_deg", "abs_rel", "delta_1", "abs_rel_dyn", "f_err",
        "time_s", "breakdown", "note"]


def fmt(value, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return pattern.format(value)


def table(rows: list[dict]) -> list[list[str]]:
    return [[fmt(r.get(key), pat) for key, (_, pat) in zip(KEYS, COLUMNS)] for r in rows]


def print_table(rows: list[dict]) -> None:
    body = table(rows)
    head = [c for c, _ in COLUMNS]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for b in body:
        print("  ".join(v.ljust(w) for v, w in zip(b, widths)))


def markdown(rows: list[dict], args, total_s: float) -> str:
    head = [c for c, _ in COLUMNS]
    lines = [f"Scenes: render_scene(seed, {args.frames}, {SIZE}, noise_std={NOISE}), seeds 0..{args.scenes - 1}; "
             f"checkpoint `{args.checkpoint}`; max tracks {args.max_tracks}; fine-tuning {args.finetune} steps; BA γ threshold {args.ba_gamma}; "
             f"COLMAP / GLOMAP {args.colmap_matching} matching (shared features + matches); total {total_s:.0f} s.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(v.replace("|", "/") for v in b) + " |" for b in table(rows)]
    return "\n".join(lines) + "\n"


def mean_rows(rows: list[dict]) -> list[dict]:
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == method]
        m = {"scene": "mean", "method": method}
        for key in ("reg", "ate", "rpe_trans", "rpe_rot_deg", "abs_rel", "delta_1", "abs_rel_dyn", "time_s"):
            vals = [r[key] for r in sel if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
            m[key] = float(np.mean(vals)) if vals else None
        errs = [r["_f_err"] for r in sel if "_f_err" in r]
        if errs:
            m["f_err"] = f"{np.mean([e[0] for e in errs]):.3f}→{np.mean([e[1] for e in errs]):.3f}"
        bad = [r for r in sel if r.get("reg") is not None and r.get("ate") is None]
        if bad:
            m["note"] = f"{len(bad)} scene(s) failed"
        out.append(m)
    return out


# ------------------------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--finetune", type=int, default=50, help="fine-tuning steps of the +FT stage (0: skip it)")
    ap.add_argument("--no-colmap", action="store_true", help="skip the incremental COLMAP peer")
    ap.add_argument("--no-glomap", action="store_true", help="skip the GLOMAP (global mapping) peer")
    ap.add_argument("--colmap-matching", choices=("sequential", "exhaustive"), default="sequential")
    ap.add_argument("--max-tracks", type=int, default=300,
                    help="random subset of the tracker's tracks given to the network (0: all). Fine-tuning costs "
                         "grow with the track count: ~10-17 s per step for ~740 tracks × 50 frames on 2 CPU cores")
    ap.add_argument("--ba-gamma", default="auto",
                    help="γ threshold of the static tracks ('auto': the pipeline's, 4 × the clip's noise / focal)")
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--keep", type=Path,
                    help="keep the rendered frames / mp4 / COLMAP and GLOMAP work here (default: temp)")
    args = ap.parse_args()
    ba_gamma = None if args.ba_gamma == "auto" else float(args.ba_gamma)

    start = time.perf_counter()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_recon_"))
    rows: list[dict] = []
    try:
        for seed in range(args.scenes):
            name = f"s{seed}"
            t = time.perf_counter()
            scene = render_scene(seed, n_frames=args.frames, size=SIZE, noise_std=NOISE)
            k = scene.intrinsics
            frame_dir = root / name / "frames"
            frame_dir.mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(scene.frames):
                cv2.imwrite(str(frame_dir / f"{i:06d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            if args.keep is not None:
                save_video(scene.frames, root / name / "clip.mp4")
            print(f"[{name}] rendered {args.frames} frames in {time.perf_counter() - t:.1f} s "
                  f"(f={k[0, 0]:.1f})", flush=True)

            t = time.perf_counter()
            clip = read_video(frame_dir, long_side=None)
            tracks = track_clip(clip, TrackerConfig())
            tracking_s = time.perf_counter() - t
            n_all = tracks.n_points
            if 0 < args.max_tracks < n_all:
                keep = np.sort(np.random.default_rng(seed).choice(n_all, args.max_tracks, replace=False))
                tracks = tracks.subset(points=keep)
            gt_depth, dynamic = gt_track_depth(scene, tracks)
            print(f"[{name}] tracked {n_all} tracks (using {tracks.n_points}) in {tracking_s:.2f} s "
                  f"({dynamic.mean():.0%} on moving bodies)", flush=True)

            stages = [("net", dict(bundle_adjust=False)), ("+BA", dict(bundle_adjust=True, ba_gamma=ba_gamma))]
            if args.finetune > 0:
                stages.append((f"+FT{args.finetune}+BA",
                               dict(bundle_adjust=True, ba_gamma=ba_gamma, finetune_steps=args.finetune)))
            for method, options in stages:
                rec = run_ours(args.checkpoint, tracks, k, **options)
                assert rec.tracks.shape == tracks.tracks.shape
                row = {"scene": name, "method": method, **score_rec(rec, scene, gt_depth, dynamic),
                       "note": ba_note(rec)}
                row["time_s"], row["breakdown"] = stage_time(rec, tracking_s)
                rows.append(row)
                print(f"[{name}] {method}: ATE {row['ate']:.4f}  AbsRel {row['abs_rel']:.3f}  "
                      f"{row['time_s']:.1f} s  {row['note']}", flush=True)

            # intrinsics unknown: guess (W+H)/2, the network may rescale it, BA refines the focal
            f_true = float(k[0, 0])
            before = run_ours(args.checkpoint, tracks, None, bundle_adjust=False)
            rec = run_ours(args.checkpoint, tracks, None, bundle_adjust=True, ba_gamma=ba_gamma)
            e0 = abs(before.intrinsics[0, 0, 0] - f_true) / f_true
            e1 = abs(rec.intrinsics[0, 0, 0] - f_true) / f_true
            row = {"scene": name, "method": "unk-K +BA", **score_rec(rec, scene, gt_depth, dynamic),
                   "f_err": f"{e0:.3f}→{e1:.3f}", "_f_err": (e0, e1),
                   "note": f"f {before.intrinsics[0, 0, 0]:.0f}→{rec.intrinsics[0, 0, 0]:.0f} (true {f_true:.0f}); "
                           + ba_note(rec)}
            row["time_s"], row["breakdown"] = stage_time(rec, tracking_s)
            rows.append(row)
            print(f"[{name}] unknown K: f err {e0:.3f} → {e1:.3f}  ATE {row['ate']:.4f}", flush=True)

            peers = [m for m, off in (("colmap", args.no_colmap), ("glomap", args.no_glomap)) if not off]
            if peers:  # one database (features + matches) shared by both peers: same frames, same matches
                work = root / name / "colmap"
                if work.exists():
                    shutil.rmtree(work)
                try:
                    db, shared = colmap_features(frame_dir, work, k, args.colmap_matching)
                    shared_err = ""
                except Exception as exc:  # noqa: BLE001 – a failed peer is a table entry, not a crash
                    db, shared, shared_err = None, {}, f"error (features/matching): {exc}"
                print(f"[{name}] features + matches ({args.colmap_matching}): "
                      + (shared_err or " ".join(f"{a} {b:.1f} s" for a, b in shared.items())), flush=True)
            for method in peers:
                result, err = None, shared_err
                if db is not None:
                    try:
                        if method == "colmap":
                            result = colmap_incremental(db, frame_dir, work / "sparse")
                        else:
                            result = glomap_global(db, frame_dir, root / name / "glomap")
                    except Exception as exc:  # noqa: BLE001 – a failed peer is a table entry, not a crash
                        err = f"error: {exc}"
                note = f"{args.colmap_matching} matching" + ("; features+matches shared with colmap"
                                                             if method == "glomap" and len(peers) > 1 else "")
                row = peer_row(name, method, result, err, shared, scene, args.frames, note)
                rows.append(row)
                print(f"[{name}] {method}: {round(row['reg'] * args.frames)}/{args.frames} registered, "
                      f"{row['time_s']:.1f} s ({row['breakdown']})  ATE {fmt(row.get('ate'), '{:.4f}')}  "
                      f"{row['note']}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    total = time.perf_counter() - start
    all_rows = rows + mean_rows(rows)
    print()
    print_table(all_rows)
    print(f"\ntotal {total:.0f} s")
    if args.markdown:
        args.markdown.write_text(markdown(all_rows, args, total))
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
