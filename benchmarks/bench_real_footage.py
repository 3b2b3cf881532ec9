"""The whole pipeline as a new user runs it — a video file in, the built-in tracker, bundle adjustment, no intrinsics
given — on generated clips with exact ground truth, clean and "phone-like" side by side (issue 21, item 7).

    python benchmarks/bench_real_footage.py [--set held-out|tune] [--kinds orbit walk pan fast fixed close]
        [--seeds 1] [--frames 50] [--size 640 480] [--variant clean|phone|both] [--cache DIR] [--json PATH]

Clips (:func:`tracks4d.evaluation.render.render_scene`: a textured room, two static boxes, a box sliding on the
ground and a card flying in front): one per kind and seed, seeds 7_000_000 + i (``held-out``) or 7_100_000 + i
(``tune``, the set thresholds may be chosen on). Kinds are camera paths — ``orbit``, ``walk``, ``pan``, ``fast`` (a
3.5× faster handheld sweep with 3× the shake), ``fixed`` (a tripod) — and ``close``: a large "animal" walking 1–2
units in front of the camera, which follows it (40–75 % of the tracks move; a handheld or an orbit camera,
alternating with the seed, the first held-out clip handheld, the first tuning clip orbit). Close clips are averaged separately: movers dominate them.

Variants: ``clean`` renders with 2 grey levels of Gaussian noise and encodes at CRF 18; ``phone`` renders with
motion blur (5 subframes over half the frame interval; ``fast``: 9 over 0.8), then
:func:`tracks4d.evaluation.degrade.phone_like` (exposure drift and flicker, vignetting, shot + read noise) and CRF 30.
Videos and their ground truth are cached under ``--cache``; the pipeline always reruns:
``run_pipeline(mp4, ReconstructOptions(bundle_adjust=True, progress=False))`` (the network is loaded once, outside
the timing).

Ground truth of the output tracks: each track's query is (its query frame, its position there) — the query frame
from ``meta["query_frame"]`` when the pipeline records it, else from the built-in tracker rerun on the decoded clip
when that reproduces the output tracks exactly, else the track's first visible frame — then the exact track of the
surface point there (:func:`~tracks4d.evaluation.render.ground_truth_tracks`), its body
(:func:`~tracks4d.evaluation.render.query_bodies`) and its world point per frame (the point carried by its body).

Columns (per clip and variant):

- ``tracks``; ``lost``: share of tracks whose predicted-visible entries (query frame excluded) lie > 8 px from the
  truth (or have no truth) in more than a quarter of them; ``unfl.``: share of tracks that are lost and not flagged
  unreliable (what a user would take at face value); after the table, each clip's visible entries within and beyond
  8 px of the truth, counted as observations (TAP-Vid's per-track coverage counts a cut track's second part as
  missed by its first);
- ``cover``: share of truly visible entries the output calls visible (TAP-Vid strided scoring: 1 − ``missed`` of
  ``eval_tracker.scene_metrics``); ``δavg``, ``OA``: TAP-Vid position accuracy and occlusion accuracy;
- ``unrel``: share of well-tracked (not lost) tracks in motion state 2 (unreliable); ``falsmv``: share of true-static,
  not lost tracks in state 1 (moving); ``AUCγ``: ``motion_level`` ranking true movers above static tracks;
- ``ATE%``: camera-centre ATE after a Sim(3) fit, as % of the true path length (not for ``fixed``; ``pan`` moves
  < 0.1 units, so its ATE% is large and says little); ``rot°``: the largest angle between the output's and the
  truth's rotation relative to frame 0 (for ``fixed``: the rotation drift);
- ``pct10``: share of moving point-frames (visible, on true movers) within 10 % of the median true static depth of
  the truth after the Sim(3) fitted on camera centres and static points (``bench_moving_points.to_truth``);
  ``AbsRel``: depth AbsRel of every visible entry, per-frame median scaling (not for ``fixed``);
- ``fly``: entries of moving-state tracks whose 3D position jumps by > 10 % of the output's median static depth
  between successive visible frames while the median jump of its 8 nearest tracks in the image (visible in both
  frames) is < 2 % of it — the count and its share of those tracks' visible entries;
- ``mov``: true share of moving tracks; ``s``: pipeline seconds; ``states``: tracks in motion state 0/1/2 (from
  ``rec.motion_state``, else ``meta["static_mask"]``: static 0, the rest 1).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tracks4d.evaluation.degrade import encode_h264, phone_like  # noqa: E402
from tracks4d.evaluation.metrics import (absolute_trajectory_error, depth_metrics, motion_auc,  # noqa: E402
                                         rotation_angle_deg)
from tracks4d.evaluation.render import (RenderedScene, _surface_points, ground_truth_tracks,  # noqa: E402
                                        render_scene)
from tracks4d.geometry.transforms import transform_points  # noqa: E402
from tracks4d.network.checkpoint import default_checkpoint  # noqa: E402
from tracks4d.network.backends import load_backend  # noqa: E402
from tracks4d.pipeline import ReconstructOptions, resolve_backend, run_pipeline  # noqa: E402
from bench_moving_points import pct_within, to_truth  # noqa: E402
from eval_tracker import scene_metrics  # noqa: E402

KINDS = ("orbit", "walk", "pan", "fast", "fixed", "close")
SEEDS = {"held-out": 7_000_000, "tune": 7_100_000}
CACHE_VERSION = 1          # bump when the renderer or the degradations change
LOST_PX, LOST_SHARE = 8.0, 0.25
FLY_JUMP, FLY_CALM, NEIGHBOURS = 0.10, 0.02, 8


def clip_spec(kind: str, seed: int) -> dict:
    """render_scene's camera options for a clip kind and seed (close: handheld or orbit, alternating with the seed
    and between the sets, so that one seed per set sees both)."""
    if kind == "close":
        return {"camera": "handheld" if (seed + seed // 100_000) % 2 == 0 else "orbit", "close_mover": True}
    return {"camera": kind, "close_mover": False}


def variant_options(kind: str, variant: str) -> dict:
    """How a variant renders, degrades and encodes."""
    if variant == "clean":
        return {"noise_std": 2.0, "subframes": 1, "shutter": 0.5, "phone": False, "crf": 18}
    if variant == "phone":
        fast = kind == "fast"
        return {"noise_std": 0.0, "subframes": 9 if fast else 5, "shutter": 0.8 if fast else 0.5, "phone": True,
                "crf": 30}
    raise ValueError(f"unknown variant {variant!r}")


def _pixel_free(scene_arrays: dict) -> RenderedScene:
    """A RenderedScene for ground truth only: faces, intrinsics and poses; frames, depth and face_id are zero-stride
    placeholders of the right shape (ground truth never reads their values)."""
    n, (w, h) = scene_arrays["n_frames"], scene_arrays["image_size"]
    return RenderedScene(np.broadcast_to(np.zeros((1, 1, 1, 3), np.uint8), (n, h, w, 3)),
                         scene_arrays["intrinsics"], scene_arrays["camera_to_world"], scene_arrays["body_to_world"],
                         scene_arrays["faces"], np.broadcast_to(np.float32(np.inf), (n, h, w)),
                         np.broadcast_to(np.int16(-1), (n, h, w)))


def make_clip(kind: str, seed: int, variant: str, frames: int, size: tuple[int, int], cache: Path,
              clip_name: str, span: float = 1.0) -> tuple[Path, RenderedScene, float]:
    """The clip's mp4 and ground-truth scene (``span``: :func:`render_scene`'s), rendered once and cached. Returns
    (mp4 path, scene, render seconds)."""
    spec = clip_spec(kind, seed)
    label = kind if spec["camera"] == kind else f"{kind}-{spec['camera']}"
    stem = f"{label}_{seed}_{frames}f_{size[0]}x{size[1]}_v{CACHE_VERSION}" + (f"_span{span:g}" if span != 1 else "")
    mp4, truth = cache / f"{stem}_{variant}.mp4", cache / f"{stem}_{variant}.pkl"
    if mp4.is_file() and truth.is_file():
        with open(truth, "rb") as f:
            stored = pickle.load(f)
        return mp4, _pixel_free(stored), stored["render_s"]
    cache.mkdir(parents=True, exist_ok=True)
    opts = variant_options(kind, variant)
    start = time.perf_counter()
    scene = render_scene(seed, frames, size, opts["noise_std"], subframes=opts["subframes"], shutter=opts["shutter"],
                         span=span, **spec)
    images = phone_like(scene.frames, seed) if opts["phone"] else scene.frames
    render_s = time.perf_counter() - start
    encode_h264(images, mp4.with_suffix(".tmp.mp4"), fps=30, crf=opts["crf"]).replace(mp4)
    stored = {"n_frames": frames, "image_size": scene.image_size, "intrinsics": scene.intrinsics,
              "camera_to_world": scene.camera_to_world, "body_to_world": scene.body_to_world, "faces": scene.faces,
              "render_s": render_s, "spec": {**spec, **opts, "seed": seed, "clip": clip_name}}
    with open(truth.with_suffix(".tmp"), "wb") as f:
        pickle.dump(stored, f)
    truth.with_suffix(".tmp").replace(truth)
    return mp4, _pixel_free(stored), render_s


@dataclass
class Truth:
    """Ground truth of the output's tracks, in the fields ``bench_moving_points.to_truth`` reads.

    tracks (N, P, 2) · occluded (N, P) · query_frame (P,) · surface (P,) bool: the query shows a surface ·
    dynamic (P,) bool: on a mover · world_points (N, P, 3) · depth (N, P) · true_visible (N, P) ·
    camera_to_world (N, 4, 4)."""

    tracks: np.ndarray
    occluded: np.ndarray
    query_frame: np.ndarray
    surface: np.ndarray
    dynamic: np.ndarray
    world_points: np.ndarray
    depth: np.ndarray
    true_visible: np.ndarray
    camera_to_world: np.ndarray


def query_frames_of(result, opts: ReconstructOptions) -> tuple[np.ndarray, str]:
    """Each output track's query frame (P,) and where it came from (module docstring)."""
    rec = result.reconstruction
    stored = rec.meta.get("query_frame")
    if stored is not None and len(stored) == rec.n_points:
        return np.asarray(stored, dtype=int), "meta"
    if result.clip is not None:
        try:
            from tracks4d.tracking import TrackerConfig, track_clip
            again = track_clip(result.clip.decoded(), TrackerConfig(grid=opts.grid, query_every=opts.query_every),
                               tracker=opts.tracker, progress=False)
            if (again.query_frame is not None and again.tracks.shape == rec.tracks.shape
                    and np.array_equal(again.visible, rec.visible) and np.array_equal(again.tracks, rec.tracks)):
                return np.asarray(again.query_frame, dtype=int), "tracker rerun"
        except Exception as exc:            # a tracker mid-change must not stop the scoring
            print(f"  (tracker rerun failed: {type(exc).__name__}: {exc})", flush=True)
    return np.asarray(rec.visible).argmax(0).astype(int), "first visible"


def ground_truth(scene: RenderedScene, tracks: np.ndarray, query_frame: np.ndarray) -> Truth:
    p = tracks.shape[1]
    queries = np.column_stack([query_frame.astype(np.float64), tracks[query_frame, np.arange(p)].astype(np.float64)])
    gt_tracks, occluded = ground_truth_tracks(scene, queries)
    face, local = _surface_points(scene, queries)
    surface = face >= 0
    body = np.array([scene.faces[f].body if f >= 0 else 0 for f in face])
    pose = scene.body_to_world[:, body]                                       # (N, P, 4, 4)
    world = np.einsum("npij,pj->npi", pose[..., :3, :3], local) + pose[..., :3, 3]
    depth = transform_points(scene.world_to_camera, world)[..., 2]
    true_visible = ~occluded & surface[None]
    return Truth(gt_tracks, occluded, query_frame, surface, (body > 0) & surface, world, depth, true_visible,
                 scene.camera_to_world)


def motion_states(rec) -> tuple[np.ndarray, str]:
    """(P,) int8 0 static / 1 moving / 2 unreliable, and where it came from."""
    state = getattr(rec, "motion_state", None)
    if state is not None:
        return np.asarray(state, dtype=np.int8), "motion_state"
    static = np.asarray(rec.meta["static_mask"], bool)
    return np.where(static, 0, 1).astype(np.int8), "static_mask"


def lost_tracks(rec, truth: Truth) -> np.ndarray:
    """(P,) bool: > LOST_SHARE of a track's predicted-visible entries (query frame excluded) are > LOST_PX from the
    truth or have none."""
    n, p = rec.visible.shape
    scored = rec.visible & (np.arange(n)[:, None] != truth.query_frame[None])
    with np.errstate(invalid="ignore"):
        far = ~(np.linalg.norm(rec.tracks.astype(np.float64) - truth.tracks, axis=-1) <= LOST_PX)
    count = scored.sum(0)
    share = np.where(count > 0, (far & scored).sum(0) / np.maximum(count, 1), 0.0)
    return (share > LOST_SHARE) | ~truth.surface


def rotation_drift_deg(pred_c2w: np.ndarray, true_c2w: np.ndarray) -> float:
    """Largest angle (degrees) between the output's and the truth's rotation relative to frame 0."""
    rel_p = np.swapaxes(pred_c2w[:1, :3, :3], -1, -2) @ pred_c2w[:, :3, :3]
    rel_t = np.swapaxes(true_c2w[:1, :3, :3], -1, -2) @ true_c2w[:, :3, :3]
    return float(rotation_angle_deg(np.swapaxes(rel_t, -1, -2) @ rel_p).max())


def flying(rec, state: np.ndarray) -> tuple[int, float]:
    """Entries of moving-state tracks that jump (FLY_JUMP × the median static depth) between successive visible
    frames while their NEIGHBOURS nearest tracks in the image stay calm (median jump < FLY_CALM × it): count, and
    share of those tracks' visible entries."""
    visible, points, pix = rec.visible, rec.points, rec.tracks
    static_entries = visible & (state == 0)[None] & (rec.depth > 0)
    if not static_entries.any():
        return 0, float("nan")
    scale = float(np.median(rec.depth[static_entries]))
    moving = np.flatnonzero(state == 1)
    total = int(visible[:, moving].sum())
    count = 0
    for p in moving:
        frames = np.flatnonzero(visible[:, p])
        for a, b in zip(frames[:-1], frames[1:]):
            jump = np.linalg.norm(points[b, p] - points[a, p])
            if not jump > FLY_JUMP * scale:
                continue
            both = np.flatnonzero(visible[a] & visible[b])
            both = both[both != p]
            if both.size == 0:
                continue
            near = both[np.argsort(np.linalg.norm(pix[b, both] - pix[b, p], axis=1))[:NEIGHBOURS]]
            calm = np.median(np.linalg.norm(points[b, near] - points[a, near], axis=1))
            count += bool(calm < FLY_CALM * scale)
    return count, count / total if total else float("nan")


def score(rec, truth: Truth, kind: str) -> dict:
    state, state_source = motion_states(rec)
    n, p = rec.visible.shape
    tap = scene_metrics(rec.tracks.astype(np.float64), rec.visible, truth.tracks, truth.occluded, truth.query_frame,
                        truth.dynamic, np.ones(2), "strided")
    lost = lost_tracks(rec, truth)
    good = ~lost
    with np.errstate(invalid="ignore"):
        near = np.linalg.norm(rec.tracks.astype(np.float64) - truth.tracks, axis=-1) <= LOST_PX
    static_good = good & ~truth.dynamic & truth.surface
    fixed = kind == "fixed"
    centres = truth.camera_to_world[:, :3, 3]
    path = float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum())
    ate = absolute_trajectory_error(rec.camera_to_world, truth.camera_to_world) if not fixed and path > 0 \
        else float("nan")
    moving_entries = rec.visible & truth.true_visible & truth.dynamic[None]
    static_depth = truth.depth[:, ~truth.dynamic][truth.true_visible[:, ~truth.dynamic]]
    scale = float(np.median(static_depth))
    points = np.where(np.isfinite(rec.points), rec.points, 1e9)
    try:
        pct10 = pct_within(to_truth(rec, truth)(points), truth.world_points, moving_entries, scale)
    except (ValueError, np.linalg.LinAlgError):
        pct10 = float("nan")
    depth_ok = rec.visible & truth.true_visible & (truth.depth > 0)
    abs_rel = float("nan") if fixed else depth_metrics(rec.depth, truth.depth, depth_ok)["abs_rel"]
    fly_count, fly_share = flying(rec, state)
    return {
        "good_entries": int((rec.visible & truth.true_visible & near).sum()),
        "off_entries": int((rec.visible & ~near).sum()),
        "tracks": int(p), "lost": float(lost.mean()), "unflagged": float(np.mean(lost & (state != 2))),
        "coverage": 1.0 - tap["missed"],
        "delta_avg": tap["delta_avg"], "occlusion_accuracy": tap["occlusion_accuracy"],
        "average_jaccard": tap["average_jaccard"], "median_px": tap["median_error"],
        "unreliable_ok": float(np.mean(state[good] == 2)) if good.any() else float("nan"),
        "false_movers": float(np.mean(state[static_good] == 1)) if static_good.any() else float("nan"),
        "auc": motion_auc(rec.motion_level[truth.surface], truth.dynamic[truth.surface]),
        "ate_pct": 100.0 * ate / path if path > 0 else float("nan"), "ate": ate, "path": path,
        "rot_deg": rotation_drift_deg(rec.camera_to_world, truth.camera_to_world),
        "pct10_dyn": pct10, "abs_rel": abs_rel, "fly": fly_count, "fly_share": fly_share,
        "moving_true": float(truth.dynamic[truth.surface].mean()) if truth.surface.any() else float("nan"),
        "states": [int((state == s).sum()) for s in (0, 1, 2)], "state_source": state_source,
        "focal_est": float(np.mean(rec.intrinsics[:, 0, 0])),
    }


HEADER = (f"{'clip':>15s} {'var':>5s} {'tracks':>6s} {'lost':>5s} {'unfl.':>5s} {'cover':>5s} {'δavg':>5s} {'OA':>5s} "
          f"{'unrel':>5s} {'falsmv':>6s} {'AUCγ':>5s} {'ATE%':>6s} {'rot°':>6s} {'pct10':>5s} {'AbsRel':>6s} "
          f"{'fly':>10s} {'mov':>4s} {'s':>5s} {'states 0/1/2':>13s}")


def line(name: str, variant: str, r: dict) -> str:
    f = lambda v, w=5, d=3: f"{v:{w}.{d}f}" if v == v else f"{'–':>{w}s}"  # noqa: E731
    fly = f"{r['fly']:.0f}/{r['fly_share']:.3f}" if r["fly_share"] == r["fly_share"] else f"{r['fly']:.0f}/–"
    states = "/".join(f"{s:.0f}" for s in r["states"])
    return (f"{name:>15s} {variant:>5s} {r['tracks']:6.0f} {f(r['lost'])} {f(r['unflagged'])} {f(r['coverage'])} "
            f"{f(r['delta_avg'])} "
            f"{f(r['occlusion_accuracy'])} {f(r['unreliable_ok'])} {f(r['false_movers'], 6)} {f(r['auc'])} "
            f"{f(r['ate_pct'], 6, 2)} {f(r['rot_deg'], 6, 2)} {f(r['pct10_dyn'])} {f(r['abs_rel'], 6)} "
            f"{fly:>10s} {f(r['moving_true'], 4, 2)} {f(r['seconds'], 5, 1)} {states:>13s}")


NUMERIC = ("good_entries", "off_entries", "tracks", "lost", "unflagged", "coverage", "delta_avg", "occlusion_accuracy", "average_jaccard", "median_px",
           "unreliable_ok", "false_movers", "auc", "ate_pct", "ate", "path", "rot_deg", "pct10_dyn", "abs_rel", "fly",
           "fly_share", "moving_true", "seconds", "render_s", "focal_err")


def mean_row(rows: list[dict]) -> dict:
    out = {}
    for key in NUMERIC:
        values = [r[key] for r in rows if r[key] == r[key]]
        out[key] = float(np.mean(values)) if values else float("nan")
    out["states"] = [float(np.sum([r["states"][s] for r in rows])) for s in range(3)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=tuple(SEEDS), default="held-out")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--seeds", type=int, default=1, help="clips per kind")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--size", nargs=2, type=int, default=[640, 480], metavar=("W", "H"))
    ap.add_argument("--variant", choices=("clean", "phone", "both"), default="both")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/t4d_footage_cache"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    size = tuple(args.size)
    variants = ("clean", "phone") if args.variant == "both" else (args.variant,)
    opts = ReconstructOptions(bundle_adjust=True, progress=False)
    checkpoint = default_checkpoint(opts.device)
    network = load_backend(checkpoint, resolve_backend(opts), opts.device)
    print(f"set {args.set}, {args.frames} frames at {size[0]}×{size[1]}, checkpoint {Path(checkpoint).name}; "
          f"run_pipeline(mp4, bundle_adjust=True), intrinsics unknown", flush=True)
    print(HEADER, flush=True)
    rows = []
    for kind in args.kinds:
        for i in range(args.seeds):
            seed = SEEDS[args.set] + i
            spec = clip_spec(kind, seed)
            name = f"{kind}/{spec['camera']}" if kind == "close" else kind
            name = f"{name} {i}" if args.seeds > 1 else name
            for variant in variants:
                mp4, scene, render_s = make_clip(kind, seed, variant, args.frames, size, args.cache, name)
                start = time.perf_counter()
                result = run_pipeline(mp4, opts, network=network)
                seconds = time.perf_counter() - start
                rec = result.reconstruction
                query_frame, query_source = query_frames_of(result, opts)
                truth = ground_truth(scene, rec.tracks, query_frame)
                row = {**score(rec, truth, kind), "seconds": seconds, "render_s": render_s,
                       "clip": name, "kind": kind, "seed": seed, "variant": variant, "query_source": query_source,
                       "camera": spec["camera"], "verdict": rec.meta.get("verdict"),
                       "timings": {k: float(v) for k, v in result.timings.items()}}
                row["focal_err"] = abs(row["focal_est"] - scene.intrinsics[0, 0]) / scene.intrinsics[0, 0]
                rows.append(row)
                print(line(name, variant, row), flush=True)
    means = {}
    for group, members in (("not close", lambda r: r["kind"] != "close"), ("close", lambda r: r["kind"] == "close")):
        for variant in variants:
            chosen = [r for r in rows if members(r) and r["variant"] == variant]
            if chosen:
                means[f"{group} {variant}"] = mean_row(chosen)
                print(line(f"mean {group}", variant, means[f"{group} {variant}"]), flush=True)
    print("query frames from: " + ", ".join(sorted({r["query_source"] for r in rows}))
          + "; motion states from: " + ", ".join(sorted({r["state_source"] for r in rows})))
    print("motion_state counts (0 static / 1 moving / 2 unreliable): "
          + "; ".join(f"{r['clip']} {r['variant']} {'/'.join(map(str, r['states']))}" for r in rows))
    print("render seconds (as cached): " + ", ".join(f"{r['clip']} {r['variant']} {r['render_s']:.1f}" for r in rows))
    print(f"visible entries within / beyond {LOST_PX:g} px of the truth (counted as observations, so a cut track's "
          "two parts count once): " + ", ".join(f"{r['clip']} {r['variant']} {r['good_entries']}/{r['off_entries']}"
                                                for r in rows))
    print("focal error (|f − f_true| / f_true): " + ", ".join(f"{r['clip']} {r['variant']} {r['focal_err']:.3f}"
                                                             for r in rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v
                                                  for k, v in vars(args).items()},
                                         "checkpoint": str(checkpoint), "rows": rows, "means": means}, indent=1))


if __name__ == "__main__":
    main()
