"""Motion levels from geometry: how badly each track fits a static point under the solved cameras.

A static track, placed by triangulation (general motion) or as a direction (a camera that only rotates), reprojects
within the tracker's noise in every frame that sees it; a track on something that moves does not. Each track's
residual — the ``RESIDUAL_QUANTILE`` of its reprojection errors over the frames that see it, robust to a few
outlying entries — is compared with the clip's noise level (the robust spread of the residuals of the better-fitting
half of the tracks). Where geometry says little (a track seen in few frames) the network's γ fills in, as far as it
agrees with geometry on the tracks geometry is sure of.

γ (``motion_level``, DESIGN §4): the residual in normalised image units (px / focal), fused with the network's γ
(rank-matched to that scale) by each track's confidence. A static track's γ is about the noise level over the focal
(≈ 0.001 for LK tracks at 640 px); tracks with γ below ``STATIC_SIGMAS`` × that are static — the one static set that
bundle adjustment and the points use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contracts import Cameras
from ..evaluation.metrics import motion_auc
from .triangulation import direction_errors, mean_directions, reprojection_errors, triangulate_robust

__all__ = ["MotionLevels", "static_fit", "track_residuals", "motion_levels", "STATIC_SIGMAS"]

RESIDUAL_QUANTILE = 0.8   # a track's residual: this quantile of its per-frame reprojection errors
STATIC_SIGMAS = 4.0       # static: residual below this × the clip's noise level
MIN_NOISE_PX = 0.25       # the noise level never drops below this (sub-pixel trackers on a still scene)
CONFIDENT_FRAMES = 10     # a track seen in this many frames is judged by geometry alone
MIN_AGREEMENT_TRACKS = 10  # sure moving and sure static tracks, each, needed to judge the network's γ


@dataclass
class MotionLevels:
    """gamma (P,) γ > 0 · residual_px (P,) static-fit residual · noise_px: the clip's noise level · static (P,) bool ·
    confidence (P,) in [0, 1], the weight of geometry against the network's γ · network_trust in [0, 1]: how well the
    network's γ ranks the tracks geometry is sure of (2·AUC − 1; how much it may fill in elsewhere)."""

    gamma: np.ndarray
    residual_px: np.ndarray
    noise_px: float
    static: np.ndarray
    confidence: np.ndarray
    network_trust: float = 0.0

    def to_meta(self) -> dict:
        return {"noise_px": self.noise_px, "static_tracks": int(self.static.sum()),
                "static_sigmas": STATIC_SIGMAS, "residual_quantile": RESIDUAL_QUANTILE,
                "geometry_weight_mean": float(self.confidence.mean()), "network_trust": self.network_trust,
                "gamma": "static-fit residual in normalised image units (px / focal), fused with the network's γ "
                         "where a track is seen in few frames; static below static_sigmas × noise_px / focal"}


def static_fit(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, rotation_only: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """Every track placed as static: → (points (P, 3), NaN where unplaced — unit directions when ``rotation_only`` —,
    errors (N, P) px, NaN where the track is not visible, inf behind a camera)."""
    tracks = tracks.astype(np.float64)
    if rotation_only:
        placed = mean_directions(tracks, visible, cameras.world_to_camera, cameras.intrinsics)
        errors = direction_errors(placed, tracks, cameras.world_to_camera, cameras.intrinsics)
    else:
        placed = triangulate_robust(tracks, visible, cameras.world_to_camera, cameras.intrinsics)
        errors = reprojection_errors(placed, tracks, cameras.world_to_camera, cameras.intrinsics)
    return placed, np.where(visible, errors, np.nan)


def track_residuals(errors: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(N, P) errors → (P,) the ``RESIDUAL_QUANTILE`` over visible frames (nearest rank; inf for a track seen in
    fewer than two frames)."""
    ordered = np.sort(np.where(visible, np.minimum(np.nan_to_num(errors, nan=1e6), 1e6), np.inf), axis=0)
    count = visible.sum(0)
    rank = np.clip(np.round(RESIDUAL_QUANTILE * (count - 1)).astype(int), 0, None)
    out = ordered[rank, np.arange(errors.shape[1])]
    out[count < 2] = np.inf
    return out


def _noise_level(errors: np.ndarray, residual: np.ndarray) -> float:
    """Robust spread (1.4826 × median absolute error) of the entries of the better-fitting half of the tracks."""
    finite = np.isfinite(residual)
    if not finite.any():
        return MIN_NOISE_PX
    better = finite & (residual <= np.median(residual[finite]))
    entries = errors[:, better]
    entries = entries[np.isfinite(entries)]
    return max(float(1.4826 * np.median(entries)) if entries.size else MIN_NOISE_PX, MIN_NOISE_PX)


def _rank_matched(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``values`` (P,) replaced by the ``reference`` quantile of their rank (keeps their order, takes its scale)."""
    ranks = np.argsort(np.argsort(values)) / max(len(values) - 1, 1)
    return np.quantile(reference, ranks)


def motion_levels(errors: np.ndarray, visible: np.ndarray, focal_px: float,
                  network_gamma: np.ndarray | None = None, static_gamma: float | None = None) -> MotionLevels:
    """γ of every track from its static-fit errors (:func:`static_fit`) (module docstring).

    errors (N, P) px · visible (N, P) bool · focal_px: the clip's focal · network_gamma (P,) or None ·
    static_gamma: tracks with γ below this are static (None: ``STATIC_SIGMAS`` × the noise level / focal)."""
    residual = track_residuals(errors, visible)
    noise = _noise_level(errors, residual)
    confidence = np.clip((visible.sum(0) - 1) / (CONFIDENT_FRAMES - 1), 0.0, 1.0)
    confidence[~np.isfinite(residual)] = 0.0
    finite = np.isfinite(residual)
    fallback = float(np.max(residual[finite])) if finite.any() else noise
    geometric = np.maximum(np.where(finite, residual, fallback), 1e-3 * noise) / focal_px
    gamma, trust = geometric, 0.0
    if network_gamma is not None:
        network_gamma = np.asarray(network_gamma, dtype=np.float64)
        threshold = STATIC_SIGMAS * noise / focal_px if static_gamma is None else static_gamma
        trust = _agreement(network_gamma, geometric >= threshold, confidence == 1.0)
        learned = _rank_matched(network_gamma, geometric)
        weight = 1 - (1 - confidence) * trust                       # geometry's weight; the network's is the rest
        gamma = np.exp(weight * np.log(geometric) + (1 - weight) * np.log(learned))
        confidence = weight
    static = gamma < (STATIC_SIGMAS * noise / focal_px if static_gamma is None else static_gamma)
    return MotionLevels(gamma, residual, noise, static, confidence, trust)


def _agreement(network_gamma: np.ndarray, moving: np.ndarray, sure: np.ndarray) -> float:
    """How far the network's γ can be trusted where geometry says little: how well it ranks the tracks geometry is
    sure of — moving (``moving``) above static — as 2·AUC − 1, clipped at 0 (measured: the shipped small network's γ
    ranks movers *below* static tracks on generated clips, AUC 0.08–0.53, so it must not fill in blindly); 0 with
    fewer than ``MIN_AGREEMENT_TRACKS`` sure tracks of either kind."""
    if min((sure & moving).sum(), (sure & ~moving).sum()) < MIN_AGREEMENT_TRACKS:
        return 0.0
    return float(max(2 * motion_auc(network_gamma[sure], moving[sure]) - 1, 0.0))
