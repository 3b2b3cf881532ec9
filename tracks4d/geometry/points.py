"""The points stage: every track's 3D position in every frame under the solved cameras.

- Static tracks (the motion stage's static set) are triangulated under the solved cameras (bundle-adjusted where the
  adjustment kept them). Where there is no parallax — a camera that only rotates, or a track whose triangulation
  fails — their depth is unobservable and the network's is used (scaled to the solved cameras' units).
- Moving tracks (:func:`moving_points`) keep the network's camera-frame depth, scaled to the solved cameras' units
  frame by frame and placed on the ray through the observed track, so they reproject exactly where tracked — except
  in the frames where their robust static fit reprojects within the noise (a thing at rest for part of the clip, a
  static track the tracker lost for a while), where they stay at that fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..contracts import Cameras, Reconstruction
from .motion import MOVING, STATIC_SIGMAS, MotionLevels
from .transforms import invert_rigid, transform_points
from .triangulation import bearings, track_slices

__all__ = ["PlacedPoints", "network_scale", "typical_depth", "lift_network", "moving_points", "place_points"]

MIN_SCALE_TRACKS = 8  # static tracks a frame needs for its own scale (else the clip's)
PARTLY_AT_REST = 0.5   # a moving track whose static fit holds in this share of its frames stays there in those
SCENE_DEPTH_MARGIN = 1.5  # an unreliable track's static fit is kept only within the static set's depth range
                          # (1st–99th percentile) widened by this factor


@dataclass
class PlacedPoints:
    """points (N, P, 3) world · static_points (P, 3) · depth (N, P) camera-frame z · observed (P,) bool: static
    tracks whose depth the cameras determine · scale (N,) network depth → solved units per frame."""

    points: np.ndarray
    static_points: np.ndarray
    depth: np.ndarray
    observed: np.ndarray
    scale: np.ndarray


def network_scale(world: np.ndarray, usable: np.ndarray, cameras: Cameras, network_depth: np.ndarray,
                  visible: np.ndarray) -> np.ndarray:
    """(N,) factors taking the network's camera-frame depth to the solved cameras' units: per frame, the median ratio
    of the depth of ``usable`` (P,) points ``world`` (P, 3) to the network's depth (N, P) of those tracks, over ≥
    ``MIN_SCALE_TRACKS`` visible ones; else the clip's median ratio; 1 where nothing is usable."""
    z = transform_points(cameras.world_to_camera, np.nan_to_num(world))[..., 2]
    pairs = visible & usable[None] & (z > 0) & (network_depth > 0)
    ratio = np.where(pairs, z / np.where(network_depth > 0, network_depth, 1.0), np.nan)
    if not pairs.any():
        return np.ones(len(z))
    overall = float(np.nanmedian(ratio))
    with np.errstate(all="ignore"):
        per_frame = np.array([np.nanmedian(r) if c >= MIN_SCALE_TRACKS else overall
                              for r, c in zip(ratio, pairs.sum(1))])
    return per_frame


def on_rays(tracks: np.ndarray, cameras: Cameras, depth: np.ndarray) -> np.ndarray:
    """(N, P, 3) camera-frame points at camera-frame ``depth`` (N, P) on the rays through the ``tracks`` pixels."""
    rays = bearings(tracks.astype(np.float64), cameras.intrinsics)
    return rays / rays[..., 2:] * depth[..., None]


def typical_depth(network_depth: np.ndarray, scale: np.ndarray) -> float:
    """The median positive depth of the network's (N, P) ``network_depth`` × ``scale`` (N,) (1 when none is)."""
    depth = network_depth * scale[:, None]
    return float(np.median(depth[depth > 0])) if (depth > 0).any() else 1.0


def lift_network(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, network_camera: np.ndarray,
                 scale: np.ndarray, typical: float) -> np.ndarray:
    """(N, P, 3) world points at the network's camera-frame depth × ``scale`` (N,): on the ray through the tracked
    pixel where visible (at depth ``typical`` where that depth is not positive, :func:`typical_depth`), the
    network's scaled camera-frame point elsewhere. network_camera: (N, P, 3)."""
    scaled = network_camera * scale[:, None, None]
    depth = scaled[..., 2]
    depth = np.where(depth > 0, depth, typical)
    camera = np.where(visible[..., None], on_rays(tracks, cameras, depth), scaled)
    return transform_points(invert_rigid(cameras.world_to_camera), camera)


def moving_points(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, proposal_camera: np.ndarray,
                  scale: np.ndarray, typical: float, fitted: np.ndarray, at_rest: np.ndarray) -> np.ndarray:
    """Per-frame world points (N, P, 3) of tracks the static set leaves out: the proposal's camera-frame points
    ``proposal_camera`` (N, P, 3) re-expressed under the solved cameras (:func:`lift_network`; ``scale`` (N,) from
    :func:`network_scale`), replaced by the static fit ``fitted`` (P, 3) in the frames ``at_rest`` (N, P) bool. The
    one place where moving points are decided."""
    lifted = lift_network(tracks, visible, cameras, proposal_camera, scale, typical)
    return np.where(at_rest[..., None], fitted[None], lifted)


def place_points(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, motion: MotionLevels,
                 fitted: np.ndarray, errors: np.ndarray, rotation_only: bool,
                 network: Reconstruction, proposal_depth: np.ndarray | None = None) -> PlacedPoints:
    """Every track in every frame (module docstring). fitted (P, 3) · errors (N, P) px: the static fit under
    ``cameras`` (:func:`~.motion.static_fit`; ignored when ``rotation_only``) · proposal_depth (N, P): camera-frame
    depth of every entry from the geometry-conditioned network (on the rays through the tracks), used instead of the
    first network's points where given."""
    if rotation_only:
        placeable = observed = np.zeros(len(fitted), bool)
        at_rest = np.zeros(errors.shape, bool)
    else:
        z = transform_points(cameras.world_to_camera, np.nan_to_num(fitted))[..., 2]
        placeable = np.isfinite(fitted).all(1) & np.where(visible, z > 0, True).all(0)
        observed = motion.static & placeable
        fits = visible & (np.nan_to_num(errors, nan=np.inf) < STATIC_SIGMAS * motion.noise_px)
        at_rest = fits & (placeable & (fits.sum(0) >= PARTLY_AT_REST * visible.sum(0)))[None]
    network_camera = None if proposal_depth is not None else transform_points(
        network.world_to_camera, network.points.astype(np.float64))
    proposal_z = network_camera[..., 2] if proposal_depth is None else proposal_depth   # on_rays keeps the depth
    scale = network_scale(fitted, observed, cameras, proposal_z, visible)
    typical = typical_depth(proposal_z, scale)
    points, static_points = np.empty(visible.shape + (3,)), np.empty((visible.shape[1], 3))
    for c in track_slices(visible.shape[1]):     # a long clip's (frame × track) work arrays, a slice at a time
        proposal_camera = network_camera[:, c] if proposal_depth is None else on_rays(tracks[:, c], cameras,
                                                                                     proposal_depth[:, c])
        points[:, c] = moving_points(tracks[:, c], visible[:, c], cameras, proposal_camera, scale, typical,
                                     np.nan_to_num(fitted[c]), at_rest[:, c])
        static_points[c] = np.nanmedian(np.where(visible[:, c, None], points[:, c], np.nan), axis=0)
    static_points = np.where(np.isfinite(static_points), static_points, points[0])
    frozen = motion.static if motion.state is None else motion.state != MOVING
    held = frozen & placeable & (motion.static | _in_scene(fitted, visible, cameras, observed))
    static_points[held] = fitted[held]
    points[:, frozen] = static_points[frozen]
    depth = transform_points(cameras.world_to_camera, points)[..., 2]
    return PlacedPoints(points, static_points, depth, observed, scale)


def _in_scene(fitted: np.ndarray, visible: np.ndarray, cameras: Cameras, observed: np.ndarray) -> np.ndarray:
    """(P,) bool: static fits ``fitted`` (P, 3) whose depth, in every frame that sees them, lies within the
    ``observed`` static tracks' depth range widened by ``SCENE_DEPTH_MARGIN`` — where an unreliable track (static and
    unreliable tracks are frozen) may stay at its fit; elsewhere (the fit of a mover that slid along its rays, 20×
    the scene's depth) it stays at the median of its own per-frame points."""
    z = transform_points(cameras.world_to_camera, np.nan_to_num(fitted))[..., 2]
    scene = z[visible & observed[None]]
    if scene.size == 0:
        return np.zeros(len(fitted), bool)
    low, high = np.percentile(scene, [1, 99])
    inside = (z > low / SCENE_DEPTH_MARGIN) & (z < high * SCENE_DEPTH_MARGIN)
    return np.where(visible, inside, True).all(0)
