"""``tracks4d-train``: the paper's recipe — camera pre-training, a frame curriculum, Adam 1e-4 — with padded
batches, checkpoints that resume, CSV logs and periodic validation on held-out synthetic scenes."""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tracks4d.devices import resolve_device
from tracks4d.network.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from tracks4d.contracts import ContractError
from tracks4d.network.inference import run_network
from tracks4d.network.losses import PRETRAIN_CENTRE, pretrain_camera_loss, supervised_loss, tracks4d_loss
from tracks4d.evaluation.metrics import absolute_trajectory_error, depth_metrics
from tracks4d.network.model import PRESETS, ModelConfig, TracksTo4D

from . import cop3d, videos  # noqa: F401  (register --data cop3d, videos)
from .datasets import DATASETS, HELD_OUT_MOVER, Batch, DatasetError, build_dataset, collate
from .plots import plot_training_log
from .synthetic import SceneConfig, generate_scene

__all__ = ["main", "build_parser", "validate", "held_out_scenes", "Trainer"]

VALIDATION_SEED = 1_000_003
"""Held-out scenes use seeds from here on; training draws from a different stream."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracks4d-train", description="Train the TracksTo4D network.")
    p.add_argument("--data", default="synthetic",
                   help=f"dataset: one of {sorted(DATASETS)}, or a weighted mix such as synthetic:3,videos:1")
    p.add_argument("--video-root", help="--data videos: folder searched for video files (default ../shared/data/real)")
    p.add_argument("--root", help="dataset folder (for --data tracks / cop3d)")
    p.add_argument("--categories", help="comma-separated categories (datasets that have them, e.g. cop3d: cat,dog)")
    p.add_argument("--cache", help="track cache folder (cop3d: default ROOT/.tracks4d_cache; videos: default "
                                   "~/.cache/tracks4d/videos)")
    p.add_argument("--preset", default="small", choices=sorted(PRESETS), help="model preset")
    p.add_argument("--out", default="runs/train", help="folder for checkpoints and logs")
    p.add_argument("--resume", help="checkpoint to continue from (model, optimiser, step)")
    p.add_argument("--steps", type=int, default=2000, help="main-training optimiser steps")
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this wall time (0 = no limit)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--tracks", type=int, default=100, help="tracks per window")
    p.add_argument("--max-frames", type=int, default=50, help="longest window after the curriculum")
    p.add_argument("--curriculum-steps", type=int, default=500, help="steps with 20–22-frame windows")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--supervised-weight", type=float, default=1.0,
                   help="weight of the ground-truth losses on windows that have ground truth (synthetic); 0 = the "
                        "paper's purely self-supervised objective")
    p.add_argument("--hold-out-mover", default=HELD_OUT_MOVER,
                   help="synthetic mover kind never trained on (held-out suite keeps it); 'none' = train on all")
    p.add_argument("--clip-grad", type=float, default=1.0, help="gradient-norm clip (0 = off)")
    p.add_argument("--pretrain-max-steps", type=int, default=2000, help="cap on camera pre-training steps")
    p.add_argument("--pretrain-lr", type=float, default=1e-3, help="learning rate of camera pre-training (head only)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: on for CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    p.add_argument("--val-every", type=int, default=250, help="validate every this many steps (0 = only at ends)")
    p.add_argument("--val-scenes", type=int, default=6, help="held-out synthetic scenes")
    p.add_argument("--val-frames", type=int, default=50)
    p.add_argument("--val-tracks", type=int, default=300, help="tracks per held-out scene (subsampled)")
    p.add_argument("--ckpt-every", type=int, default=250)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


# --------------------------------------------------------------------------------------------- validation
def held_out_scenes(count: int, n_frames: int, n_tracks: int):
    """Fixed synthetic scenes with ground truth (the same for every run): list of TrackSets with ground_truth."""
    scenes = []
    for i in range(count):
        scene = generate_scene(VALIDATION_SEED + i, SceneConfig(n_frames=n_frames))
        ts = scene.tracks
        if ts.n_points > n_tracks:
            keep = np.sort(np.random.default_rng(i).choice(ts.n_points, n_tracks, replace=False))
            ts = ts.subset(points=keep)
        scenes.append(ts)
    return scenes


def validate(model: TracksTo4D, scenes, device: torch.device) -> dict[str, float]:
    """Mean ATE (Sim(3)-aligned camera centres), ATE relative to the median GT depth, and depth AbsRel / δ<1.25
    (per-frame median scaling) over visible track points."""
    was_training = model.training
    model.eval()
    ates, ate_rel, abs_rel, delta = [], [], [], []
    for ts in scenes:
        rec = run_network(model, ts, device)
        gt = ts.ground_truth
        gt_c2w = np.linalg.inv(gt.world_to_camera)
        ates.append(absolute_trajectory_error(rec.camera_to_world, gt_c2w))
        ate_rel.append(ates[-1] / float(np.median(gt.depth[ts.visible])))
        d = depth_metrics(rec.depth, gt.depth, ts.visible)
        abs_rel.append(d["abs_rel"])
        delta.append(d["delta_1"])
    model.train(was_training)
    return {"val_ate": float(np.mean(ates)), "val_ate_rel": float(np.mean(ate_rel)),
            "val_abs_rel": float(np.nanmean(abs_rel)), "val_delta1": float(np.nanmean(delta))}


# --------------------------------------------------------------------------------------------- training
@dataclass
class TrainState:
    step: int = 0
    pretrain_done: bool = False
    best_score: float = math.inf


class Trainer:
    """Owns the model, optimiser, data and logs of one run; :meth:`run` trains until steps or minutes run out."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda but no CUDA device is available")
        self.device = torch.device(resolve_device(args.device))
        self.use_bf16 = (self.device.type == "cuda") if args.bf16 is None else args.bf16
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)
        self.state = TrainState()
        payload = load_checkpoint(args.resume) if args.resume else None
        model = TracksTo4D(ModelConfig.preset(args.preset)) if payload is None else model_from_checkpoint(
            payload, args.resume)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        if payload is not None:
            if "optimizer" in payload:
                self.optimizer.load_state_dict(payload["optimizer"])
                for group in self.optimizer.param_groups:   # --lr applies to the continued run
                    group["lr"] = args.lr
            extra = payload.get("extra", {})
            self.state = TrainState(int(payload.get("step", 0)), bool(extra.get("pretrain_done", False)),
                                    float(extra.get("best_score", math.inf)))
            self.rng = np.random.default_rng([args.seed, self.state.step])
        self.forward = torch.compile(self.model) if args.compile else self.model
        self.dataset = build_dataset(args)
        self.val_scenes = held_out_scenes(args.val_scenes, args.val_frames, args.val_tracks)
        self.log_path = self.out / "log.csv"
        self._log_fields = ["time", "step", "phase", "loss", "reprojection", "static", "negative_depth", "sparse",
                            "supervised", "windows_per_s", "val_ate", "val_ate_rel", "val_abs_rel", "val_delta1"]
        if not self.log_path.exists():
            with open(self.log_path, "w", newline="") as fh:
                csv.DictWriter(fh, self._log_fields).writeheader()

    def log(self, row: dict) -> None:
        with open(self.log_path, "a", newline="") as fh:
            csv.DictWriter(fh, self._log_fields).writerow({"time": round(time.time(), 3), **row})

    def batch(self, frame_range: tuple[int, int]) -> Batch:
        windows = [self.dataset.sample(self.rng, int(self.rng.integers(frame_range[0], frame_range[1] + 1)),
                                       self.args.tracks) for _ in range(self.args.batch_size)]
        return collate(windows).to(self.device)

    def autocast(self):
        if not self.use_bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def pretrain(self) -> None:
        """Drive all cameras to identity rotation at (0, 0, −15) until the loss is below 1e-4.

        Only the camera head takes part: pre-training the whole network (measured) collapses the per-point features —
        their spread across tracks fell 75× within 60 steps — and main training then stalls. For the head alone the
        optimum is known in closed form (:meth:`TracksTo4D.place_cameras`), so it starts there; Adam then runs until
        the loss is below the threshold (usually at once)."""
        self.model.place_cameras(PRETRAIN_CENTRE)
        head = set(self.model.camera_head.parameters())
        for param in self.model.parameters():
            param.requires_grad_(param in head)
        optimizer = torch.optim.Adam(head, lr=self.args.pretrain_lr)
        bar = tqdm(range(self.args.pretrain_max_steps), desc="camera pre-training", disable=self.args.no_progress)
        loss_value = math.inf
        for i in bar:
            b = self.batch((20, 22))
            with self.autocast():
                out = self.forward(b.inputs, b.frame_mask, b.point_mask)
            loss = pretrain_camera_loss(out, b.frame_mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            bar.set_postfix(loss=f"{loss_value:.2e}")
            if loss_value < 1e-4:
                break
        for param in self.model.parameters():
            param.requires_grad_(True)
        self.state.pretrain_done = True
        self.log({"step": self.state.step, "phase": "pretrain", "loss": loss_value})
        print(f"camera pre-training: {i + 1} steps, final loss {loss_value:.2e}", flush=True)

    def evaluate(self, tag: str) -> dict[str, float]:
        metrics = validate(self.model, self.val_scenes, self.device)
        self.log({"step": self.state.step, "phase": tag, **metrics})
        print(f"[{tag} step {self.state.step}] held-out ATE {metrics['val_ate']:.4f} "
              f"(rel {metrics['val_ate_rel']:.4f}), AbsRel {metrics['val_abs_rel']:.4f}, "
              f"δ<1.25 {metrics['val_delta1']:.3f}", flush=True)
        score = metrics["val_ate_rel"] + metrics["val_abs_rel"]
        if score < self.state.best_score:
            self.state.best_score = score
            self.save(self.out / "best.pt")
        return metrics

    def save(self, path: Path) -> None:
        save_checkpoint(path, self.model, optimizer=self.optimizer, step=self.state.step,
                        extra={"pretrain_done": self.state.pretrain_done, "best_score": self.state.best_score,
                               "data": self.args.data, "preset": self.args.preset})

    def run(self) -> dict[str, float]:
        args = self.args
        deadline = time.monotonic() + args.minutes * 60 if args.minutes > 0 else math.inf
        first = self.evaluate("untrained" if self.state.step == 0 and not self.state.pretrain_done else "resumed")
        if not self.state.pretrain_done:
            self.pretrain()
            self.evaluate("pretrained")
        bar = tqdm(total=args.steps, initial=self.state.step, desc="training", disable=args.no_progress)
        t0, seen = time.monotonic(), 0
        while self.state.step < args.steps and time.monotonic() < deadline:
            hi = 22 if self.state.step < args.curriculum_steps else args.max_frames
            b = self.batch((20, max(20, hi)))
            with self.autocast():
                out = self.forward(b.inputs, b.frame_mask, b.point_mask)
            terms = tracks4d_loss(out, b.inputs[..., :2].float(), b.visible, b.point_mask)
            total = terms.total
            if args.supervised_weight > 0:
                sup = supervised_loss(out, b.gt_points, b.gt_camera_to_world, b.entry_mask, b.has_gt)
                supervised = sup["points"] + sup["rotation"] + sup["translation"]
                total = total + args.supervised_weight * supervised
            else:
                supervised = total.new_zeros(())
            if not torch.isfinite(total):
                print(f"step {self.state.step}: non-finite loss, batch skipped", file=sys.stderr)
                continue
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if args.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.clip_grad)
            self.optimizer.step()
            self.state.step += 1
            seen += b.inputs.shape[0]
            bar.update(1)
            values = terms.as_floats()
            bar.set_postfix(loss=f"{float(total.detach()):.3f}", rep=f"{values['reprojection']:.4f}",
                            sup=f"{float(supervised.detach()):.3f}")
            if self.state.step % 10 == 0:
                rate = seen / max(time.monotonic() - t0, 1e-9)
                self.log({"step": self.state.step, "phase": "train", "loss": float(total.detach()),
                          **{k: values[k] for k in ("reprojection", "static", "negative_depth", "sparse")},
                          "supervised": float(supervised.detach()),
                          "windows_per_s": round(rate, 2)})
            if args.ckpt_every and self.state.step % args.ckpt_every == 0:
                self.save(self.out / "last.pt")
            if args.val_every and self.state.step % args.val_every == 0:
                self.evaluate("validation")
        bar.close()
        self.save(self.out / "last.pt")
        final = self.evaluate("final")
        plot_training_log(self.log_path, self.out / "curves.png")
        elapsed = time.monotonic() - t0
        print(f"trained {self.state.step} steps ({seen} windows in {elapsed:.0f} s, "
              f"{seen / max(elapsed, 1e-9):.1f} windows/s); checkpoints, log.csv and curves.png in {self.out}")
        print(f"held-out ATE {first['val_ate']:.4f} -> {final['val_ate']:.4f}; "
              f"AbsRel {first['val_abs_rel']:.4f} -> {final['val_abs_rel']:.4f}")
        return final


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        Trainer(args).run()
    except (DatasetError, ContractError, CheckpointError, ValueError) as exc:
        print(f"tracks4d-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tracks4d-train: interrupted; last checkpoint kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
