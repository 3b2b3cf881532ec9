"""The TracksTo4D network: equivariant attention alternating over frames and over tracks.

``TracksTo4D(config)(inputs, frame_mask, point_mask)`` maps normalised tracks to cameras, low-rank 3D bases,
per-frame coefficients and per-point motion levels γ. Batches of windows with different N and P are padded;
padded entries never change the outputs of real ones.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.transforms import rot6d_to_matrix

__all__ = ["ModelConfig", "PRESETS", "TracksTo4D", "ModelOutput", "encode_inputs", "to_camera"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters. ``ModelConfig.preset("paper")`` is the official model."""

    width: int = 256
    layers: int = 3
    heads: int = 16
    head_dim: int = 64
    mlp_dim: int = 2048
    n_freqs: int = 12
    n_bases: int = 12
    camera_kernel: int = 31
    camera_extra_channels: int = 2
    """The official camera head emits 2 channels nothing reads; kept so ``paper`` matches parameter for parameter."""
    predict_focal: bool = False
    """Use the focal channel: projections are scaled by 1 + 0.05·f_t (unknown intrinsics)."""
    chunk_tokens: int = 1 << 15
    """On CPU, each attention block runs on slices of about this many (frame, track) tokens to bound memory."""

    @staticmethod
    def preset(name: str, **overrides) -> "ModelConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model config has unknown fields {sorted(unknown)}")
        return cls(**data)

    @property
    def camera_channels(self) -> int:
        """centre (3) + focal (1) + coefficients (K) + 6D rotation (6) + unused extras."""
        return 3 + 1 + self.n_bases + 6 + self.camera_extra_channels

    @property
    def input_dim(self) -> int:
        """Per channel: the raw value and sin/cos at ``n_freqs`` frequencies; 3 channels; plus a constant 1."""
        return 3 * (1 + 2 * self.n_freqs) + 1


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    # CPU preset: half width, quarter-size attention and MLP (see benchmarks/bench_model.py for the trade-off).
    "small": ModelConfig(width=128, heads=8, head_dim=32, mlp_dim=512, camera_extra_channels=0),
}


def encode_inputs(inputs: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """Sinusoidal encoding of each input channel plus a constant 1.

    inputs: (..., 3) normalised x, y and the 0/1 visibility flag → (..., 3·(1 + 2·n_freqs) + 1),
    laid out per channel as [raw, sin(2^k π v)_k, cos(2^k π v)_k].
    """
    freqs = (2.0 ** torch.arange(n_freqs, device=inputs.device, dtype=inputs.dtype)) * math.pi
    proj = inputs[..., None] * freqs  # (..., 3, F)
    per_channel = torch.cat((inputs[..., None], proj.sin(), proj.cos()), dim=-1)  # (..., 3, 1+2F)
    ones = torch.ones(inputs.shape[:-1] + (1,), device=inputs.device, dtype=inputs.dtype)
    return torch.cat((per_channel.flatten(-2), ones), dim=-1)


def time_embedding(n_frames: int, dim: int, device, dtype, temperature: float = 10000.0) -> torch.Tensor:
    """Sinusoidal frame-index embedding (n_frames, dim): [sin(t·ω_i), cos(t·ω_i)], ω_i = T^(−i/(dim/2 − 1))."""
    t = torch.arange(n_frames, device=device, dtype=torch.float32)
    half = dim // 2
    omega = 1.0 / temperature ** (torch.arange(half, device=device, dtype=torch.float32) / max(half - 1, 1))
    ang = t[:, None] * omega[None]
    return torch.cat((ang.sin(), ang.cos()), dim=1).to(dtype)


class Attention(nn.Module):
    """Pre-norm multi-head self-attention over the second-to-last axis (no biases, as the official model)."""

    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.LayerNorm(width)
        self.to_qkv = nn.Linear(width, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, width, bias=False)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (S, L, width) sequences · key_mask: (S, L) bool, True = real key, or None → (S, L, width)."""
        s, length, _ = x.shape
        q, k, v = self.to_qkv(self.norm(x)).view(s, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.to_out(out.transpose(1, 2).reshape(s, length, -1))


class TransformerBlock(nn.Module):
    """x + Attn(LN x); x + MLP(LN x); then a LayerNorm (one official ``Transformer`` of depth 1)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = Attention(cfg.width, cfg.heads, cfg.head_dim)
        self.mlp = nn.Sequential(nn.LayerNorm(cfg.width), nn.Linear(cfg.width, cfg.mlp_dim), nn.GELU(),
                                 nn.Linear(cfg.mlp_dim, cfg.width))
        self.norm = nn.LayerNorm(cfg.width)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x: (S, L, width), attention along L · key_mask: (S, L) bool or None."""
        x = x + self.attn(x, key_mask)
        x = x + self.mlp(x)
        return self.norm(x)


@dataclass
class ModelOutput:
    """Network predictions for a batch (B windows, N frames, P tracks, K bases).

    rotation: (B, N, 3, 3) camera-to-world · centre: (B, N, 3) camera centres ·
    coefficients: (B, N, K), coefficients[..., 0] = 1 · bases: (B, P, K, 3), bases[:, :, 0] is the static B₁ ·
    motion_level: (B, P) γ > 0 · focal_scale: (B, N) multiplies normalised projections (1 unless predicted).
    """

    rotation: torch.Tensor
    centre: torch.Tensor
    coefficients: torch.Tensor
    bases: torch.Tensor
    motion_level: torch.Tensor
    focal_scale: torch.Tensor
    extras: dict = field(default_factory=dict)

    @property
    def static_points(self) -> torch.Tensor:
        """B₁: (B, P, 3)."""
        return self.bases[:, :, 0]

    def points(self, detach_static: bool = False) -> torch.Tensor:
        """X_t = B₁ + Σ_{k≥2} c_{t,k} B_k: (B, N, P, 3) world points per frame."""
        static = self.static_points.detach() if detach_static else self.static_points
        dynamic = torch.einsum("bnk,bpkc->bnpc", self.coefficients[..., 1:], self.bases[:, :, 1:])
        return static[:, None] + dynamic

    def camera_to_world(self) -> torch.Tensor:
        """(B, N, 4, 4) homogeneous camera-to-world poses."""
        b, n = self.centre.shape[:2]
        pose = torch.zeros(b, n, 4, 4, dtype=self.centre.dtype, device=self.centre.device)
        pose[..., :3, :3] = self.rotation
        pose[..., :3, 3] = self.centre
        pose[..., 3, 3] = 1
        return pose


def to_camera(points: torch.Tensor, rotation: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """World → camera: X_cam = Rᵀ (X − c). points (B, N, P, 3), rotation (B, N, 3, 3), centre (B, N, 3)."""
    return torch.einsum("bnji,bnpj->bnpi", rotation, points - centre[:, :, None])


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """Mean of x over ``dim`` counting only entries where mask (broadcastable to x[..., 0]) is True."""
    if mask is None:
        return x.mean(dim)
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(dim) / w.sum(dim).clamp(min=1)


class TracksTo4D(nn.Module):
    """The TracksTo4D network. Parameter names follow the structure of the official model."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = cfg = config or ModelConfig()
        self.embed = nn.Sequential(nn.LayerNorm(cfg.input_dim), nn.Linear(cfg.input_dim, cfg.width),
                                   nn.LayerNorm(cfg.width))
        self.frame_blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.layers))
        self.point_blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.layers))
        self.camera_head = nn.Conv1d(cfg.width, cfg.camera_channels, cfg.camera_kernel)
        self.point_head = nn.Linear(cfg.width, 3 * cfg.n_bases + 1)
        nn.init.xavier_uniform_(self.camera_head.weight)
        nn.init.xavier_uniform_(self.point_head.weight)

    def forward(self, inputs: torch.Tensor, frame_mask: torch.Tensor | None = None,
                point_mask: torch.Tensor | None = None) -> ModelOutput:
        """inputs: (B, N, P, 3) normalised x, y and the visibility flag · frame_mask: (B, N) bool, True = real
        frame · point_mask: (B, P) bool, True = real track. Masks may be None when nothing is padded."""
        if inputs.ndim != 4 or inputs.shape[-1] != 3:
            raise ValueError(f"inputs must be (B, N, P, 3), got {tuple(inputs.shape)}")
        b, n, p, _ = inputs.shape
        cfg = self.config
        x = self.embed(encode_inputs(inputs, cfg.n_freqs))
        x = x + time_embedding(n, cfg.width, x.device, x.dtype)[None, :, None]
        chunk = cfg.chunk_tokens if x.device.type == "cpu" else 0
        # attention along frames sees sequences (B·P, N); along tracks (B·N, P)
        frame_keys = None if frame_mask is None else frame_mask[:, None].expand(b, p, n).reshape(b * p, n)
        point_keys = None if point_mask is None else point_mask[:, None].expand(b, n, p).reshape(b * n, p)
        for frame_block, point_block in zip(self.frame_blocks, self.point_blocks):
            xt = x.transpose(1, 2).reshape(b * p, n, -1)
            xt = _chunked(frame_block, xt, frame_keys, chunk)
            x = xt.view(b, p, n, -1).transpose(1, 2).reshape(b * n, p, -1)
            x = _chunked(point_block, x, point_keys, chunk).view(b, n, p, -1)
        frame_feat = _masked_mean(x, point_mask[:, None] if point_mask is not None else None, dim=2)  # (B,N,C)
        point_feat = _masked_mean(x, frame_mask[:, :, None] if frame_mask is not None else None, dim=1)  # (B,P,C)
        cams = self._circular_conv(frame_feat, frame_mask)  # (B, N, channels)
        per_point = self.point_head(point_feat)  # (B, P, 3K+1)
        return self._decode(cams.float(), per_point.float())  # geometry in fp32 even under bf16 autocast

    def _circular_conv(self, feat: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
        """Conv1d over time with circular padding on each window's own length. feat (B, N, C) → (B, N, out).

        Equals ``Conv1d(padding_mode='circular')`` for an unpadded window, and works for any N ≥ 1.
        """
        b, n, _ = feat.shape
        kernel = self.config.camera_kernel
        lengths = (frame_mask.sum(1) if frame_mask is not None else torch.full((b,), n, device=feat.device))
        offsets = torch.arange(kernel, device=feat.device) - kernel // 2
        idx = (torch.arange(n, device=feat.device)[None, :, None] + offsets) % lengths.clamp(min=1)[:, None, None]
        gathered = feat[torch.arange(b, device=feat.device)[:, None, None], idx]  # (B, N, kernel, C)
        return torch.einsum("bnkc,ock->bno", gathered, self.camera_head.weight) + self.camera_head.bias

    def _decode(self, cams: torch.Tensor, per_point: torch.Tensor) -> ModelOutput:
        cfg, k = self.config, self.config.n_bases
        b, p = per_point.shape[:2]
        bases = per_point[..., : 3 * k].reshape(b, p, 3, k).transpose(2, 3)  # (B, P, K, 3)
        gamma = F.elu(per_point[..., 3 * k]) + 1.0 + 1e-5
        centre = cams[..., 0:3]
        focal = 1.0 + 0.05 * cams[..., 3] if cfg.predict_focal else torch.ones_like(cams[..., 3])
        coeff = cams[..., 4 : 4 + k]
        coeff = torch.cat((torch.ones_like(coeff[..., :1]), coeff[..., 1:]), dim=-1)
        rotation = rot6d_to_matrix(cams[..., 4 + k : 10 + k])
        return ModelOutput(rotation, centre, coeff, bases, gamma, focal)

    @torch.no_grad()
    def place_cameras(self, centre: tuple[float, float, float]) -> None:
        """Make every predicted camera sit at ``centre`` with identity rotation, whatever the input: the camera
        head's centre and rotation rows get zero weights and these biases (the optimum of camera pre-training)."""
        k = self.config.n_bases
        rows = list(range(0, 3)) + list(range(4 + k, 10 + k))
        self.camera_head.weight[rows] = 0.0
        self.camera_head.bias[0:3] = torch.tensor(centre)
        self.camera_head.bias[4 + k : 10 + k] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _chunked(block: TransformerBlock, x: torch.Tensor, key_mask: torch.Tensor | None, chunk_tokens: int):
    """Run ``block`` on slices of the sequence axis (dim 0) holding about ``chunk_tokens`` tokens each."""
    s, length = x.shape[:2]
    per = s if chunk_tokens <= 0 else max(1, chunk_tokens // max(length, 1))
    if per >= s:
        return block(x, key_mask)
    return torch.cat([block(x[i : i + per], None if key_mask is None else key_mask[i : i + per])
                      for i in range(0, s, per)], dim=0)
