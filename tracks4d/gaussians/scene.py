"""The dynamic Gaussian scene: canonical 3D Gaussians, static ones fixed in the world, moving ones carried by a blend
of motion bases (:mod:`.motion`)."""

from __future__ import annotations

import torch
from torch import nn

from ..splat import Rendered, rasterize
from .motion import matrix_to_quaternion, quaternion_multiply

__all__ = ["GaussianScene"]

PER_GAUSSIAN = ("means", "quats", "log_scales", "opacity_logits", "colour_logits", "coefficient_logits")


class GaussianScene(nn.Module):
    """G Gaussians over N frames.

    means (G, 3): world (static) or canonical-frame (moving) centres · quats (G, 4) (w, x, y, z) · log_scales (G, 3)
    · opacity_logits (G,) · colour_logits (G, 3): RGB = sigmoid · coefficient_logits (G, B): motion weights =
    softmax (unused for static Gaussians and by hierarchical motion) · moving (G,) bool · track (G,) int64: the
    reconstruction's track a Gaussian stands for, −1 for the others (track Gaussians are never pruned or split, so
    every track keeps its dense trajectory) · motion: :class:`~.motion.MotionBases` or :class:`~.hierarchical.HierarchicalMotion`, frame
    ``canonical`` their origin."""

    def __init__(self, means, quats, log_scales, opacity_logits, colour_logits, coefficient_logits, moving, track,
                 motion: nn.Module, canonical: int):
        super().__init__()
        for name, value in zip(PER_GAUSSIAN, (means, quats, log_scales, opacity_logits, colour_logits,
                                              coefficient_logits)):
            setattr(self, name, nn.Parameter(torch.as_tensor(value, dtype=torch.float32).clone()))
        self.register_buffer("moving", torch.as_tensor(moving, dtype=torch.bool).clone())
        self.register_buffer("track", torch.as_tensor(track, dtype=torch.int64).clone())
        self.motion = motion
        self.canonical = canonical

    @property
    def count(self) -> int:
        return self.means.shape[0]

    @property
    def colours(self) -> torch.Tensor:
        return torch.sigmoid(self.colour_logits)

    def at(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres (G, 3) and orientations (G, 4) at frame t."""
        index = torch.nonzero(self.moving).squeeze(1)
        if index.numel() == 0:
            return self.means, self.quats
        rot, trans = self.motion.transforms(self.means[index], self.coefficient_logits[index], t)
        moved = (rot @ self.means[index, :, None]).squeeze(-1) + trans
        turned = quaternion_multiply(matrix_to_quaternion(rot), self.quats[index])
        return self.means.index_put((index,), moved), self.quats.index_put((index,), turned)

    def render(self, t: int, K: torch.Tensor, world_to_camera: torch.Tensor, width: int, height: int,
               extra: torch.Tensor | None = None, background: torch.Tensor | None = None,
               backend: str = "auto") -> Rendered:
        """The scene at frame t seen by a camera: features = RGB (+ ``extra`` (G, E) channels after it)."""
        means, quats = self.at(t)
        K, world_to_camera = K.to(means), world_to_camera.to(means)                 # the scene's device
        features = self.colours if extra is None else torch.cat([self.colours, extra], 1)
        if background is not None and extra is not None:
            background = torch.cat([background, background.new_zeros(extra.shape[1])])
        return rasterize(means, quats, torch.exp(self.log_scales), torch.sigmoid(self.opacity_logits), features,
                         K, world_to_camera, width, height, background=background, backend=backend)

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the Gaussians ``mask`` (G,) marks (pruning)."""
        self._replace({name: getattr(self, name).detach()[mask] for name in PER_GAUSSIAN}, self.moving[mask],
                      self.track[mask])

    def append(self, values: dict[str, torch.Tensor], moving: torch.Tensor) -> None:
        """Add Gaussians (no track's): ``values`` holds a (K, ...) tensor per per-Gaussian parameter."""
        self._replace({name: torch.cat([getattr(self, name).detach(), values[name]]) for name in PER_GAUSSIAN},
                      torch.cat([self.moving, moving]), torch.cat([self.track, self.track.new_full(moving.shape, -1)]))

    def _replace(self, values: dict[str, torch.Tensor], moving: torch.Tensor, track: torch.Tensor) -> None:
        for name, value in values.items():
            setattr(self, name, nn.Parameter(value.contiguous()))
        self.moving, self.track = moving, track
