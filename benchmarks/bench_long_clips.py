"""Minutes of video (issue 22): the whole pipeline on generated clips of 50–1,200 frames — seconds and peak memory
per stage, and accuracy against the clip's own 50-frame windows.

    python benchmarks/bench_long_clips.py [--set held-out|tune] [--kinds orbit walk] [--frames 50 150 300 600]
        [--take slow|long] [--windows 2] [--cache DIR] [--json PATH]

Clips: :func:`tracks4d.evaluation.render.render_scene` through ``bench_real_footage.make_clip`` (clean variant: 2 grey
levels of noise, CRF 18), seeds 7_300_000 + kind index (``held-out``) or 7_400_000 + kind index (``tune``). Two takes:
``slow`` — a clip of N frames follows the same camera path and movers as the 50-frame one, sampled N times (a slower
take: each 50-frame window sees 50/N of the motion); ``long`` — the same speed as the 50-frame clip, the paths
continued (``render_scene(span=(N − 1) / 49)``: the orbit goes on around the scene and comes back to where it started
after 4–6 of the 50-frame clip's lengths, the movers and other paths turn round at their ends).

Each clip runs in its own process (``--one``), so that its peak memory (``ru_maxrss``) is its own; the process loads
the network first and reports the resident memory then as the baseline. Per stage: the pipeline's ``timings``, and
the peak resident memory as each stage ended.
Accuracy as in ``bench_real_footage.score``: ATE in % of the camera path, depth AbsRel, moving points within 10 % of
the scene depth (pct10), γ AUC. Windows: ``--windows`` 50-frame pieces of the long clip (evenly spread, re-encoded
from the decoded frames at CRF 18), each run alone through the pipeline and scored against the same ground truth —
a long clip should be no worse than its own windows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = ("orbit", "walk", "pan", "fast", "fixed", "close", "handheld")   # seeds follow the order: append only
SEEDS = {"held-out": 7_300_000, "tune": 7_400_000}
STAGES = ("decode", "tracking", "windows", "cameras", "motion", "consistency", "contact", "moving", "points", "refine", "plausible")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _window_scene(stored: dict, start: int, stop: int):
    from bench_real_footage import _pixel_free
    part = dict(stored, n_frames=stop - start, camera_to_world=stored["camera_to_world"][start:stop],
                body_to_world=stored["body_to_world"][start:stop])
    return _pixel_free(part)


# the pipeline's stage functions whose end the per-stage peak memory is read at (the stage each belongs to)
PEAK_AT = {"read_tracks": "tracking", "propose": "windows", "solve_cameras": "cameras", "motion_states": "motion",
           "static_consistency": "consistency", "ground_contact": "contact", "place_moving": "moving",
           "place_points": "points", "refine": "refine", "keep_plausible": "plausible"}


def _record_peaks(pipeline_module) -> dict[str, float]:
    """Wrap the pipeline's stage functions so that the process's peak resident memory (MB) is read as each ends:
    {stage: MB}, filled as the pipeline runs (a stage that raised the peak shows a step)."""
    peaks: dict[str, float] = {}
    for name, stage in PEAK_AT.items():
        def wrapped(*args, __run=getattr(pipeline_module, name), __stage=stage, **kwargs):
            out = __run(*args, **kwargs)
            peaks[__stage] = _rss_mb()
            return out
        setattr(pipeline_module, name, wrapped)
    return peaks


def span_of(take: str, frames: int) -> float:
    """render_scene's span for a take of ``frames`` frames."""
    return 1.0 if take == "slow" else (frames - 1) / 49


def run_one(kind: str, seed: int, frames: int, cache: Path, window: tuple[int, int] | None, take: str) -> dict:
    """One clip (or one window of it) through the pipeline in this process: its row."""
    import pickle

    from bench_real_footage import ground_truth, make_clip, query_frames_of, score
    from tracks4d.evaluation.degrade import encode_h264
    from tracks4d.io.video import read_video
    from tracks4d.network.checkpoint import default_checkpoint
    from tracks4d.network.backends import load_backend
    from tracks4d import pipeline
    from tracks4d.pipeline import ReconstructOptions, resolve_backend, run_pipeline

    peaks = _record_peaks(pipeline)
    opts = ReconstructOptions(bundle_adjust=True, progress=False)
    network = load_backend(default_checkpoint(opts.device), resolve_backend(opts), opts.device)
    mp4, scene, _ = make_clip(kind, seed, "clean", frames, (640, 480), cache, kind, span_of(take, frames))
    if window is not None:
        start, stop = window
        piece = mp4.with_name(f"{mp4.stem}_w{start}-{stop}.mp4")
        if not piece.is_file():
            clip = read_video(mp4, long_side=None)
            encode_h264(clip.frames[start:stop], piece.with_suffix(".tmp.mp4"), fps=30, crf=18).replace(piece)
        with open(mp4.with_suffix(".pkl"), "rb") as f:
            scene = _window_scene(pickle.load(f), start, stop)
        mp4 = piece
    base = _rss_mb()
    begin = time.perf_counter()
    result = run_pipeline(mp4, opts, network=network)
    seconds = time.perf_counter() - begin
    peak = _rss_mb()
    rec = result.reconstruction
    query_frame, _ = query_frames_of(result, opts)
    truth = ground_truth(scene, rec.tracks, query_frame)
    row = score(rec, truth, kind)
    visible = np.asarray(rec.visible)
    return {**{k: row[k] for k in ("tracks", "lost", "auc", "ate_pct", "abs_rel", "pct10_dyn", "false_movers")},
            "kind": kind, "seed": seed, "frames": frames, "take": take, "window": window, "seconds": seconds,
            "per_frame_s": seconds / visible.shape[0], "base_mb": base, "peak_mb": peak, "peak_by_stage_mb": peaks,
            "tracks_per_frame": float(visible.sum(1).mean()), "verdict": rec.meta.get("verdict"),
            "fold_share": rec.meta["stages"]["consistency"]["worst_share"],
            "timings": {k[:-2]: float(v) for k, v in result.timings.items() if k.endswith("_s")}}


def spawn(kind: str, seed: int, frames: int, cache: Path, window: tuple[int, int] | None, take: str) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, str(seed), str(frames), "--cache", str(cache), "--take", take]
    if window is not None:
        cmd += ["--window", str(window[0]), str(window[1])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"kind": kind, "seed": seed, "frames": frames, "window": window,
                "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def line(r: dict) -> str:
    name = f"{r['kind']} {r['frames']}" + (f" [{r['window'][0]}:{r['window'][1]}]" if r.get("window") else "")
    if "error" in r:
        return f"{name:>22s}  failed: {r['error']}"
    stages = " ".join(f"{r['timings'].get(s, 0.0):6.1f}" for s in STAGES)
    return (f"{name:>22s} {r['tracks']:6d} {r['tracks_per_frame']:6.0f} {r['seconds']:7.1f} {r['per_frame_s']:6.3f} "
            f"{r['peak_mb']:6.0f} {r['peak_mb'] - r['base_mb']:6.0f} {r['ate_pct']:6.2f} {r['abs_rel']:6.3f} "
            f"{r['pct10_dyn']:5.2f} {r['auc']:5.3f} {r['fold_share']:5.2f}  {stages}")


HEADER = (f"{'clip':>22s} {'tracks':>6s} {'/frame':>6s} {'s':>7s} {'s/frm':>6s} {'peakMB':>6s} {'+MB':>6s} "
          f"{'ATE%':>6s} {'AbsRel':>6s} {'pct10':>5s} {'AUCγ':>5s} {'fold':>5s}  " + " ".join(f"{s[:6]:>6s}" for s in STAGES))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=tuple(SEEDS), default="held-out")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=["orbit", "walk"])
    ap.add_argument("--frames", nargs="+", type=int, default=[50, 150, 300, 600])
    ap.add_argument("--take", choices=("slow", "long"), default="slow")
    ap.add_argument("--windows", type=int, default=2, help="50-frame windows of the longest clip scored alone")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/t4d_footage_cache"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--one", nargs=3, metavar=("KIND", "SEED", "FRAMES"), help=argparse.SUPPRESS)
    ap.add_argument("--window", nargs=2, type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        kind, seed, frames = args.one[0], int(args.one[1]), int(args.one[2])
        print(json.dumps(run_one(kind, seed, frames, args.cache, tuple(args.window) if args.window else None,
                                 args.take)))
        return
    print(f"set {args.set}, {args.take} take; clean clips at 640×480; run_pipeline(mp4, bundle_adjust=True); one process per clip; "
          f"peakMB = the process's peak resident memory, +MB = above it once the network was loaded", flush=True)
    print(HEADER, flush=True)
    rows = []
    for kind in args.kinds:
        seed = SEEDS[args.set] + KINDS.index(kind)
        for frames in args.frames:
            rows.append(spawn(kind, seed, frames, args.cache, None, args.take))
            print(line(rows[-1]), flush=True)
        longest = max(args.frames)
        if args.windows and longest > 50:
            for start in np.linspace(0, longest - 50, args.windows).astype(int):
                rows.append({**spawn(kind, seed, longest, args.cache, (int(start), int(start) + 50), args.take),
                             "frames": longest})
                print(line(rows[-1]), flush=True)
    print("peak resident memory (MB) as each stage ended: " + "; ".join(
        f"{r['kind']} {r['frames']}: " + " ".join(f"{k} {v:.0f}" for k, v in r["peak_by_stage_mb"].items())
        for r in rows if "peak_by_stage_mb" in r and not r.get("window")))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v
                                                  for k, v in vars(args).items()}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
