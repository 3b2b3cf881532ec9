"""Checkpoints: model config, weights, optimiser state and step in one file, loaded with ``weights_only=True``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .model import ModelConfig, TracksTo4D

__all__ = ["SHIPPED_MOVING", "default_moving_checkpoint", "save_checkpoint", "load_checkpoint", "load_model", "model_from_checkpoint", "CheckpointError"]

FORMAT = "tracks4d-checkpoint-v1"


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a tracks4d checkpoint."""


SHIPPED_DIR = Path(__file__).resolve().parents[2] / "checkpoints"
SHIPPED = {"cuda": ("tracks4d-paper.pt", "tracks4d-small.pt"), "cpu": ("tracks4d-small.pt", "tracks4d-paper.pt")}
"""Shipped checkpoints in order of preference per device: the paper preset where a GPU makes it cheap, the small
one on CPU (5–6× faster there)."""
SHIPPED_MOVING = SHIPPED_DIR / "tracks4d-moving.pt"
"""The shipped geometry-conditioned network (:mod:`.conditioned`) that places moving points."""


def default_checkpoint(device: str | torch.device = "cpu") -> Path:
    """The checkpoint to use when none is given: $TRACKS4D_CHECKPOINT, else the shipped one that suits ``device``."""
    env = os.environ.get("TRACKS4D_CHECKPOINT")
    if env:
        return Path(env)
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    for name in SHIPPED[kind]:
        if (SHIPPED_DIR / name).is_file():
            return SHIPPED_DIR / name
    raise CheckpointError(f"no shipped checkpoint in {SHIPPED_DIR} ({' or '.join(SHIPPED[kind])}); pass "
                          f"--checkpoint or set TRACKS4D_CHECKPOINT")


def default_moving_checkpoint() -> Path | None:
    """$TRACKS4D_MOVING_CHECKPOINT ("none": no conditioned network), else the shipped one, else None."""
    env = os.environ.get("TRACKS4D_MOVING_CHECKPOINT")
    if env:
        return None if env.lower() == "none" else Path(env)
    return SHIPPED_MOVING if SHIPPED_MOVING.is_file() else None


def save_checkpoint(path: str | Path, model: torch.nn.Module, *, optimizer: torch.optim.Optimizer | None = None,
                    step: int = 0, extra: dict[str, Any] | None = None, half: bool = False) -> None:
    """Write atomically (temporary file, then rename). ``half`` stores float weights as fp16 (for shipping)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
             for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "config": model.config.to_dict(), "model": state, "step": int(step),
               "extra": extra or {}}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict safely (``weights_only=True``); raises :class:`CheckpointError` with the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tracks4d checkpoint (missing format tag {FORMAT!r})")
    return payload


def model_from_checkpoint(payload: dict[str, Any], source: str | Path = "checkpoint") -> TracksTo4D:
    """The network a checkpoint payload describes, weights cast to float32 (fp16-shipped weights included)."""
    try:
        model = TracksTo4D(ModelConfig.from_dict(payload["config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: weights do not fit the stored config ({exc})") from None
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[TracksTo4D, dict[str, Any]]:
    """Build the network from a checkpoint file. Returns (model in eval mode on ``device``, payload)."""
    payload = load_checkpoint(path)
    return model_from_checkpoint(payload, path).to(device).eval(), payload
