"""Dense 4D: a dynamic Gaussian scene seeded by a reconstruction and fitted to its video (Shape of Motion).

    result = refine_gaussians(rec, frames, RefineConfig(minutes=10))   # → OUT/refine/ with write_refine_outputs
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from ..contracts import Reconstruction
from .hierarchical import HierarchicalMotion
from .motion import MotionBases, init_bases
from .optimize import MOTIONS, Fitted, RefineConfig, Working, evaluate, fit_scene, working_inputs
from .outputs import write_refine_outputs
from .scene import GaussianScene
from .seed import seed_scene

__all__ = ["GaussianScene", "HierarchicalMotion", "MotionBases", "RefineConfig", "Refinement", "Working", "evaluate",
           "fit_scene", "hierarchical_motion", "init_bases", "refine_gaussians", "seed_scene", "working_inputs",
           "write_refine_outputs"]


@dataclass
class Refinement:
    """The fitted scene, its inputs at the working resolution, and metrics (held-out and training PSNR / SSIM,
    the PSNR-over-time history, timings, the configuration)."""

    scene: GaussianScene
    data: Working
    fitted: Fitted
    metrics: dict


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hierarchical_motion(scene: GaussianScene, seed: int = 0) -> HierarchicalMotion:
    """The scene's flat motion turned into a tree of nodes, from its moving track Gaussians (HiMoR)."""
    moving = scene.moving.numpy()
    tracks = moving & (scene.track.numpy() >= 0)
    means, logits = scene.means.detach().numpy(), scene.coefficient_logits.detach().numpy()
    return HierarchicalMotion.from_flat(scene.motion, means[tracks], logits[tracks], means[moving], seed)


def refine_gaussians(rec: Reconstruction, frames: np.ndarray, config: RefineConfig | None = None,
                     progress: bool = True, on_step=None) -> Refinement:
    """Seed a Gaussian scene from ``rec`` and fit it to ``frames`` (N, H, W, 3) uint8, one per reconstructed frame.
    ``progress``: a progress bar · on_step(step, seconds): told after every optimisation step."""
    config = config or RefineConfig()
    if config.motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, not {config.motion!r}")
    start = time.perf_counter()
    data = working_inputs(rec, frames, config)
    scene = seed_scene(rec, data.frames, data.intrinsics, data.tracks, data.train, config.bases, config.stride,
                       config.keyframe_every, config.max_gaussians, config.seed)
    if config.motion == "hierarchical" and (scene.moving & (scene.track >= 0)).any():
        scene.motion = hierarchical_motion(scene, config.seed)          # (nothing moves: nothing to build it on)
    scene.to(config.device)
    seeded = time.perf_counter() - start
    fitted = fit_scene(scene, data, config, progress, on_step)
    held_out = fitted.held_out
    trained = evaluate(scene, data, np.flatnonzero(data.train), config.backend)
    metrics = {
        "held_out": held_out, "train": trained,
        "history": [{"seconds": s, "step": k, "gaussians": g, "held_out_psnr": p} for s, k, g, p in fitted.history],
        "gaussians": scene.count, "moving_gaussians": int(scene.moving.sum()), "steps": fitted.steps,
        "seconds": {"seed": seeded, "optimise": fitted.seconds, "total": time.perf_counter() - start},
        "working_size": list(data.size), "peak_rss_mb": peak_rss_mb(), "config": asdict(config),
    }
    return Refinement(scene, data, fitted, metrics)
