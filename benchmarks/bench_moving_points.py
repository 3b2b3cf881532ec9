"""Moving points on generated clips with exact ground truth: how well the reconstruction places what moves, beside
references that show what a prior would give (issue 14).

    python benchmarks/bench_moving_points.py [CHECKPOINT] [--set held-out,sheet,render|tune|all] [--frames 50]
        [--moving CHECKPOINT|none] [--no-refine]

Sets (never trained on; ``tune`` is the one thresholds were chosen on):

- ``held-out`` / ``tune``: the synthetic generator (``training.synthetic``, default mover mix, noisy tracks, every
  seeded track) with camera paths orbit, walk, pan and static; held-out seeds 6_000_000 + i, tuning 6_100_000 + i;
- ``sheet``: the mover kind the conditioned network never trains on (``training.datasets.HELD_OUT_MOVER``) alone,
  moving cameras, seeds 6_200_000 + i;
- ``render``: the other world generator (:mod:`tracks4d.evaluation.render`: textured room, a box sliding on the
  ground, a card flying in front), rendered at 640×480 and tracked by the built-in LK tracker; seeds 6_300_000 + i.

Per scene, ``run_pipeline(tracks, bundle_adjust=True)`` is scored on the visible entries of the tracks on movers:

- ``pct10``: share of moving point-frames whose 3D error is within 10 % of the scene's median static depth, after the
  Sim(3) that best aligns our camera centres and static points with the true ones (defined for a fixed camera too);
- ``dyn AbsRel``: depth AbsRel of moving entries, each frame scaled by the median ratio of its static entries (the
  moving points' depth relative to the static scene around them — what the 3D error above depends on);
- ``all AbsRel``: depth AbsRel of every visible entry, per-frame median scaling; ``AUC γ``: movers against static.

``oracle``: pct10 of our moving points given their exact depth relative to our static scene (each frame's median
static ratio), on our rays, cameras and alignment — where it is low, the cameras or the static scene fail and no
moving-depth stage can help.

References in the same rows (true cameras, no alignment): ``frozen`` — every point frozen where it was first seen (a
moving point keeps its first position); ``near static`` — a moving point at the median true depth of the 8 static
tracks nearest to it in the image in that frame, on its true ray. A prior worth having beats both.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracks4d.contracts import Cameras, TrackSet  # noqa: E402
from tracks4d.evaluation.metrics import depth_metrics, motion_auc  # noqa: E402
from tracks4d.geometry.ground import GroundPlane, contact_depth, ground_contact  # noqa: E402
from tracks4d.geometry.points import on_rays  # noqa: E402
from tracks4d.geometry.transforms import apply_sim3, transform_points, umeyama_sim3  # noqa: E402
from tracks4d.geometry.triangulation import bearings  # noqa: E402
from tracks4d.network.checkpoint import default_checkpoint  # noqa: E402
from tracks4d.network.backends import load_backend  # noqa: E402
from tracks4d.pipeline import ReconstructOptions, resolve_backend, run_pipeline  # noqa: E402
from tracks4d.evaluation.render import _surface_points, render_scene  # noqa: E402
from tracks4d.io.video import Clip  # noqa: E402
from tracks4d.tracking import TrackerConfig, track_clip  # noqa: E402
from training.datasets import HELD_OUT_MOVER  # noqa: E402
from training.synthetic import MOVER_KINDS, SceneConfig, generate_scene  # noqa: E402

SCENES = ("orbit", "walk", "pan", "static")
SEEDS = {"held-out": 6_000_000, "tune": 6_100_000, "sheet": 6_200_000, "render": 6_300_000}
SETS = ("held-out", "sheet", "render")
TOLERANCE = 0.1   # of the median static depth
NEIGHBOURS = 8


@dataclass
class RenderedClip:
    """A rendered scene tracked by LK, with the fields of ``SyntheticScene`` the scores read."""

    tracks: TrackSet
    camera_to_world: np.ndarray
    world_points: np.ndarray
    depth: np.ndarray
    dynamic: np.ndarray
    true_visible: np.ndarray
    object_id: np.ndarray
    camera_kind: str = "handheld"


def rendered_clip(seed: int, n_frames: int) -> RenderedClip:
    """Render, track with LK and give every track its exact world point per frame (its query's surface point carried
    by its body)."""
    scene = render_scene(seed, n_frames=n_frames, size=(640, 480), noise_std=2.0)
    clip = Clip(scene.frames, np.arange(n_frames), 30.0, scene.image_size)
    tracks = track_clip(clip, TrackerConfig(), progress=False)
    tracks = TrackSet(tracks.tracks, tracks.visible, scene.intrinsics, tracks.image_size, tracks.query_frame)
    p = tracks.n_points
    qf = np.asarray(tracks.query_frame, dtype=int)
    queries = np.concatenate([qf[:, None].astype(np.float64), tracks.tracks[qf, np.arange(p)].astype(np.float64)], 1)
    face, local = _surface_points(scene, queries)
    body = np.array([scene.faces[f].body if f >= 0 else 0 for f in face])
    pose = scene.body_to_world[:, body]                                   # (N, P, 4, 4)
    world = np.einsum("npij,pj->npi", pose[..., :3, :3], local) + pose[..., :3, 3]
    depth = transform_points(scene.world_to_camera, world)[..., 2]
    true_visible = tracks.visible & (face >= 0)[None] & (depth > 0)
    return RenderedClip(tracks, scene.camera_to_world, world, depth, (body > 0) & (face >= 0), true_visible,
                        np.where(body > 0, body - 1, -1))


def scenes(name: str, count: int, frames: int):
    """(label, scene) of a set."""
    if name == "render":
        for i in range(count):
            yield f"render {i}", rendered_clip(SEEDS[name] + i, frames)
        return
    config = SceneConfig()
    kinds = SCENES
    if name == "sheet":
        config = replace(config, mover_weights=tuple(float(k == HELD_OUT_MOVER) for k in MOVER_KINDS))
        kinds = ("orbit", "walk")
    for i, kind in enumerate(k for k in kinds for _ in range(count)):
        yield f"{kind} {i}", generate_scene(SEEDS[name] + i, replace(config, camera=kind, n_frames=frames))


def scene_scale(scene) -> float:
    static = ~scene.dynamic
    return float(np.median(scene.depth[:, static][scene.true_visible[:, static]]))


def pct_within(points: np.ndarray, truth: np.ndarray, mask: np.ndarray, scale: float) -> float:
    """Share of ``mask`` entries of (N, P, 3) ``points`` within TOLERANCE × scale of ``truth``."""
    error = np.linalg.norm(points - truth, axis=-1)[mask]
    return float(np.mean(error < TOLERANCE * scale)) if error.size else float("nan")


def to_truth(rec, scene):
    """x ↦ our world in the true one: the Sim(3) fitted on camera centres and visible static points."""
    static = (rec.visible & scene.true_visible & ~scene.dynamic[None] & np.isfinite(rec.points).all(-1))
    src = np.concatenate([rec.camera_to_world[:, :3, 3], rec.points[static]])
    dst = np.concatenate([scene.camera_to_world[:, :3, 3], scene.world_points[static]])
    s, r, t = umeyama_sim3(src, dst)
    return lambda x: apply_sim3(s, r, t, x.reshape(-1, 3)).reshape(x.shape)


def points_from_depth(tracks, cameras: Cameras, depth: np.ndarray) -> np.ndarray:
    """(N, P, 3) world points at camera-frame ``depth`` on the tracks' rays (NaN where depth is)."""
    return transform_points(cameras.camera_to_world, on_rays(tracks, cameras, depth))


def contact_references(rec, scene) -> tuple[float, float, float]:
    """pct10 of the ground-contact prior alone (moving entries without an estimate count as misses): with true
    cameras, plane and objects; with ours (cameras, static points, moving set) — and the share it covers."""
    tracks, visible = scene.tracks.tracks, scene.tracks.visible
    moving = rec.visible & scene.true_visible & scene.dynamic[None]
    scale = scene_scale(scene)
    size = tuple(int(v) for v in scene.tracks.image_size)
    truth = Cameras(np.linalg.inv(scene.camera_to_world), scene.tracks.intrinsics_per_frame())
    depth = contact_depth(tracks, visible, truth, GroundPlane(np.array([0.0, 0.0, 1.0]), 0.0, 0), scene.object_id,
                          size)
    true_pct = pct_within(np.nan_to_num(points_from_depth(tracks, truth, depth), nan=1e9), scene.world_points,
                          moving, scale)
    ours = Cameras(rec.world_to_camera, rec.intrinsics)
    static = np.asarray(rec.meta["static_mask"], bool)
    depth = ground_contact(tracks, visible, ours, np.where(static[:, None], rec.static_points, np.nan), static,
                           size).depth
    estimated = to_truth(rec, scene)(points_from_depth(tracks, ours, depth))
    est_pct = pct_within(np.nan_to_num(estimated, nan=1e9), scene.world_points, moving, scale)
    return true_pct, est_pct, float(np.isfinite(depth)[moving].mean())


def dynamic_abs_rel(depth: np.ndarray, scene, visible: np.ndarray) -> float:
    """AbsRel of moving entries, each frame scaled by the median true/predicted ratio of its static entries."""
    static, moving = visible & ~scene.dynamic[None], visible & scene.dynamic[None]
    errors = []
    for t in range(depth.shape[0]):
        if not static[t].any() or not moving[t].any():
            continue
        ratio = np.median(scene.depth[t, static[t]] / depth[t, static[t]])
        errors.append(np.abs(ratio * depth[t, moving[t]] - scene.depth[t, moving[t]]) / scene.depth[t, moving[t]])
    return float(np.mean(np.concatenate(errors))) if errors else float("nan")


def depth_oracle(rec, scene) -> np.ndarray:
    """(N, P, 3): our moving points with exact depth — the true depth of each moving entry, scaled by its frame's
    median ratio of our static depth to the true one — on our rays and cameras. What our cameras and static scene
    allow: where this misses, no moving-depth stage can help."""
    depth = rec.depth.copy()
    static = rec.visible & scene.true_visible & ~scene.dynamic[None] & (rec.depth > 0)
    moving = rec.visible & scene.true_visible & scene.dynamic[None]
    for t in np.flatnonzero(static.any(1)):
        ratio = np.median(scene.depth[t, static[t]] / rec.depth[t, static[t]])
        depth[t, moving[t]] = scene.depth[t, moving[t]] / ratio
    return points_from_depth(scene.tracks.tracks, Cameras(rec.world_to_camera, rec.intrinsics), depth)


def frozen_reference(scene) -> np.ndarray:
    """(N, P, 3): every track frozen at its true position in the first frame that truly sees it."""
    first = scene.true_visible.argmax(0)
    return np.broadcast_to(scene.world_points[first, np.arange(len(first))], scene.world_points.shape)


def near_static_reference(scene) -> np.ndarray:
    """(N, P, 3): moving points at the median true depth of their NEIGHBOURS nearest static tracks (in the image),
    on their true rays; static points exact."""
    out = scene.world_points.copy()
    k = scene.tracks.intrinsics_per_frame()
    rays = bearings(scene.tracks.tracks.astype(np.float64), k)
    rays = rays / rays[..., 2:]
    c2w = scene.camera_to_world
    for t in range(scene.depth.shape[0]):
        static = np.flatnonzero(scene.true_visible[t] & ~scene.dynamic)
        moving = np.flatnonzero(scene.true_visible[t] & scene.dynamic)
        if static.size == 0 or moving.size == 0:
            continue
        pix = scene.tracks.tracks[t]
        dist = np.linalg.norm(pix[moving, None] - pix[None, static], axis=-1)
        nearest = static[np.argsort(dist, axis=1)[:, :NEIGHBOURS]]
        depth = np.median(scene.depth[t, nearest], axis=1)
        cam = rays[t, moving] * depth[:, None]
        out[t, moving] = cam @ c2w[t, :3, :3].T + c2w[t, :3, 3]
    return out


def score(rec, scene) -> dict:
    moving = rec.visible & scene.true_visible & scene.dynamic[None]
    scale = scene_scale(scene)
    return {
        "pct10": pct_within(to_truth(rec, scene)(rec.points), scene.world_points, moving, scale),
        "dyn_abs_rel": dynamic_abs_rel(rec.depth, scene, rec.visible & scene.true_visible & (rec.depth > 0)),
        "all_abs_rel": depth_metrics(rec.depth, scene.depth, rec.visible & scene.true_visible)["abs_rel"],
        "auc": motion_auc(rec.motion_level, scene.dynamic),
        "oracle": pct_within(to_truth(rec, scene)(depth_oracle(rec, scene)), scene.world_points, moving, scale),
        "frozen": pct_within(frozen_reference(scene), scene.world_points, moving, scale),
        "near_static": pct_within(near_static_reference(scene), scene.world_points, moving, scale),
        **dict(zip(("contact_true", "contact_est", "contact_cover"), contact_references(rec, scene))),
    }


def line(name: str, label: str, movers: str, row: dict) -> str:
    return (f"{name:>8s} {label:>12s} {movers:>6s} | {row['pct10']:6.3f} {row['dyn_abs_rel']:9.3f} "
            f"{row['all_abs_rel']:9.3f} {row['auc']:6.3f} {row['seconds']:5.1f} | {row['oracle']:6.3f} "
            f"{row['frozen']:6.3f} {row['near_static']:7.3f} {row['contact_true']:7.3f} {row['contact_est']:6.3f} "
            f"{row['contact_cover']:5.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", nargs="?", default=None)
    ap.add_argument("--set", default=",".join(SETS), help=f"comma-separated sets among {SETS + ('tune',)}")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--scenes", type=int, default=2, help="scenes per camera path (render: scenes)")
    ap.add_argument("--moving", default=None, help="geometry-conditioned checkpoint (default: shipped; none: off)")
    ap.add_argument("--no-refine", action="store_true")
    args = ap.parse_args()
    checkpoint = args.checkpoint or default_checkpoint("cpu")
    opts = ReconstructOptions(checkpoint=checkpoint, bundle_adjust=True, progress=False,
                              moving_checkpoint=args.moving, refine_moving=not args.no_refine)
    network = load_backend(checkpoint, resolve_backend(opts), opts.device)
    print(f"{'set':>8s} {'scene':>12s} {'movers':>6s} | {'pct10':>6s} {'dynAbsRel':>9s} {'allAbsRel':>9s} "
          f"{'AUC γ':>6s} {'s':>5s} | {'oracle':>6s} {'frozen':>6s} {'near st':>7s} {'gc true':>7s} {'gc est':>6s} "
          f"{'cover':>5s}")
    for name in args.set.split(","):
        rows = []
        for label, scene in scenes(name, 3 if name == "render" and args.scenes == 2 else args.scenes, args.frames):
            t0 = time.perf_counter()
            rec = run_pipeline(scene.tracks, opts, network=network).reconstruction
            row = {**score(rec, scene), "seconds": time.perf_counter() - t0}
            rows.append(row)
            print(line(name, label, f"{scene.dynamic.mean():6.2f}", row), flush=True)
        mean = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}
        print(line(name, "mean", "", mean), flush=True)


if __name__ == "__main__":
    main()
