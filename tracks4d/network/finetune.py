"""Per-sequence fine-tuning: minimise the self-supervised loss on one clip and keep the best-loss weights.

The model passed in is never modified (a copy is trained), so a shipped checkpoint stays as it is.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from tqdm import tqdm

from ..contracts import TrackSet
from .inference import network_inputs
from .losses import tracks4d_loss
from .model import TracksTo4D

__all__ = ["FinetuneReport", "finetune"]


@dataclass
class FinetuneReport:
    steps: int
    initial_loss: float
    best_loss: float
    best_step: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def finetune(model: TracksTo4D, tracks: TrackSet, steps: int, *, lr: float = 1e-4, device: str = "cpu",
             intrinsics=None, progress: bool = True,
             on_step: Callable[[int, int], None] | None = None) -> tuple[TracksTo4D, FinetuneReport]:
    """Adam on the TracksTo4D loss of this clip for ``steps`` steps (the paper: 500 pets, 100 out-of-domain).

    tracks: the clip (pixel intrinsics from it, or ``intrinsics`` (3, 3)/(N, 3, 3)) → (a fine-tuned copy of ``model``
    holding the weights of the lowest loss seen, in eval mode; report). on_step(step, steps) is told after each
    update (a service reports it as the job's progress).
    """
    if steps < 1:
        raise ValueError(f"finetune steps must be >= 1, got {steps}")
    tuned = copy.deepcopy(model).to(device).train()
    inputs = network_inputs(tracks, intrinsics)[None].to(device)
    visible = torch.from_numpy(tracks.visible)[None].to(device)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    start = time.perf_counter()
    best_state, best_loss, best_step, initial = None, float("inf"), -1, None
    bar = tqdm(range(steps + 1), desc="fine-tuning", disable=not progress, leave=False)
    for step in bar:  # the loss at step s is that of the weights after s updates
        loss = tracks4d_loss(tuned(inputs), inputs[..., :2], visible).total
        value = loss.item()
        initial = value if initial is None else initial
        if value < best_loss:
            best_loss, best_step = value, step
            best_state = {k: v.detach().clone() for k, v in tuned.state_dict().items()}
        bar.set_postfix(loss=f"{value:.4f}", best=f"{best_loss:.4f}")
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_step is not None:
            on_step(step + 1, steps)
    tuned.load_state_dict(best_state)
    return tuned.eval(), FinetuneReport(steps, initial, best_loss, best_step, time.perf_counter() - start)
