"""``python -m training.conditioned``: train the geometry-conditioned network (issue 14) on two CPU cores.

Each training window is a fresh synthetic clip (``training.synthetic``, noisy tracks, 16–40 frames, 24–96 tracks)
whose geometry inputs come from the pipeline's own functions run on it — the motion model's rotation-only verdict,
static fit, motion levels, ground contact (:func:`window_inputs`) — under the true cameras perturbed by about the
solved cameras' error, not from a bundle adjustment per window (``benchmarks/check_conditioning.py`` compares the
two). Targets are exact: every visible entry's camera-frame log-depth over the window's scale (L1, moving entries
weighted up; its uncertainty by a Laplace NLL on the detached error) and the dynamic flag (class-balanced BCE).

Stops and resumes at any time (``--resume``: model, optimiser, step, CPU-seconds so far); writes ``last.pt`` (to
resume), ``average.pt`` (an exponential moving average of the weights, validated and shipped: single steps swing the
held-out error) and ``log.csv`` with held-out error against CPU-hours. The held-out windows use seeds from 7_000_000 and include the
mover kind never trained on (``training.datasets.HELD_OUT_MOVER``).
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tracks4d.contracts import Cameras
from tracks4d.geometry.ground import ground_contact
from tracks4d.geometry.motion import motion_levels, static_fit
from tracks4d.geometry.motion_model import select_motion_model
from tracks4d.geometry.transforms import transform_points
from tracks4d.network.checkpoint import save_checkpoint
from tracks4d.network.conditioned import (ConditionedConfig, ConditionedNet, Conditioning, conditioning,
                                          load_conditioned)

from .datasets import HELD_OUT_MOVER
from .synthetic import MOVER_KINDS, SceneConfig, SyntheticScene, _smooth_noise, generate_window

__all__ = ["window_inputs", "TrainingWindow", "make_windows", "RealClip", "real_clips", "real_window", "training_config", "main"]

VALIDATION_SEED = 7_000_000
REAL_HELD_OUT = ("pstudio", "lady-running")
"""Real videos never trained on (the fixed-camera check clip; lady-running for the pictures)."""
MOVING_WEIGHT = 3.0          # moving entries count this much more than static ones in the depth loss
ROTATION_NOISE_DEG = (0.01, 0.1)
CENTRE_NOISE = (0.0003, 0.003)  # × the median scene depth
FOLLOW_SHARE = 0.15           # generated clips filmed by a camera that keeps pace with the subject
EMA_DECAY = 0.995              # the shipped weights average the last ~200 steps
STILL_BASELINE = 0.003          # × the median scene depth: a camera that moves less only rotates


def training_config(hold_out: str | None = HELD_OUT_MOVER) -> SceneConfig:
    """The generator with people, pets and rigid things weighted up (the held-out kind never drawn)."""
    weights = {"pet": 0.3, "rigid": 0.2, "sheet": 0.1, "blob": 0.1, "person": 0.3}
    return replace(SceneConfig(), mover_weights=tuple(0.0 if k == hold_out else weights[k] for k in MOVER_KINDS),
                   n_movers=(1, 4))


def window_inputs(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, rotation_only: bool,
                  image_size: tuple[int, int], hide: np.ndarray | None = None
                  ) -> tuple[Conditioning, np.ndarray, np.ndarray]:
    """What the pipeline's geometry stages give the network for a clip under ``cameras``: → (conditioning, static
    (P,) bool, static depth (N, P) NaN where unknown). The same calls as :func:`tracks4d.pipeline.run_pipeline`
    makes, without the bundle adjustment; ``hide`` (P,) bool: tracks whose static depth the network is not told
    (self-supervision on real clips)."""
    fitted, errors = static_fit(tracks, visible, cameras, rotation_only)
    focal = float(np.mean(cameras.intrinsics[:, [0, 1], [0, 1]]))
    motion = motion_levels(errors, visible, focal)
    if rotation_only:
        static_depth = np.full(visible.shape, np.nan)
        points = np.full(fitted.shape, np.nan)
    else:
        z = transform_points(cameras.world_to_camera, np.nan_to_num(fitted))[..., 2]
        known = motion.static & np.isfinite(fitted).all(1)
        static_depth = np.where(known[None] & visible & (z > 0), z, np.nan)
        points = np.where(known[:, None], fitted, np.nan)
    contact = ground_contact(tracks, visible, cameras, points, motion.static, image_size)
    score = np.log(np.maximum(motion.residual_px, 1e-3) / motion.noise_px)
    told = static_depth if hide is None else np.where(hide[None], np.nan, static_depth)
    cond = conditioning(tracks, visible, cameras, score, told, contact.depth, contact.plane)
    return cond, motion.static, static_depth


@dataclass
class TrainingWindow:
    """features (N, P, F) · target (N, P) log true depth over the window's scale · visible (N, P): entries with a
    depth target · dynamic (P,) · labelled: whether ``dynamic`` is known (synthetic) or not (real clips)."""

    features: np.ndarray
    target: np.ndarray
    visible: np.ndarray
    dynamic: np.ndarray
    labelled: bool = True


def _perturbed(scene: SyntheticScene, rng: np.random.Generator) -> Cameras:
    """The true cameras with about the solved cameras' error: a smooth drift of rotation and centre over the clip
    (a bundle adjustment's error is smooth; the held-out ATE is 0.03–0.4 % of the scene depth)."""
    c2w = scene.camera_to_world.copy()
    n = len(c2w)
    tau = np.arange(n) / 49.0
    scale = float(np.median(scene.depth[scene.true_visible]))
    centres = c2w[:, :3, 3]
    # a short baseline is solved as precisely, relative to itself: the error shrinks with it
    reach = min(1.0, 10 * float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) / scale)
    angle = _smooth_noise(rng, tau, np.radians(rng.uniform(*ROTATION_NOISE_DEG)) * reach, 3)
    c2w[:, :3, :3] = _rodrigues(angle) @ c2w[:, :3, :3]
    c2w[:, :3, 3] += _smooth_noise(rng, tau, rng.uniform(*CENTRE_NOISE) * scale * reach, 3)
    return Cameras(np.linalg.inv(c2w), scene.intrinsics)


def _rotation_only(scene: SyntheticScene) -> bool:
    """The pipeline's verdict, approximately: the motion model says the camera only rotates, or its centres stay
    within ``STILL_BASELINE`` of the scene depth (the rotation-only model then wins the camera stage)."""
    t = scene.tracks
    centres = scene.camera_to_world[:, :3, 3]
    baseline = float(np.linalg.norm(centres - centres.mean(0), axis=1).max())
    still = baseline < STILL_BASELINE * float(np.median(scene.depth[scene.true_visible]))
    return still or select_motion_model(t.tracks, t.visible, t.intrinsics_per_frame()).kind == "rotation"


def _rodrigues(v: np.ndarray) -> np.ndarray:
    theta = np.linalg.norm(v, axis=-1, keepdims=True)[..., None]
    k = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    kx = np.zeros(v.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2], kx[..., 1, 2] = -k[..., 2], k[..., 1], -k[..., 0]
    kx = kx - np.swapaxes(kx, -1, -2)
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def make_windows(rng: np.random.Generator, n_frames: int, n_tracks: int, config: SceneConfig, count: int = 2,
                 scene_tracks: int = 320) -> list[TrainingWindow]:
    """``count`` windows of ``n_tracks`` tracks from one synthetic clip of ``scene_tracks`` tracks: geometry inputs
    are computed on the whole clip, as the pipeline does, then each window takes a random track subset (movers
    first, up to half of it)."""
    scene = generate_window(rng, n_frames, scene_tracks, config)
    t = scene.tracks
    cond, _, _ = window_inputs(t.tracks, t.visible, _perturbed(scene, rng), _rotation_only(scene),
                               tuple(int(v) for v in t.image_size))
    visible = t.visible & scene.true_visible
    known = cond.features[..., 5] > 0.5
    reference = scene.depth[known] if known.sum() >= 8 else scene.depth[visible]
    target = np.log(np.maximum(scene.depth, 1e-6) / np.median(reference)).astype(np.float32)
    windows = []
    for _ in range(count):
        movers, others = rng.permutation(np.flatnonzero(scene.dynamic)), rng.permutation(np.flatnonzero(~scene.dynamic))
        take = movers[:n_tracks // 2]
        pick = np.concatenate([take, others[:n_tracks - len(take)]])
        pick = rng.permutation(np.concatenate([pick, movers[len(take):][:n_tracks - len(pick)]]))
        windows.append(TrainingWindow(cond.features[:, pick], target[:, pick], visible[:, pick], scene.dynamic[pick]))
    return windows


@dataclass
class RealClip:
    """A real video reconstructed once by the pipeline (cameras bundle-adjusted; no moving-point stages)."""

    name: str
    tracks: np.ndarray
    visible: np.ndarray
    world_to_camera: np.ndarray
    intrinsics: np.ndarray
    rotation_only: bool
    image_size: tuple[int, int]


def real_clips(root: Path, cache: Path) -> list[RealClip]:
    """Every video under ``root`` except :data:`REAL_HELD_OUT`, reconstructed once (``--ba``) and cached."""
    from tracks4d.pipeline import ReconstructOptions, run_pipeline

    from .videos import find_videos

    clips = []
    cache.mkdir(parents=True, exist_ok=True)
    for video in find_videos(root, REAL_HELD_OUT):
        path = cache / f"{video.stem}-{video.stat().st_size}.npz"
        if not path.exists():
            rec = run_pipeline(video, ReconstructOptions(bundle_adjust=True, moving_checkpoint="none", refine_moving=False,
                                                         progress=False)).reconstruction
            rotation = rec.meta["stages"]["cameras"]["model"] == "rotation"
            np.savez(path, tracks=rec.tracks, visible=rec.visible, world_to_camera=rec.world_to_camera,
                     intrinsics=rec.intrinsics, rotation_only=rotation, image_size=np.array(rec.meta["image_size"]))
        d = np.load(path)
        clips.append(RealClip(video.stem, d["tracks"], d["visible"], d["world_to_camera"], d["intrinsics"],
                              bool(d["rotation_only"]), tuple(int(v) for v in d["image_size"])))
    return clips


def real_window(rng: np.random.Generator, clip: RealClip, n_frames: int, n_tracks: int) -> TrainingWindow | None:
    """Self-supervision from a real clip: a third of its static tracks have their triangulated depth hidden from the
    network, which must give it back from everything else (None when the window has too few)."""
    n = min(n_frames, len(clip.tracks))
    start = int(rng.integers(0, len(clip.tracks) - n + 1))
    span = slice(start, start + n)
    visible = clip.visible[span]
    keep = np.flatnonzero(visible.sum(0) >= 3)
    if clip.rotation_only or keep.size < 32:
        return None
    tracks, visible = clip.tracks[span][:, keep], visible[:, keep]
    hide = rng.random(keep.size) < 1 / 3
    cond, _, depth = window_inputs(tracks, visible, Cameras(clip.world_to_camera[span], clip.intrinsics[span]), False,
                                   clip.image_size, hide)
    answer = hide & np.isfinite(depth).any(0)
    if answer.sum() < 8 or cond.scale == 1.0:
        return None
    pick = np.concatenate([rng.permutation(np.flatnonzero(answer))[:n_tracks // 3],
                           rng.permutation(np.flatnonzero(~answer))])[:n_tracks]
    target = np.log(np.where(np.isfinite(depth), depth, cond.scale) / cond.scale).astype(np.float32)
    mask = answer[None] & np.isfinite(depth) & visible
    return TrainingWindow(cond.features[:, pick], target[:, pick], mask[:, pick], np.zeros(pick.size, bool), False)


def collate(windows: list[TrainingWindow]) -> dict[str, torch.Tensor]:
    """Pad to the batch's largest N and P; masks mark real frames and tracks."""
    n = max(w.features.shape[0] for w in windows)
    p = max(w.features.shape[1] for w in windows)
    b = len(windows)
    out = {"features": torch.zeros(b, n, p, windows[0].features.shape[-1]), "target": torch.zeros(b, n, p),
           "visible": torch.zeros(b, n, p, dtype=torch.bool), "dynamic": torch.zeros(b, p),
           "frame_mask": torch.zeros(b, n, dtype=torch.bool), "point_mask": torch.zeros(b, p, dtype=torch.bool),
           "labelled": torch.tensor([w.labelled for w in windows])}
    for i, w in enumerate(windows):
        wn, wp = w.visible.shape
        out["features"][i, :wn, :wp] = torch.from_numpy(w.features)
        out["target"][i, :wn, :wp] = torch.from_numpy(w.target)
        out["visible"][i, :wn, :wp] = torch.from_numpy(w.visible)
        out["dynamic"][i, :wp] = torch.from_numpy(w.dynamic.astype(np.float32))
        out["frame_mask"][i, :wn] = True
        out["point_mask"][i, :wp] = True
    return out


def losses(model: ConditionedNet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """depth: L1 of visible entries' log-depth (moving × MOVING_WEIGHT) plus the Laplace NLL of its σ (on the
    detached error) · motion: class-balanced BCE ·
    dyn_l1: mean |log-depth error| of moving entries (reported)."""
    out = model(batch["features"], batch["frame_mask"], batch["point_mask"])
    error = (out.log_depth - batch["target"]).abs()
    moving = batch["dynamic"][:, None].expand_as(error) > 0.5
    weight = batch["visible"].float() * torch.where(moving, MOVING_WEIGHT, 1.0)
    # depth gets the full L1 gradient (an NLL would let hard, moving entries buy a large σ and stop learning);
    # σ learns the size of the error separately
    nll = error.detach() * torch.exp(-out.log_sigma) + out.log_sigma
    depth = ((error + nll) * weight).sum() / weight.sum().clamp(min=1)
    dyn = batch["visible"] & moving
    dyn_l1 = error[dyn].mean() if dyn.any() else error.new_zeros(())
    real = batch["point_mask"] & batch["labelled"][:, None]
    if not real.any():
        return {"loss": depth, "depth": depth, "motion": depth.new_zeros(()), "dyn_l1": dyn_l1}
    label = batch["dynamic"][real]
    positive = label.mean().clamp(0.05, 0.95)
    class_weight = torch.where(label > 0.5, 0.5 / positive, 0.5 / (1 - positive))
    motion = F.binary_cross_entropy_with_logits(out.motion_logit[real], label, weight=class_weight)
    return {"loss": depth + 0.5 * motion, "depth": depth, "motion": motion, "dyn_l1": dyn_l1}


def validation_windows(count: int) -> list[TrainingWindow]:
    """Fixed held-out windows (seeds VALIDATION_SEED + i; every mover kind including the held-out one)."""
    config = replace(training_config(None), mover_weights=(0.25, 0.15, 0.2, 0.1, 0.3))
    return [make_windows(np.random.default_rng(VALIDATION_SEED + i), 40, 96, config, count=1)[0]
            for i in range(count)]


@torch.no_grad()
def validate(model: ConditionedNet, windows: list[TrainingWindow]) -> dict[str, float]:
    """Held-out: moving entries' median |log-depth error| and share within 10 %, against the contact prior's."""
    model.eval()
    errors, contact_errors = [], []
    for w in windows:
        out = model(torch.from_numpy(w.features)[None])
        dyn = w.visible & w.dynamic[None]
        errors.append(np.abs(out.log_depth[0].numpy() - w.target)[dyn])
        has = dyn & (w.features[..., 7] > 0.5)
        contact_errors.append(np.where(has, np.abs(w.features[..., 6] - w.target), np.inf)[dyn])
    model.train()
    e, c = np.concatenate(errors), np.concatenate(contact_errors)
    return {"val_dyn_l1": float(np.median(e)), "val_dyn_within10": float(np.mean(e < np.log(1.1))),
            "val_contact_within10": float(np.mean(c < np.log(1.1)))}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.conditioned", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/conditioned", help="folder for checkpoints, log.csv and curve.png")
    p.add_argument("--resume", help="checkpoint to continue from (model, optimiser, step, CPU-seconds)")
    p.add_argument("--preset", default="geo")
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this wall time (0 = no limit)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--every", type=int, default=250, help="steps between checkpoints and validation")
    p.add_argument("--validation", type=int, default=24, help="held-out windows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--real-share", type=float, default=0.2,
                   help="share of batches' clips that are real videos (self-supervised; 0 = synthetic only)")
    p.add_argument("--video-root", default=None, help="real videos (default ../shared/data/real)")
    p.add_argument("--cache", default="runs/conditioned-real", help="the real clips' reconstructions")
    p.add_argument("--ship", metavar="OUT", help="do not train: write --resume's model to OUT for shipping (fp16 "
                                                 "when its outputs stay within 1e-3 of fp32; provenance added)")
    return p


def ship(source: Path, output: Path) -> dict:
    """``source`` checkpoint → ``output`` without optimiser state, fp16 unless that moves any held-out log-depth by
    more than 1e-3; provenance (steps, CPU core-hours, hardware, date, generator mix) in ``extra``."""
    import datetime
    import platform

    model, payload = load_conditioned(source)
    half = ConditionedNet(model.config)
    half.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    window = validation_windows(1)[0]
    with torch.no_grad():
        x = torch.from_numpy(window.features)[None]
        diff = float((model(x).log_depth - half(x).log_depth).abs().max())
    extra = {**payload.get("extra", {}), "source": str(source), "steps": int(payload.get("step", 0)),
             "cpu_core_hours": float(payload.get("extra", {}).get("cpu_seconds", 0.0)) / 3600,
             "hardware": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
             "date": datetime.date.today().isoformat(), "fp16_max_log_depth_diff": diff,
             "training_movers": dict(zip(MOVER_KINDS, training_config().mover_weights))}
    save_checkpoint(output, model, step=int(payload.get("step", 0)), extra=extra, half=diff < 1e-3)
    return extra


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.ship:
        if not args.resume:
            raise SystemExit("--ship needs --resume CHECKPOINT (the model to ship)")
        print(ship(Path(args.resume), Path(args.ship)))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    step, cpu_s = 0, 0.0
    if args.resume:
        model, payload = load_conditioned(args.resume)
        model.train()
        step, cpu_s = int(payload.get("step", 0)), float(payload.get("extra", {}).get("cpu_seconds", 0.0))
    else:
        model = ConditionedNet(ConditionedConfig.preset(args.preset))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    if args.resume and "optimizer" in payload:
        optimizer.load_state_dict(payload["optimizer"])
        for group in optimizer.param_groups:       # --lr of this phase, not the stored one
            group["lr"] = args.lr
    average = ConditionedNet(model.config)                 # exponential moving average of the weights: what ships
    average.load_state_dict(model.state_dict())
    if args.resume and (out / "average.pt").exists():
        kept, kept_payload = load_conditioned(out / "average.pt")
        if kept_payload.get("step") == step:
            average.load_state_dict(kept.state_dict())
    average.eval()
    rng = np.random.default_rng(args.seed + step)
    config = training_config()
    clips = []
    if args.real_share > 0:
        from .videos import DEFAULT_VIDEO_ROOT
        root = Path(args.video_root) if args.video_root else DEFAULT_VIDEO_ROOT
        clips = real_clips(root, Path(args.cache)) if root.is_dir() else []
        print(f"real clips: {', '.join(c.name for c in clips) or 'none'}", flush=True)
    held_out = validation_windows(args.validation)
    log_path = out / "log.csv"
    fields = ["step", "cpu_hours", "loss", "depth", "motion", "dyn_l1", "val_dyn_l1", "val_dyn_within10",
              "val_contact_within10"]
    new_log = not log_path.exists()
    log = open(log_path, "a", newline="")
    writer = csv.DictWriter(log, fieldnames=fields)
    if new_log:
        writer.writeheader()
    start, last_cpu = time.time(), time.process_time()
    running: dict[str, float] = {}
    print(f"conditioned network: {model.num_parameters():,} parameters, from step {step}", flush=True)
    while step < args.steps and not (args.minutes and time.time() - start > 60 * args.minutes):
        n_frames, n_tracks = int(rng.integers(16, 37)), int(rng.integers(32, 81))
        windows = []
        while len(windows) < args.batch_size:
            real = real_window(rng, clips[rng.integers(len(clips))], n_frames, n_tracks) \
                if clips and rng.random() < args.real_share else None
            scene_config = replace(config, camera="follow") if rng.random() < FOLLOW_SHARE else config
            windows += [real] if real is not None else make_windows(rng, n_frames, n_tracks, scene_config)
        batch = collate(windows[:args.batch_size])
        terms = losses(model, batch)
        optimizer.zero_grad()
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        with torch.no_grad():
            for a, p in zip(average.parameters(), model.parameters()):
                a.lerp_(p, 1 - EMA_DECAY)
        for k, v in terms.items():
            running[k] = 0.98 * running.get(k, v.item()) + 0.02 * v.item()
        if step % args.every == 0 or step == args.steps:
            now = time.process_time()
            cpu_s, last_cpu = cpu_s + now - last_cpu, now
            row = {"step": step, "cpu_hours": round(cpu_s / 3600, 4), **{k: round(v, 5) for k, v in running.items()},
                   **{k: round(v, 5) for k, v in validate(average, held_out).items()}}
            writer.writerow(row)
            log.flush()
            save_checkpoint(out / "last.pt", model, optimizer=optimizer, step=step, extra={"cpu_seconds": cpu_s})
            save_checkpoint(out / "average.pt", average, step=step, extra={"cpu_seconds": cpu_s})
            print(" ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    log.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
