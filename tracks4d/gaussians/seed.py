"""A Gaussian scene seeded by a reconstruction (Shape of Motion's initialisation, on our 3D tracks).

1. Motion bases from the moving tracks (:func:`~.motion.init_bases`), then fitted to those tracks — canonical
   positions, coefficients and bases together, L1 plus smooth bases, no rendering (:func:`fit_tracks`).
2. Gaussians: each moving track at its fitted canonical position, each static track at its static point; pixels
   of keyframes on a grid, back-projected at a depth interpolated from the nearest tracks of their own kind; moving
   pixels take the coefficients of their nearest moving tracks and are carried back to the canonical frame by
   them; colours from the frames.

Only the frames ``train`` marks are used, so held-out frames stay unseen.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..contracts import Reconstruction
from ..io.colmap import static_mask_of
from .motion import MotionBases, init_bases
from .scene import GaussianScene

__all__ = ["seed_scene", "fit_tracks", "NEIGHBOURS"]

NEIGHBOURS = 4          # tracks a seeded pixel takes its depth (and motion) from
INITIAL_OPACITY = 0.6
SCALE_OVERLAP = 0.7     # a seed's radius: this × the grid spacing at its depth
FIT_STEPS = 300


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.02, 0.98)
    return np.log(x / (1 - x))


def fit_tracks(points: np.ndarray, visible: np.ndarray, canonical: int, rotations: np.ndarray,
               translations: np.ndarray, labels: np.ndarray, smooth: float = 0.1, steps: int = FIT_STEPS
               ) -> tuple[np.ndarray, np.ndarray, MotionBases]:
    """Fit the motion model to M 3D tracks: points (N, M, 3) · visible (N, M) · bases (B, N, 3, 3), (B, N, 3) ·
    labels (M,) → canonical positions (M, 3), coefficient logits (M, B), bases. L1 on visible entries, plus
    ``smooth`` × the bases' acceleration (in units of the scene's spread)."""
    x = torch.as_tensor(np.where(visible[..., None], points, 0.0), dtype=torch.float32)
    seen = torch.as_tensor(visible)
    scale = float(np.nanmedian(np.linalg.norm(points[visible] - np.nanmedian(points[visible], 0), axis=1))) or 1.0
    start = np.where(visible[canonical][:, None], points[canonical], np.nanmedian(np.where(
        visible[..., None], points, np.nan), 0))
    centres = np.stack([start[labels == b].mean(0) for b in range(rotations.shape[0])])
    dist = np.linalg.norm(start[:, None] - centres[None], axis=-1)
    tau = max(float(np.median(dist[np.arange(len(labels)), labels])), 1e-3 * scale)
    means = torch.nn.Parameter(torch.as_tensor(start, dtype=torch.float32))
    logits = torch.nn.Parameter(torch.as_tensor(-dist / tau, dtype=torch.float32))
    motion = MotionBases(torch.as_tensor(rotations), torch.as_tensor(translations))
    opt = torch.optim.Adam([{"params": [means], "lr": 1e-2 * scale}, {"params": [logits], "lr": 1e-2},
                            {"params": [motion.rotations], "lr": 1e-2},
                            {"params": [motion.translations], "lr": 1e-2 * scale}])
    for step in range(steps):
        rot, trans = motion.blend_all(torch.softmax(logits, -1))              # (M, N, 3, 3), (M, N, 3)
        moved = (rot @ means[:, None, :, None]).squeeze(-1) + trans
        error = (moved - x.transpose(0, 1)).abs().sum(-1)[seen.T].mean()
        loss = error / scale + smooth * motion.acceleration() / scale ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        for group in opt.param_groups:                 # decay to a tenth over the fit
            group["lr"] *= 0.1 ** (1 / steps)
    return means.detach().numpy(), logits.detach().numpy(), motion


def _interpolate(query: np.ndarray, pixels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inverse-distance weighted ``values`` (K, D) of the nearest ``pixels`` (K, 2) at ``query`` (Q, 2) → (Q, D)."""
    k = min(NEIGHBOURS, len(pixels))
    dist, idx = cKDTree(pixels).query(query, k)
    dist, idx = dist.reshape(len(query), k), idx.reshape(len(query), k)
    w = 1.0 / np.maximum(dist, 0.5) ** 2
    return (w[..., None] * values[idx]).sum(1) / w.sum(1, keepdims=True)


def _back_project(pixels: np.ndarray, depth: np.ndarray, K: np.ndarray, world_to_camera: np.ndarray) -> np.ndarray:
    rays = np.c_[pixels, np.ones(len(pixels))] @ np.linalg.inv(K).T
    cam = rays * depth[:, None]
    c2w = np.linalg.inv(world_to_camera)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def seed_scene(rec: Reconstruction, frames: np.ndarray, intrinsics: np.ndarray, tracks: np.ndarray,
               train: np.ndarray, bases: int = 10, stride: int = 3, keyframe_every: int = 6,
               max_gaussians: int = 40_000, seed: int = 0) -> GaussianScene:
    """frames (N, H, W, 3) float in [0, 1] at the working resolution · intrinsics (N, 3, 3) for it · tracks
    (N, P, 2) the reconstruction's tracks in its pixels · train (N,) bool: frames that may be used · bases: B ·
    stride: grid spacing of seeded pixels · keyframe_every: frames between keyframes · max_gaussians: a random
    subset of the static seeds keeps the total under this."""
    rng = np.random.default_rng(seed)
    n, h, w = frames.shape[:3]
    static = static_mask_of(rec, None)
    visible = rec.visible & train[:, None] & (rec.depth > 0) & np.isfinite(rec.points).all(-1) & rec.shown[None]
    moving_tracks = np.flatnonzero(~static & (visible.sum(0) >= 2))
    train_frames = np.flatnonzero(train)
    canonical = int(train_frames[np.argmax(visible[train_frames][:, moving_tracks].sum(1))]
                    if moving_tracks.size else train_frames[0])

    if moving_tracks.size:
        rot, trans, labels = init_bases(rec.points[:, moving_tracks], visible[:, moving_tracks], canonical, bases,
                                        seed)
        track_means, track_logits, motion = fit_tracks(rec.points[:, moving_tracks], visible[:, moving_tracks],
                                                       canonical, rot, trans, labels)
    else:
        motion = MotionBases(torch.eye(3).expand(1, n, 3, 3), torch.zeros(1, n, 3))
        track_means, track_logits = np.zeros((0, 3)), np.zeros((0, 1))
    n_bases = motion.count

    ys, xs = np.mgrid[stride // 2:h:stride, stride // 2:w:stride]
    grid = np.c_[xs.ravel(), ys.ravel()].astype(np.float64)
    keyframes = [t for t in train_frames if (t - canonical) % keyframe_every == 0] or [canonical]
    moving_set = set(moving_tracks.tolist())
    seeds = {"static": [], "moving": []}
    for t in keyframes:
        seen = np.flatnonzero(visible[t])
        if seen.size < 3:
            continue
        is_moving = np.array([p in moving_set for p in seen])
        _, nearest = cKDTree(tracks[t, seen]).query(grid)
        pixel_moving = is_moving[nearest]
        for kind, mask, pick in (("static", ~pixel_moving, ~is_moving), ("moving", pixel_moving, is_moving)):
            if pick.sum() < 1 or not mask.any():
                continue
            src = seen[pick]
            log_depth = _interpolate(grid[mask], tracks[t, src], np.log(rec.depth[t, src])[:, None])
            depth = np.exp(log_depth[:, 0])
            world = _back_project(grid[mask], depth, intrinsics[t], rec.world_to_camera[t])
            px = grid[mask].astype(int)
            colour = frames[t, px[:, 1], px[:, 0]]
            radius = np.log(SCALE_OVERLAP * stride * depth / intrinsics[t, 0, 0])
            entry = {"means": world, "colours": colour, "log_scale": radius}
            if kind == "moving":
                index = np.searchsorted(moving_tracks, src)
                entry["logits"] = _interpolate(grid[mask], tracks[t, src], track_logits[index])
                entry["means"] = _to_canonical(world, entry["logits"], motion, t)
            seeds[kind].append(entry)

    def stack(kind: str, key: str, width: int) -> np.ndarray:
        parts = [s[key] for s in seeds[kind]]
        return np.concatenate(parts).reshape(-1, width) if parts else np.zeros((0, width))

    s_means, s_colours, s_scales = stack("static", "means", 3), stack("static", "colours", 3), \
        stack("static", "log_scale", 1)
    static_tracks = np.flatnonzero(static & np.isfinite(rec.static_points).all(1) & visible.any(0))
    budget = max_gaussians - len(static_tracks) - len(track_means) - sum(len(s["means"]) for s in seeds["moving"])
    if len(s_means) > budget > 0:
        keep = rng.choice(len(s_means), budget, replace=False)
        s_means, s_colours, s_scales = s_means[keep], s_colours[keep], s_scales[keep]
    m_means = np.concatenate([track_means, stack("moving", "means", 3)])
    track_colours = _track_colours(frames, tracks, visible, moving_tracks, canonical)
    m_colours = np.concatenate([track_colours, stack("moving", "colours", 3)])
    spacing = np.log(SCALE_OVERLAP * stride * np.median(rec.depth[visible]) / intrinsics[canonical, 0, 0])
    m_scales = np.concatenate([np.full((len(track_means), 1), spacing), stack("moving", "log_scale", 1)])
    m_logits = np.concatenate([track_logits, stack("moving", "logits", n_bases)])

    t_means = rec.static_points[static_tracks]
    t_colours = _track_colours(frames, tracks, visible, static_tracks, canonical)
    t_scales = np.full((len(static_tracks), 1), spacing)

    means = np.concatenate([s_means, t_means, m_means])
    count = len(means)
    moving = np.r_[np.zeros(len(s_means) + len(t_means), bool), np.ones(len(m_means), bool)]
    track = np.r_[np.full(len(s_means), -1), static_tracks, moving_tracks,
                  np.full(len(m_means) - len(track_means), -1)]
    logits = np.concatenate([np.zeros((len(s_means) + len(t_means), n_bases)), m_logits])
    quats = np.tile([1.0, 0.0, 0.0, 0.0], (count, 1))
    log_scales = np.repeat(np.concatenate([s_scales, t_scales, m_scales]), 3, 1)
    opacity = np.full(count, _logit(np.array(INITIAL_OPACITY)))
    colours = _logit(np.concatenate([s_colours, t_colours, m_colours]))
    return GaussianScene(means, quats, log_scales, opacity, colours, logits, moving, track, motion, canonical)


def _to_canonical(world: np.ndarray, logits: np.ndarray, motion: MotionBases, t: int) -> np.ndarray:
    """World positions (K, 3) at frame t → canonical positions under the blend of ``logits`` (K, B)."""
    with torch.no_grad():
        rot, trans = motion.blend(torch.softmax(torch.as_tensor(logits, dtype=torch.float32), -1), t)
        local = torch.as_tensor(world, dtype=torch.float32) - trans
        return (rot.transpose(1, 2) @ local[:, :, None]).squeeze(-1).numpy()


def _track_colours(frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray, index: np.ndarray,
                   canonical: int) -> np.ndarray:
    """(M, 3): each track's colour in the first frame that sees it (the canonical one when it does)."""
    if index.size == 0:
        return np.zeros((0, 3))
    h, w = frames.shape[1:3]
    seen = visible[:, index]
    first = np.where(seen[canonical], canonical, seen.argmax(0))
    px = np.rint(tracks[first, index]).astype(int)
    return frames[first, np.clip(px[:, 1], 0, h - 1), np.clip(px[:, 0], 0, w - 1)]
