"""The geometry-conditioned network (issue 14): where along its ray is each moving point, given what geometry knows.

Same family as :class:`~.model.TracksTo4D` — equivariant over tracks, attention alternating over frames and over
tracks, with a per-point head for γ — but every (frame, track) token also carries what the geometry stages already
solved (:func:`conditioning`): the track's viewing ray under the solved cameras, its geometric motion score, the
triangulated depth of static tracks with a known flag, the ground's normal and height in the camera, and the
ground-contact depth of its object. Cameras are not predicted (the geometry's are given); instead of low-rank bases
the head gives each token its log-depth relative to the window's static depth and an uncertainty, and the per-clip
refinement (:mod:`tracks4d.geometry.refine`) fits the low-rank trajectory to them.

``ConditionedNet(config)(features, visible, frame_mask, point_mask)`` → :class:`DepthOutput`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..contracts import Cameras, hold_nearest
from ..geometry.ground import GroundPlane
from ..geometry.triangulation import LOCAL_HALF_WINDOW, bearings, local_triangulation
from ..memory import give_back_freed
from .checkpoint import CheckpointError, load_checkpoint
from .model import ModelConfig, TransformerBlock, _chunked, _masked_mean, time_embedding

__all__ = ["ConditionedConfig", "ConditionedNet", "DepthOutput", "Conditioning", "ClipGeometry", "conditioning",
           "clip_scale", "FEATURES",
           "load_conditioned", "predict_depth", "CONDITIONED_PRESETS", "MovingDepth", "moving_depth"]

FEATURES = ("ray_x", "ray_y", "visible", "motion", "static_depth", "static_known", "contact_depth", "contact_known",
            "floor_depth", "floor_known", "up_x", "up_y", "up_z", "ground_height", "ground_known", "local_depth",
            "local_residual", "local_known")
"""Per-token input channels (:func:`conditioning`); depths and heights are logs / ratios to the window's scale.
``floor_depth``: where the token's own ray meets the ground (known where it points below the horizon) ·
``local_depth``: the track triangulated over the frames around this one only, as if it stood still there
(:func:`~tracks4d.geometry.triangulation.local_triangulation`; a slow mover's depth), with its residual in px (log)."""

KIND = "conditioned"


@dataclass(frozen=True)
class ConditionedConfig:
    """Architecture hyper-parameters of :class:`ConditionedNet`."""

    width: int = 96
    layers: int = 3
    heads: int = 4
    head_dim: int = 24
    mlp_dim: int = 256
    n_freqs: int = 6
    chunk_tokens: int = 1 << 15

    @staticmethod
    def preset(name: str, **overrides) -> "ConditionedConfig":
        if name not in CONDITIONED_PRESETS:
            raise ValueError(f"unknown conditioned preset {name!r}; choose one of {sorted(CONDITIONED_PRESETS)}")
        return replace(CONDITIONED_PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return {**asdict(self), "kind": KIND}

    @classmethod
    def from_dict(cls, data: dict) -> "ConditionedConfig":
        data = {k: v for k, v in data.items() if k != "kind"}
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"conditioned config has unknown fields {sorted(unknown)}")
        return cls(**data)

    @property
    def input_dim(self) -> int:
        """Ray x, y with sin/cos at ``n_freqs`` frequencies, the other channels raw."""
        return len(FEATURES) + 4 * self.n_freqs

    def block_config(self) -> ModelConfig:
        return ModelConfig(width=self.width, heads=self.heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim)


CONDITIONED_PRESETS: dict[str, ConditionedConfig] = {"geo": ConditionedConfig()}


@dataclass
class DepthOutput:
    """log_depth (B, N, P): log of camera-frame depth over the window's scale · log_sigma (B, N, P): its predicted
    Laplace scale (log) · motion_logit (B, P): log-odds that the track moves."""

    log_depth: torch.Tensor
    log_sigma: torch.Tensor
    motion_logit: torch.Tensor


class ConditionedNet(nn.Module):
    """Tokens (frame, track) with :data:`FEATURES` → per-token log-depth and uncertainty, per-track motion logit."""

    def __init__(self, config: ConditionedConfig | None = None):
        super().__init__()
        self.config = cfg = config or ConditionedConfig()
        block = cfg.block_config()
        self.embed = nn.Sequential(nn.Linear(cfg.input_dim, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.width),
                                   nn.LayerNorm(cfg.width))
        self.frame_blocks = nn.ModuleList(TransformerBlock(block) for _ in range(cfg.layers))
        self.point_blocks = nn.ModuleList(TransformerBlock(block) for _ in range(cfg.layers))
        self.depth_head = nn.Linear(cfg.width, 2)
        self.motion_head = nn.Linear(cfg.width, 1)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """features (..., F) → (..., input_dim): ray x, y also as sin/cos at octave frequencies."""
        freqs = (2.0 ** torch.arange(self.config.n_freqs, device=features.device, dtype=features.dtype)) * math.pi
        proj = features[..., :2, None] * freqs
        return torch.cat((features, proj.sin().flatten(-2), proj.cos().flatten(-2)), dim=-1)

    def forward(self, features: torch.Tensor, frame_mask: torch.Tensor | None = None,
                point_mask: torch.Tensor | None = None) -> DepthOutput:
        """features (B, N, P, F) from :func:`conditioning` · frame_mask (B, N) / point_mask (B, P) bool, True =
        real (None: nothing padded)."""
        if features.ndim != 4 or features.shape[-1] != len(FEATURES):
            raise ValueError(f"features must be (B, N, P, {len(FEATURES)}), got {tuple(features.shape)}")
        b, n, p, _ = features.shape
        cfg = self.config
        x = self.embed(self.encode(features))
        x = x + time_embedding(n, cfg.width, features.device, features.dtype)[None, :, None]
        chunk = cfg.chunk_tokens if x.device.type == "cpu" else 0
        frame_keys = None if frame_mask is None else frame_mask[:, None].expand(b, p, n).reshape(b * p, n)
        point_keys = None if point_mask is None else point_mask[:, None].expand(b, n, p).reshape(b * n, p)
        for frame_block, point_block in zip(self.frame_blocks, self.point_blocks):
            xt = _chunked(frame_block, x.transpose(1, 2).reshape(b * p, n, -1), frame_keys, chunk)
            x = xt.view(b, p, n, -1).transpose(1, 2).reshape(b * n, p, -1)
            x = _chunked(point_block, x, point_keys, chunk).view(b, n, p, -1)
        depth = self.depth_head(x).float()
        seen = features[..., FEATURES.index("visible")] > 0.5
        if frame_mask is not None:
            seen = seen & frame_mask[:, :, None]
        logit = self.motion_head(_masked_mean(x, seen, dim=1)).float()[..., 0]
        return DepthOutput(depth[..., 0], depth[..., 1].clamp(-6.0, 3.0), logit)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


@dataclass
class Conditioning:
    """What geometry knows about a window, as network input. features (N, P, F) float32 · scale: the camera-frame
    depth that log-depth 0 means (the median known static depth; 1 when none is known)."""

    features: np.ndarray
    scale: float

    @property
    def visible(self) -> np.ndarray:
        """(N, P) bool."""
        return self.features[..., FEATURES.index("visible")] > 0.5

    @property
    def known(self) -> np.ndarray:
        """(N, P) bool: static depth known."""
        return self.features[..., FEATURES.index("static_known")] > 0.5

    def window(self, start: int, end: int, columns: np.ndarray) -> "Conditioning":
        """Frames [start, end) of the tracks ``columns``."""
        return Conditioning(self.features[start:end][:, columns], self.scale)


def clip_scale(static_depth: np.ndarray, visible: np.ndarray) -> tuple[float, bool]:
    """(the median known static depth, True) — (1, False) when fewer than 8 entries know it."""
    known = np.isfinite(static_depth) & (static_depth > 0) & visible
    return (float(np.median(static_depth[known])), True) if known.sum() >= 8 else (1.0, False)


@dataclass(frozen=True)
class ClipGeometry:
    """What geometry knows about a whole clip (the inputs of :func:`conditioning`), from which the tokens are built
    a window at a time (:meth:`window`): memory bounded by a window, not by the clip. Same fields as
    :func:`conditioning`'s arguments."""

    tracks: np.ndarray
    visible: np.ndarray
    cameras: Cameras
    motion_score: np.ndarray
    static_depth: np.ndarray
    contact_depth: np.ndarray
    plane: GroundPlane | None

    @property
    def known(self) -> np.ndarray:
        """(N, P) bool: static depth known."""
        return np.isfinite(self.static_depth) & (self.static_depth > 0) & self.visible

    @functools.cached_property
    def scale(self) -> tuple[float, bool]:
        """:func:`clip_scale` of the whole clip."""
        return clip_scale(self.static_depth, self.visible)

    def window(self, start: int, end: int, columns: np.ndarray) -> Conditioning:
        """The tokens of frames [start, end) for the tracks ``columns`` (P',) — the same as the whole clip's
        :func:`conditioning` there: the clip's scale, and the local triangulation over the frames beside the
        window too."""
        lo, hi = max(0, start - LOCAL_HALF_WINDOW), min(self.visible.shape[0], end + LOCAL_HALF_WINDOW)
        frames = slice(lo, hi)
        cond = conditioning(self.tracks[frames], self.visible[frames], self.cameras.subset(frames), self.motion_score,
                            self.static_depth[frames], self.contact_depth[frames], self.plane, columns, self.scale)
        return Conditioning(cond.features[start - lo:end - lo], cond.scale)


def conditioning(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, motion_score: np.ndarray,
                 static_depth: np.ndarray, contact_depth: np.ndarray, plane: GroundPlane | None,
                 columns: np.ndarray | None = None, scale: tuple[float, bool] | None = None) -> Conditioning:
    """The network's input tokens (:data:`FEATURES`) for one window.

    tracks (N, P, 2) px · visible (N, P) bool · cameras: the solved ones · motion_score (P,): log of the static-fit
    residual over the clip's noise level · static_depth (N, P): camera-frame depth of static tracks triangulated
    under the cameras, NaN where unknown (moving tracks, no parallax) · contact_depth (N, P): the ground-contact
    prior's depth, NaN where it has none · plane: the ground (None: none found) · columns: the tracks to build
    tokens for (all by default) · scale: (the depth log-depth 0 means, whether it is known), :func:`clip_scale`
    (None: of these frames and all their tracks)."""
    scale, scaled = clip_scale(static_depth, visible) if scale is None else scale
    if columns is not None:
        tracks, visible, motion_score = tracks[:, columns], visible[:, columns], motion_score[columns]
        static_depth, contact_depth = static_depth[:, columns], contact_depth[:, columns]
    n, p = visible.shape
    rays = bearings(tracks.astype(np.float64), cameras.intrinsics)
    rays = rays[..., :2] / np.maximum(rays[..., 2:], 1e-6)
    known_static = np.isfinite(static_depth) & (static_depth > 0) & visible
    features = np.zeros((n, p, len(FEATURES)), np.float32)
    features[..., 0:2] = np.clip(rays, -3, 3)
    features[..., 2] = visible
    features[..., 3] = np.clip(np.nan_to_num(motion_score, nan=0.0, posinf=4.0), -3, 4)[None]
    features[..., 4] = np.where(known_static, np.log(np.where(known_static, static_depth, 1) / scale), 0)
    features[..., 5] = known_static
    contact = np.isfinite(contact_depth) & (np.nan_to_num(contact_depth) > 0) & visible
    features[..., 6] = np.clip(np.where(contact, np.log(np.where(contact, contact_depth, 1) / scale), 0), -4, 4)
    features[..., 7] = contact
    if plane is not None and scaled:
        up = cameras.world_to_camera[:, :3, :3] @ plane.normal                   # (N, 3) the ground's normal
        height = plane.height(cameras.centres) / scale                            # (N,) camera above the ground
        descent = np.einsum("npc,nc->np", np.concatenate([rays, np.ones((n, p, 1))], -1), up)
        meets = descent < -1e-6
        floor = np.where(meets, height[:, None] / np.where(meets, -descent, 1.0), 1.0)
        meets &= floor > 0
        features[..., 8] = np.clip(np.where(meets, np.log(np.where(meets, floor, 1.0)), 0), -4, 4)
        features[..., 9] = meets
        features[..., 10:13] = up[:, None]
        features[..., 13] = np.clip(height, -4, 4)[:, None]
        features[..., 14] = 1.0
    local, residual, _ = local_triangulation(tracks, visible, cameras.world_to_camera, cameras.intrinsics)
    focal = cameras.intrinsics[:, None, 0, 0]
    near = np.isfinite(local) & visible
    features[..., 15] = np.clip(np.where(near, np.log(np.where(near, local, 1.0) / scale), 0), -4, 4)
    features[..., 16] = np.clip(np.where(near, np.log(np.maximum(np.nan_to_num(residual) * focal, 1e-3)), 0), -4, 6)
    features[..., 17] = near
    return Conditioning(features, scale)


def load_conditioned(path: str | Path, device: str | torch.device = "cpu") -> tuple[ConditionedNet, dict]:
    """The conditioned network of a checkpoint file (eval mode, fp32) and its payload."""
    payload = load_checkpoint(path)
    if payload.get("config", {}).get("kind") != KIND:
        raise CheckpointError(f"{path}: not a geometry-conditioned checkpoint")
    try:
        model = ConditionedNet(ConditionedConfig.from_dict(payload["config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in payload["model"].items()})
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({exc})") from None
    return model.to(device).eval(), payload


@torch.no_grad()
def predict_depth(model: ConditionedNet, cond: Conditioning, device: str | torch.device = "cpu"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One window through the network → (depth (N, P) camera-frame in the cameras' units, sigma (N, P) relative
    uncertainty of log-depth, motion probability (P,))."""
    out = model(torch.from_numpy(cond.features)[None].to(device))
    depth = cond.scale * np.exp(out.log_depth[0].cpu().numpy().astype(np.float64))
    return depth, np.exp(out.log_sigma[0].cpu().numpy()), torch.sigmoid(out.motion_logit[0]).cpu().numpy()


@dataclass
class MovingDepth:
    """The network's answer for a clip: depth (N, P) camera-frame in the cameras' units (arbitrary where no static
    depth is known) · sigma (N, P): relative uncertainty of that depth · motion (P,): probability that a track
    moves."""

    depth: np.ndarray
    sigma: np.ndarray
    motion: np.ndarray


CONTEXT_TRACKS = 256   # static tracks with known depth the network sees beside the tracks it places
GROUP_TRACKS = 512     # tracks placed per pass


def window_context(known: np.ndarray, need: np.ndarray, start: int, end: int) -> np.ndarray:
    """The context of window [start, end): up to ``CONTEXT_TRACKS`` tracks not ``need``-ed (P,) with known static
    depth, those ``known`` (N, P) in most of its frames (ties: the lower index). → (C,) int."""
    count = known[start:end].sum(0)
    others = np.flatnonzero(~need & (count > 0))
    return others[np.argsort(-count[others], kind="stable")[:CONTEXT_TRACKS]]


def moving_depth(model: ConditionedNet, cond: Conditioning | ClipGeometry, spans: list[tuple[int, int]],
                 need: np.ndarray, device: str | torch.device = "cpu") -> MovingDepth:
    """The network over a clip's ``spans`` (frame windows from :func:`~.stitch.window_spans`) for the tracks
    ``need`` (P,) bool marks (those geometry cannot place) that each window sees, beside up to ``CONTEXT_TRACKS``
    static tracks of known depth (those the window sees with it longest), ``GROUP_TRACKS`` at a time; ``cond`` gives
    each window's tokens (:class:`ClipGeometry` builds them then). Log-depths are averaged where windows overlap
    (weighted by certainty), motion probabilities over the windows that see a track; all windows share the clip's
    scale, so nothing needs stitching. Tracks not needed get NaN."""
    known, visible = cond.known, cond.visible
    n, p = visible.shape
    wanted = np.flatnonzero(need)
    log_sum, weight, sigma_sum = np.zeros((n, p)), np.zeros((n, p)), np.zeros((n, p))
    motion, seen = np.zeros(p), np.zeros(p)
    for start, end in spans:                  # each window: only the tracks it sees (cost linear in the clip)
        here = wanted[visible[start:end, wanted].any(0)]
        if here.size == 0:
            continue
        context = window_context(known, need, start, end)
        tokens = cond.window(start, end, np.concatenate([here, context]))
        for part in np.array_split(np.arange(here.size), -(-here.size // GROUP_TRACKS)):
            group = here[part]
            window = Conditioning(tokens.features[:, np.concatenate([part, here.size + np.arange(context.size)])],
                                  tokens.scale)
            depth, sigma, prob = predict_depth(model, window, device)
            k = group.size
            w = 1.0 / np.maximum(sigma[:, :k], 1e-3) ** 2
            log_sum[start:end, group] += w * np.log(depth[:, :k])
            sigma_sum[start:end, group] += w * sigma[:, :k]
            weight[start:end, group] += w
            motion[group] += prob[:k]
            seen[group] += 1
        give_back_freed()                     # else each window's freed activations stay resident
    with np.errstate(invalid="ignore", divide="ignore"):
        depth, sigma = np.exp(log_sum / weight), sigma_sum / weight
    estimated = weight > 0                    # frames of windows that do not see a track hold its nearest estimate
    return MovingDepth(hold_nearest(depth, estimated), hold_nearest(sigma, estimated),
                       np.where(seen > 0, motion / np.maximum(seen, 1), 0.5))
