"""Procedural dynamic scenes with exact ground truth, generated on the fly for training TracksTo4D.

A scene is a set of analytic surface primitives posed in every frame: a ground plane and walls, static clutter
boxes, and 1–3 movers (rigid boxes/ellipsoids, articulated pets made of ellipsoids, waving sheets, pulsing blobs),
filmed by a handheld camera (orbit, walk, pan or static) with phone-like intrinsics.

Tracks are seeded as the paper does: a G×G pixel grid at frames 0, q, 2q, … and the last frame. Each grid pixel's
ray is cast into the scene; the track follows the surface point it hits (the visible one) in every frame, forwards
and backwards. A track is visible where its point is in front of the camera, inside the image and not occluded: the
camera-to-point segment crosses no box, ellipsoid or sheet (a point on the far side of its own box or ellipsoid is
hidden by it). Walls and ground never occlude: the cameras and all content lie on their front side.
Tracker-like noise (jitter, drift, outliers, wrong visibility flags) is added on top of the exact projections.

World frame: z up, ground plane z = 0, subject near the origin and seen from −y; units are arbitrary (the camera
stands 3–8 units from the subject). Motion is driven by τ = t / (motion_frames − 1), so a clip of motion_frames
frames shows the full nominal motion and shorter windows a part of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from tracks4d.contracts import GroundTruth, TrackSet, min_visible_frames
from tracks4d.geometry import invert_rigid, pose_matrix

__all__ = ["CAMERA_KINDS", "EXTRA_CAMERA_KINDS", "MOVER_KINDS", "SceneConfig", "SyntheticScene", "generate_scene", "generate_window",
           "min_visible_frames"]

CAMERA_KINDS = ("orbit", "walk", "pan", "static")
EXTRA_CAMERA_KINDS = ("tripod_walk", "follow")
"""Drawn only when named: ``tripod_walk`` (still, then walking closer), ``follow`` (a handheld camera that keeps
pace with the first mover, as when filming a walking person or pet: the subject stays in view, the scene slides by)."""
"""Camera paths made only when asked for (``SceneConfig.camera``), never drawn at random: a tripod that pans a
little for the first half of the clip, then walks towards the subject (mixed rotation-only / general motion)."""
WALK_MAX_APPROACH = 0.6  # a walk ends at ≥ 40 % of its starting subject distance (1 − this)
MOVER_KINDS = ("pet", "rigid", "sheet", "blob", "person")

_PLANE, _BOX, _ELLIPSOID, _SHEET = range(4)
_NEAR = 0.05          # points closer than this (camera z) are not visible
_EPS = 1e-6           # segment parameter margin: a surface point does not occlude itself
_SHEET_SAMPLES = 8    # samples along a segment when looking for a sheet crossing
_ATTEMPTS = 20        # scenes tried before giving up on finding one with tracks
_UP = np.array([0.0, 0.0, 1.0])


@dataclass
class SceneConfig:
    """Knobs of the generator; ranges are (low, high) drawn uniformly per scene (per track for noise levels)."""

    n_frames: int = 50
    grid: int = 15                      # seeding grid G×G
    query_every: int = 20               # seeds at frames 0, 20, 40, … and the last frame
    camera: str | None = None           # None = random among CAMERA_KINDS with camera_weights
    noise: bool = True                  # tracker-like noise on/off
    motion_frames: int = 50             # frames over which camera and movers make their full nominal motion
    camera_weights: tuple[float, ...] = (0.35, 0.25, 0.25, 0.15)   # orbit, walk, pan, static
    n_movers: tuple[int, int] = (1, 3)
    mover_weights: tuple[float, ...] = (0.4, 0.25, 0.15, 0.2, 0.0)  # pet, rigid, sheet, blob, person
    subject_distance: tuple[float, float] = (3.0, 8.0)             # camera to subject
    mover_size: tuple[float, float] = (0.3, 0.8)                   # mover size relative to the subject distance
    image_sizes: tuple[tuple[int, int], ...] = (
        (1920, 1080), (1280, 720), (640, 480), (854, 480), (480, 640), (720, 1280), (368, 480))
    horizontal_fov_deg: tuple[float, float] = (45.0, 80.0)
    principal_offset_px: float = 3.0
    # Tracker noise, set from the built-in LK tracker's measured errors (benchmarks/measure_tracker_noise.py on
    # rendered scenes: jitter ≈ 0, drift step p10–p90 0.02–0.33 px, 0.6 % outlier entries concentrated in ~2 % of
    # tracks, 21 % of visible entries lost in long runs, 48 % wrong flags next to a visibility change).
    jitter_px: tuple[float, float] = (0.05, 0.3)      # per-track Gaussian std, at 640 px (scaled by √(max(W,H)/640))
    drift_px: tuple[float, float] = (0.02, 0.35)      # per-track random-walk step std per frame, same scaling
    outlier_rate: tuple[float, float] = (0.001, 0.004)  # single-entry outliers
    outlier_px: tuple[float, float] = (10.0, 130.0)
    outlier_tracks: tuple[float, float] = (0.01, 0.04)  # tracks that latch onto something else from some frame on
    lost_tracks: tuple[float, float] = (0.3, 0.8)     # tracks lost for good from a random frame (flags off)
    flip_rate: tuple[float, float] = (0.005, 0.02)    # scattered wrong visibility flags away from boundaries
    boundary_flip: float = 0.48                       # wrong flags within one frame of a true visibility change

    def __post_init__(self) -> None:
        if self.camera is not None and self.camera not in CAMERA_KINDS + EXTRA_CAMERA_KINDS:
            raise ValueError(f"SceneConfig.camera: {self.camera!r} is not one of "
                             f"{CAMERA_KINDS + EXTRA_CAMERA_KINDS} or None")
        if self.n_frames < 2 or self.grid < 1 or self.query_every < 1 or self.motion_frames < 2:
            raise ValueError("SceneConfig: n_frames >= 2, grid >= 1, query_every >= 1, motion_frames >= 2 required")
        if len(self.camera_weights) != len(CAMERA_KINDS) or len(self.mover_weights) != len(MOVER_KINDS):
            raise ValueError(f"SceneConfig: one weight per camera kind {CAMERA_KINDS} and mover kind {MOVER_KINDS}")


@dataclass
class SyntheticScene:
    """One generated clip.

    tracks: TrackSet with noisy tracks (N, P, 2), noisy flags (N, P), intrinsics (N, 3, 3), image_size (W, H),
    query_frame (P,) and ground_truth (world_to_camera (N, 4, 4), depth (N, P), dynamic (N, P)) ·
    camera_to_world: (N, 4, 4) float64 · world_points: (N, P, 3) float64 true surface point of each track ·
    depth: (N, P) float64 true camera-frame z · dynamic: (P,) bool, track on a mover ·
    true_visible: (N, P) bool before tracker noise · camera_kind: one of CAMERA_KINDS · object_id: (P,) int, the
    mover each track lies on (0, 1, … in the order they were made), −1 for static tracks.
    """

    tracks: TrackSet
    camera_to_world: np.ndarray
    world_points: np.ndarray
    depth: np.ndarray
    dynamic: np.ndarray
    true_visible: np.ndarray
    camera_kind: str
    mover_kinds: tuple[str, ...] = field(default=())
    object_id: np.ndarray | None = None

    @property
    def intrinsics(self) -> np.ndarray:
        """(N, 3, 3) float64 pixel intrinsics (constant over the clip)."""
        return self.tracks.intrinsics

    @property
    def world_to_camera(self) -> np.ndarray:
        """(N, 4, 4) float64."""
        return self.tracks.ground_truth.world_to_camera


def generate_scene(seed_or_rng: int | np.random.Generator, config: SceneConfig | None = None) -> SyntheticScene:
    """Full clip with every seeded track (up to G² per query frame), ordered by query frame then grid row;
    tracks visible in ≤ min_visible_frames(N) frames (10 for N > 20) of the observed flags are dropped."""
    return _generate(_rng(seed_or_rng), config or SceneConfig(), None)


def generate_window(seed_or_rng: int | np.random.Generator, n_frames: int, n_tracks: int = 100,
                    config: SceneConfig | None = None) -> SyntheticScene:
    """Fast path for training: a new scene of ``n_frames`` frames with exactly ``n_tracks`` tracks (fewer only if
    the scene cannot supply them), each visible in > min_visible_frames(n_frames) frames of the observed flags,
    drawn uniformly from the scene's seeded tracks (query frames 0, q, 2q, … and the last), in random order.
    ``n_frames`` overrides ``config.n_frames``."""
    if n_tracks < 1:
        raise ValueError(f"generate_window: n_tracks must be >= 1, got {n_tracks}")
    return _generate(_rng(seed_or_rng), replace(config or SceneConfig(), n_frames=n_frames), n_tracks)


def _generate(rng: np.random.Generator, config: SceneConfig, n_tracks: int | None) -> SyntheticScene:
    """A scene with all its long-enough tracks (n_tracks None) or a uniform sample of n_tracks of them; a scene
    that yields none is replaced by a new one."""
    for _ in range(_ATTEMPTS):
        world = _build_world(rng, config)
        frames, pixels = _seed_pool(world, config)
        need = min_visible_frames(config.n_frames)
        if n_tracks is None:
            cand = _candidates(world, rng, frames, pixels, config)
            cand = cand.select(np.flatnonzero(cand.observed_visible.sum(0) > need))
        else:
            cand = _sample_tracks(world, rng, frames, pixels, config, n_tracks)
        if cand.n_points:
            return _assemble(world, cand)
    raise RuntimeError(f"no synthetic scene with tracks visible in more than {need} frames after {_ATTEMPTS} "
                       f"attempts; check SceneConfig (grid, n_frames)")


def _sample_tracks(world: "_World", rng: np.random.Generator, frames: np.ndarray, pixels: np.ndarray,
                   config: SceneConfig, n_tracks: int) -> "_Candidates":
    """Up to n_tracks long-enough tracks from seeds taken in random order, in batches sized from the survival
    rate so far (the same distribution as filtering all seeds and sampling, at a fraction of the cost)."""
    order = rng.permutation(len(frames))
    need = min_visible_frames(config.n_frames)
    batches, found, start, survival = [], 0, 0, 0.75
    while found < n_tracks and start < len(order):
        size = int((n_tracks - found) / survival * 1.1) + 4
        take = order[start:start + size]
        start += size
        cand = _candidates(world, rng, frames[take], pixels[take], config)
        batches.append(cand.select(np.flatnonzero(cand.observed_visible.sum(0) > need)))
        found += batches[-1].n_points
        survival = max(found / start, 0.05)               # seeds that hit something and stay visible long enough
    return _concatenate(batches).select(np.arange(min(n_tracks, found)))


# --------------------------------------------------------------------------------------------- world
@dataclass
class _Parts:
    """Surface primitives posed per frame, in unit local coordinates: a point with local coordinates L sits
    at rotation · (scale ⊙ L) + translation. Planes: unit square z = 0 · boxes: [−1, 1]³ · ellipsoids: unit
    sphere · sheets: unit square displaced along local z by a wave height (world units, scale z = 1).

    rotation: (N, K, 3, 3) · translation: (N, K, 3) · scale: (N, K, 3) · kind: (K,) int · dynamic: (K,) bool ·
    waves: one _Wave per sheet part · radius: (N, K) bounding-sphere radius about the translation · owner: (K,)
    the object (add/add_group call) of each part.
    """

    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    kind: np.ndarray
    dynamic: np.ndarray
    waves: list["_Wave"]
    radius: np.ndarray
    owner: np.ndarray


@dataclass(frozen=True)
class _Wave:
    """Height of a waving sheet over its unit square (u, v): two travelling waves, weaker at the pinned edge u = −1.

    amplitude, wavenumber (per unit u or v), frequency (radians per unit τ), phase: (2,) each.
    """

    part: int
    amplitude: np.ndarray
    wavenumber: np.ndarray
    frequency: np.ndarray
    phase: np.ndarray

    @property
    def max_height(self) -> float:
        return float(self.amplitude.sum())

    def height(self, u: np.ndarray, v: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """u, v, tau broadcastable → height in world units along the sheet normal."""
        a, k, w, p = self.amplitude, self.wavenumber, self.frequency, self.phase
        along = a[0] * np.sin(k[0] * (u + 1.0) - w[0] * tau + p[0])
        across = a[1] * np.sin(k[1] * v - w[1] * tau + p[1])
        return (0.25 + 0.375 * (u + 1.0)) * (along + across)


@dataclass
class _World:
    """A posed scene and its camera. camera_to_world, world_to_camera: (N, 4, 4) · intrinsics: (3, 3) ·
    image_size: (W, H) · tau: (N,) motion time · noise_scale: pixel-noise multiplier for this resolution."""

    camera_to_world: np.ndarray
    world_to_camera: np.ndarray
    intrinsics: np.ndarray
    image_size: tuple[int, int]
    tau: np.ndarray
    parts: _Parts
    camera_kind: str
    mover_kinds: tuple[str, ...]
    noise_scale: float


class _PartList:
    """Collects parts (poses broadcast to N frames) and stacks them into :class:`_Parts`."""

    def __init__(self, n_frames: int):
        self.n = n_frames
        self.rotation, self.translation, self.scale, self.kind, self.dynamic = [], [], [], [], []
        self.owner: list[int] = []  # per part: the add/add_group call (one object) it came from
        self.waves: list[_Wave] = []

    def add(self, kind: int, rotation, translation, scale, dynamic: bool) -> int:
        """One part: rotation (3, 3) or (N, 3, 3) · translation, scale (3,) or (N, 3) → its index."""
        return self.add_group(kind, np.asarray(rotation)[..., None, :, :], np.asarray(translation)[..., None, :],
                              np.asarray(scale)[..., None, :], dynamic)

    def add_group(self, kind: int, rotation, translation, scale, dynamic: bool) -> int:
        """K parts of one kind: rotation (K, 3, 3) or (N, K, 3, 3) · translation, scale (K, 3) or (N, K, 3) →
        index of the first."""
        count = np.shape(rotation)[-3]
        self.rotation.append(np.broadcast_to(rotation, (self.n, count, 3, 3)))
        self.translation.append(np.broadcast_to(translation, (self.n, count, 3)))
        self.scale.append(np.broadcast_to(scale, (self.n, count, 3)))
        self.owner += [max(self.owner, default=-1) + 1] * count
        self.kind += [kind] * count
        self.dynamic += [dynamic] * count
        return len(self.kind) - count

    def build(self) -> _Parts:
        scale, kind = np.concatenate(self.scale, 1), np.array(self.kind)
        radius = np.where(kind == _ELLIPSOID, scale.max(-1), np.linalg.norm(scale, axis=-1))
        for wave in self.waves:
            radius[:, wave.part] = np.hypot(np.hypot(scale[:, wave.part, 0], scale[:, wave.part, 1]), wave.max_height)
        return _Parts(np.concatenate(self.rotation, 1), np.concatenate(self.translation, 1), scale, kind,
                      np.array(self.dynamic), self.waves, radius, np.array(self.owner))


@dataclass
class _Mover:
    """Where a mover goes, for placing the camera target, clutter and walls. centres: (N, 3) · radius: bound."""

    centres: np.ndarray
    radius: float


def _build_world(rng: np.random.Generator, config: SceneConfig) -> _World:
    """Intrinsics, movers around the origin, a camera path that keeps clear of them, then clutter and walls."""
    n = config.n_frames
    tau = np.arange(n) / (config.motion_frames - 1)
    width, height = config.image_sizes[rng.integers(len(config.image_sizes))]
    fov = np.radians(rng.uniform(*config.horizontal_fov_deg))
    focal = 0.5 * width / np.tan(0.5 * fov)
    cx, cy = (np.array([width, height]) - 1) / 2 + rng.uniform(-1, 1, 2) * config.principal_offset_px
    intrinsics = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])

    distance = rng.uniform(*config.subject_distance)
    size = distance * rng.uniform(*config.mover_size)
    parts = _PartList(n)
    n_movers = int(rng.integers(config.n_movers[0], config.n_movers[1] + 1))
    kinds = tuple(_pick(rng, MOVER_KINDS, config.mover_weights) for _ in range(n_movers))
    movers = []
    for i, kind in enumerate(kinds):
        angle = rng.uniform(0, 2 * np.pi)
        anchor = np.zeros(2) if i == 0 else rng.uniform(0.8, 1.6) * size * np.array([np.cos(angle), np.sin(angle)])
        movers.append(_MOVER_BUILDERS[kind](parts, rng, tau, anchor, size * rng.uniform(0.8, 1.25)))
    mid = n // 2
    target = np.mean([m.centres[mid] for m in movers], axis=0)

    camera_kind = config.camera or _pick(rng, CAMERA_KINDS, config.camera_weights)
    offsets, looks, wobble = _camera_path(rng, camera_kind, tau, fov)
    aim = np.broadcast_to(target, (n, 3)).copy()
    if camera_kind == "follow":                          # keep pace with the first mover's walk
        aim[:, :2] += movers[0].centres[:, :2] - movers[0].centres[mid, :2]
    for _ in range(8):                                   # back off until no mover comes near the camera
        centres = aim + distance * offsets
        shortfall = 0.1 * distance - min(_gap(centres, m) for m in movers)
        if shortfall < 0:
            break
        distance += shortfall + 0.05 * distance
    camera_to_world = pose_matrix(_look_at(centres, aim + distance * looks) @ wobble, centres)
    boxes = _add_clutter(parts, rng, target, centres, movers, size, distance)
    _add_ground_and_walls(parts, rng, target, centres, movers, boxes, size, distance)
    return _World(camera_to_world, invert_rigid(camera_to_world), intrinsics, (int(width), int(height)), tau,
                  parts.build(), camera_kind, kinds, float(np.sqrt(max(width, height) / 640.0)))


def _gap(cameras: np.ndarray, mover: _Mover) -> float:
    """Smallest distance between a camera centre (N, 3) and the mover's bounding sphere in the same frame."""
    return float(np.linalg.norm(cameras - mover.centres, axis=-1).min()) - mover.radius


def _pet(parts: _PartList, rng: np.random.Generator, tau: np.ndarray, anchor: np.ndarray, size: float) -> _Mover:
    """Articulated pet walking along a curving path: 7 ellipsoids (torso, head, 4 legs swinging about the hips in a
    diagonal gait, wagging tail), posed in the body frame (x forward, z up) and carried by the walking body."""
    n = len(tau)
    rx, ry, rz = size / 2, size * rng.uniform(0.16, 0.24), size * rng.uniform(0.18, 0.26)
    leg = size * rng.uniform(0.45, 0.7)
    gait = 2 * np.pi * rng.uniform(2.0, 4.0)                         # radians per unit τ
    swing = np.radians(rng.uniform(18, 32))
    speed = leg * np.sin(swing) * gait / np.pi * rng.uniform(0.3, 1.0)
    yaw = rng.uniform(0, 2 * np.pi) + rng.uniform(-1.2, 1.2) * tau + 0.2 * np.sin(rng.uniform(2, 6) * tau)
    step = speed * (tau[1] - tau[0])
    path = np.zeros((n, 3))
    path[1:, 0], path[1:, 1] = np.cumsum(step * np.cos(yaw[:-1])), np.cumsum(step * np.sin(yaw[:-1]))
    path[:, :2] += anchor - path[n // 2, :2]
    path[:, 2] = leg + 0.5 * rz + 0.03 * leg * np.sin(2 * gait * tau)

    head = size * np.array([0.2, 0.13, 0.13]) * rng.uniform(0.85, 1.2)
    tail_length, tail_radius = size * rng.uniform(0.3, 0.5), size * rng.uniform(0.03, 0.05)
    leg_radius = size * rng.uniform(0.06, 0.09)
    scale = np.array([[rx, ry, rz], head] + [[leg_radius, leg_radius, leg / 2]] * 4 +
                     [[tail_length / 2, tail_radius, tail_radius]])
    rotation = np.empty((n, 7, 3, 3))
    offset = np.zeros((n, 7, 3))
    rotation[:, 0] = np.eye(3)
    rotation[:, 1] = _rotation_z(0.4 * np.sin(rng.uniform(2, 5) * tau + rng.uniform(0, 6))) @ \
        _rotation_y(-0.2 * np.sin(rng.uniform(2, 5) * tau + rng.uniform(0, 6)))
    offset[:, 1] = (0.85 * rx, 0.0, 0.45 * rz) + 0.8 * head[0] * rotation[:, 1, :, 0]      # neck + head reach
    rotation[:, 2:6] = _rotation_y(swing * np.sin(gait * tau[:, None] + np.array([0, np.pi, np.pi, 0])))
    hips = np.array([[1, 1, 0], [1, -1, 0], [-1, 1, 0], [-1, -1, 0]]) * (0.6 * rx, 0.5 * ry, 0) + (0, 0, -0.5 * rz)
    offset[:, 2:6] = hips - leg / 2 * rotation[:, 2:6, :, 2]
    rotation[:, 6] = _rotation_z(np.radians(rng.uniform(20, 45)) * np.sin(rng.uniform(8, 20) * tau)) @ \
        _rotation_y(np.array(np.radians(rng.uniform(20, 50))))
    offset[:, 6] = (-0.95 * rx, 0.0, 0.35 * rz) - tail_length / 2 * rotation[:, 6, :, 0]
    body = _rotation_z(yaw)[:, None]
    parts.add_group(_ELLIPSOID, body @ rotation, path[:, None] + (body @ offset[..., None])[..., 0], scale, True)
    return _Mover(path, size)


def _rigid(parts: _PartList, rng: np.random.Generator, tau: np.ndarray, anchor: np.ndarray, size: float) -> _Mover:
    """A box or ellipsoid translating along a curved path while tumbling about a random axis."""
    kind = _BOX if rng.random() < 0.5 else _ELLIPSOID
    semi = size * rng.uniform(0.2, 0.5, 3)
    radius = float(np.linalg.norm(semi) if kind == _BOX else semi.max())
    t = tau - tau[len(tau) // 2]
    velocity = size * rng.uniform(0.4, 1.4) * _unit(np.append(rng.normal(size=2), 0.0))
    curve = size * rng.normal(size=3) * np.array([0.6, 0.6, 0.0])
    height = radius + size * rng.uniform(0.0, 0.5) + 0.1 * size * (1 - np.cos(rng.uniform(2, 8) * t))
    centres = np.concatenate([anchor, [0.0]]) + velocity * t[:, None] + curve * t[:, None] ** 2
    centres[:, 2] = height
    spin = _unit(rng.normal(size=3)) * np.radians(rng.uniform(45, 270))
    rotation = _axis_angle(spin * t[:, None]) @ _axis_angle(rng.normal(size=3))
    parts.add(kind, rotation, centres, semi, True)
    return _Mover(centres, radius)


def _blob(parts: _PartList, rng: np.random.Generator, tau: np.ndarray, anchor: np.ndarray, size: float) -> _Mover:
    """Non-rigid: an ellipsoid whose three radii pulse out of phase while it drifts and turns."""
    semi = size * rng.uniform(0.25, 0.5, 3)
    pulse = rng.uniform(0.15, 0.35, 3)
    radii = semi * (1 + pulse * np.sin(2 * np.pi * rng.uniform(1, 3, 3) * tau[:, None] + rng.uniform(0, 6, 3)))
    t = tau - tau[len(tau) // 2]
    centres = np.concatenate([anchor, [0.0]]) + size * rng.uniform(0.2, 0.8) * t[:, None] * \
        _unit(np.append(rng.normal(size=2), 0.0))
    centres[:, 2] = (semi * (1 + pulse)).max() + 0.05 * size
    rotation = _rotation_z(rng.uniform(0, 2 * np.pi) + rng.uniform(-1, 1) * tau) @ _axis_angle(0.3 * rng.normal(size=3))
    parts.add(_ELLIPSOID, rotation, centres, radii, True)
    return _Mover(centres, float((semi * (1 + pulse)).max()))


def _sheet(parts: _PartList, rng: np.random.Generator, tau: np.ndarray, anchor: np.ndarray, size: float) -> _Mover:
    """Non-rigid: a vertical flag-like sheet pinned along one edge, waving and swaying about its pole."""
    half = size * np.array([rng.uniform(0.4, 0.8), rng.uniform(0.3, 0.6)])
    facing = rng.uniform(-1.0, 1.0)                                   # yaw away from facing −y (the camera side)
    along = np.array([np.cos(facing), np.sin(facing), 0.0])
    rest = np.stack([along, _UP, np.cross(along, _UP)], -1)           # columns: u, v, normal
    centre = np.array([anchor[0], anchor[1], half[1] + size * rng.uniform(0.1, 0.6)])
    pole = centre - half[0] * along
    sway_angle = np.radians(rng.uniform(8, 25)) * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * tau + rng.uniform(0, 6))
    sway = _rotation_z(sway_angle)
    centres = pole + _apply(sway, centre - pole)
    index = parts.add(_SHEET, sway @ rest, centres, (half[0], half[1], 1.0), True)
    parts.waves.append(_Wave(index, size * rng.uniform(0.03, 0.1, 2) * np.array([1.0, 0.4]),
                             rng.uniform(1.5, 4.0, 2), 2 * np.pi * rng.uniform(1.0, 3.0, 2), rng.uniform(0, 6, 2)))
    return _Mover(centres, float(np.linalg.norm(half)) + size * 0.1)


def _person(parts: _PartList, rng: np.random.Generator, tau: np.ndarray, anchor: np.ndarray,
            size: float) -> _Mover:
    """Articulated biped walking upright along a curving path: 6 ellipsoids (torso, head, 2 legs and 2 arms
    swinging in opposition), posed in the body frame (x forward, z up) and carried by the walking body; ``size`` is
    its height."""
    n = len(tau)
    leg = size * rng.uniform(0.42, 0.5)
    torso = size * np.array([rng.uniform(0.08, 0.11), rng.uniform(0.13, 0.18), rng.uniform(0.15, 0.19)])
    head = np.full(3, size * rng.uniform(0.06, 0.075))
    limb = size * rng.uniform(0.035, 0.05)
    arm = size * rng.uniform(0.3, 0.38)
    gait = 2 * np.pi * rng.uniform(1.5, 3.0)
    swing = np.radians(rng.uniform(15, 30))
    speed = 2 * leg * np.sin(swing) * gait / np.pi * rng.uniform(0.2, 0.8)
    yaw = rng.uniform(0, 2 * np.pi) + rng.uniform(-1.5, 1.5) * tau + 0.2 * np.sin(rng.uniform(2, 6) * tau)
    step = speed * (tau[1] - tau[0])
    path = np.zeros((n, 3))
    path[1:, 0], path[1:, 1] = np.cumsum(step * np.cos(yaw[:-1])), np.cumsum(step * np.sin(yaw[:-1]))
    path[:, :2] += anchor - path[n // 2, :2]
    path[:, 2] = leg + torso[2] + 0.02 * leg * np.sin(2 * gait * tau)            # torso centre
    phase = gait * tau[:, None] + np.array([0, np.pi, np.pi, 0])                 # legs, then arms opposite
    rotation = np.empty((n, 6, 3, 3))
    offset = np.zeros((n, 6, 3))
    rotation[:, 0] = rotation[:, 1] = np.eye(3)
    offset[:, 1] = (0.0, 0.0, torso[2] + 1.1 * head[2])
    rotation[:, 2:6] = _rotation_y(swing * np.sin(phase))
    joints = np.array([[0, 0.5, -1], [0, -0.5, -1], [0, 1.25, 0.85], [0, -1.25, 0.85]]) * (0, torso[1], torso[2])
    lengths = np.array([leg, leg, arm, arm])
    offset[:, 2:6] = joints - lengths[:, None] / 2 * rotation[:, 2:6, :, 2]
    scale = np.array([torso, head] + [[limb, limb, length / 2] for length in lengths])
    body = _rotation_z(yaw)[:, None]
    parts.add_group(_ELLIPSOID, body @ rotation, path[:, None] + (body @ offset[..., None])[..., 0], scale, True)
    return _Mover(path, size / 2)


_MOVER_BUILDERS = {"pet": _pet, "rigid": _rigid, "sheet": _sheet, "blob": _blob, "person": _person}


def _camera_path(rng: np.random.Generator, kind: str, tau: np.ndarray, fov: float):
    """A handheld camera path at unit subject distance, to be scaled: the camera at distance d stands at
    target + d · offsets and looks at target + d · looks, with rotation look_at(…) @ wobble (roll and shake).
    Returns offsets (N, 3), looks (N, 3), wobble (N, 3, 3)."""
    n = len(tau)
    t = tau - tau[n // 2]
    azimuth = np.full(n, rng.uniform(-0.45, 0.45))                    # from −y, about z
    elevation = np.full(n, np.radians(rng.uniform(5, 35)))
    radius = np.ones(n)
    looks = _smooth_noise(rng, tau, 0.03 if kind != "static" else 0.002, 3)
    shake_deg, shake_move = rng.uniform(0.3, 1.2), 0.003
    if kind == "orbit":
        azimuth = azimuth + np.radians(rng.uniform(20, 120)) * _sign(rng) * t
        radius = radius + _smooth_noise(rng, tau, 0.05, 1)[:, 0]
        elevation = elevation + _smooth_noise(rng, tau, 0.05, 1)[:, 0]
    elif kind == "walk":  # towards the subject; a clip longer than the nominal motion never closes in past 60 %
        radius = radius - min(rng.uniform(0.15, 0.4), WALK_MAX_APPROACH / max(t[-1] - t[0], 1e-9)) * (t - t[0])
    elif kind == "pan":
        sweep = fov * rng.uniform(0.2, 0.7) * _sign(rng)
        sideways = np.array([np.cos(azimuth[0]), np.sin(azimuth[0]), 0.0])
        looks = looks + np.tan(np.clip(sweep * t, -1.2, 1.2))[:, None] * sideways
        shake_move = 0.01
    elif kind == "follow":       # handheld, carried along with the subject (_build_world moves the aim)
        radius = radius + _smooth_noise(rng, tau, 0.05, 1)[:, 0]
    elif kind == "tripod_walk":  # still (panning a little) until mid-clip, then 30 % closer by the end
        walked = np.clip(t / max(t[-1], 1e-9), 0.0, 1.0)
        radius = radius - 0.3 * walked
        sideways = np.array([np.cos(azimuth[0]), np.sin(azimuth[0]), 0.0])
        looks = looks + np.tan(0.15 * fov * np.minimum(t, 0.0))[:, None] * sideways
        shake_deg, shake_move = rng.uniform(0.03, 0.15), 0.0005
    else:
        shake_deg, shake_move = rng.uniform(0.03, 0.15), 0.0005
    offsets = radius[:, None] * np.stack([np.cos(elevation) * np.sin(azimuth),
                                          -np.cos(elevation) * np.cos(azimuth), np.sin(elevation)], -1)
    offsets += _smooth_noise(rng, tau, shake_move, 3)
    if kind == "walk":
        sideways = np.stack([np.cos(azimuth), np.sin(azimuth), np.zeros(n)], -1)
        offsets += _smooth_noise(rng, tau, 0.05, 1) * sideways
        offsets[:, 2] += 0.01 * np.sin(2 * np.pi * rng.uniform(6, 10) * tau + rng.uniform(0, 6))
    wobble = _rotation_z(np.array(rng.uniform(-0.07, 0.07))) @ \
        _axis_angle(_smooth_noise(rng, tau, np.radians(shake_deg), 3, frequency=(0.5, 8.0)))
    return offsets, looks, wobble


def _add_clutter(parts: _PartList, rng: np.random.Generator, target: np.ndarray, cameras: np.ndarray,
                 movers: list[_Mover], size: float, distance: float) -> list[tuple[np.ndarray, float]]:
    """2–6 static boxes on the ground around the subject (one often between camera and subject), clear of the
    camera path and of the movers. Returns (centre, bounding radius) of each."""
    tries = 16
    view = _unit(np.append(target[:2] - cameras.mean(0)[:2], 0.0))
    side = np.array([view[1], -view[0], 0.0])
    along = rng.uniform(-0.4, 0.6, tries) * distance
    across = rng.uniform(-0.6, 0.6, tries) * distance
    if rng.random() < 0.5:                                            # a foreground occluder
        along[0], across[0] = -rng.uniform(0.3, 0.6) * distance, rng.uniform(-0.12, 0.12) * distance
    semi = size * rng.uniform(0.15, 0.6, (tries, 3))
    centres = target[:2] + along[:, None] * view[:2] + across[:, None] * side[:2]
    centres = np.concatenate([centres, semi[:, 2:]], -1)
    radius = np.linalg.norm(semi, axis=-1)
    camera_gap = np.linalg.norm(centres[:, None] - cameras[None], axis=-1).min(1) - radius
    mover_path = np.concatenate([m.centres for m in movers])
    mover_radius = np.concatenate([np.full(len(m.centres), m.radius) for m in movers])
    mover_gap = (np.linalg.norm(centres[:, None] - mover_path[None], axis=-1) - mover_radius).min(1) - radius
    ok = np.flatnonzero((camera_gap > 0.15 * distance) & (mover_gap > 0.05 * size))
    boxes = []
    for i in ok[:int(rng.integers(2, 7))]:
        parts.add(_BOX, _rotation_z(np.array(rng.uniform(0, np.pi))), centres[i], semi[i], False)
        boxes.append((centres[i], float(radius[i])))
    return boxes


def _add_ground_and_walls(parts: _PartList, rng: np.random.Generator, target: np.ndarray, cameras: np.ndarray,
                          movers: list[_Mover], boxes: list[tuple[np.ndarray, float]], size: float,
                          distance: float) -> None:
    """Ground rectangle z = 0 bounded by a back wall (+y side) and, half the time, a side wall; all content and
    every camera lie on the walls' front side, so walls and ground never occlude anything."""
    content = [m.centres + sign * m.radius for m in movers for sign in (-1, 1)]
    content += [c + sign * r for c, r in boxes for sign in (-1, 1)]
    content = np.concatenate([np.atleast_2d(c) for c in content] + [cameras])
    back = content[:, 1].max() + size * rng.uniform(0.5, 3.0)
    x_lo, x_hi = target[0] - 3 * distance, target[0] + 3 * distance
    wall_height = cameras[:, 2].max() * rng.uniform(0.8, 1.8)
    front = content[:, 1].min() - distance
    if rng.random() < 0.5:
        side = _sign(rng)
        at = side * ((side * content[:, 0]).max() + size * rng.uniform(0.5, 3.0))
        x_lo, x_hi = (x_lo, at) if side > 0 else (at, x_hi)
        parts.add(_PLANE, np.array([[0, 0, -side], [-side, 0, 0], [0, 1, 0]], float),
                  (at, (front + back) / 2, wall_height / 2), ((back - front) / 2, wall_height / 2, 1), False)
    parts.add(_PLANE, np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float), ((x_lo + x_hi) / 2, back, wall_height / 2),
              ((x_hi - x_lo) / 2, wall_height / 2, 1), False)
    parts.add(_PLANE, np.eye(3), ((x_lo + x_hi) / 2, (front + back) / 2, 0.0),
              ((x_hi - x_lo) / 2, (back - front) / 2, 1), False)


# --------------------------------------------------------------------------------------------- tracks
def _seed_pool(world: _World, config: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every seed: query frames 0, q, 2q, … and the last × a G×G grid of cell-centre pixels.
    Returns frames (S,) int and pixels (S, 2), S = Q·G², ordered by frame then grid row."""
    n, g = config.n_frames, config.grid
    queries = np.unique(np.append(np.arange(0, n, config.query_every), n - 1))
    width, height = world.image_size
    xs = (np.arange(g) + 0.5) * width / g - 0.5
    ys = (np.arange(g) + 0.5) * height / g - 0.5
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    return np.repeat(queries, len(grid)), np.tile(grid, (len(queries), 1))


@dataclass
class _Candidates:
    """Seeded tracks before filtering. query: (M,) · part: (M,) · world_points, depth: (N, M, 3), (N, M) ·
    true_visible, observed_visible: (N, M) · observed_pixels: (N, M, 2) float32."""

    query: np.ndarray
    part: np.ndarray
    world_points: np.ndarray
    depth: np.ndarray
    true_visible: np.ndarray
    observed_pixels: np.ndarray
    observed_visible: np.ndarray

    @property
    def n_points(self) -> int:
        return len(self.query)

    def select(self, index: np.ndarray) -> "_Candidates":
        return _Candidates(self.query[index], self.part[index], self.world_points[:, index], self.depth[:, index],
                           self.true_visible[:, index], self.observed_pixels[:, index],
                           self.observed_visible[:, index])


def _concatenate(batches: list[_Candidates]) -> _Candidates:
    """Candidates of several batches side by side along the point axis."""
    if len(batches) == 1:
        return batches[0]
    merged = {}
    for name in (f.name for f in fields(_Candidates)):
        arrays = [getattr(b, name) for b in batches]
        merged[name] = np.concatenate(arrays, axis=0 if arrays[0].ndim == 1 else 1)
    return _Candidates(**merged)


def _candidates(world: _World, rng: np.random.Generator, frames: np.ndarray, pixels: np.ndarray,
                config: SceneConfig) -> _Candidates:
    """Seeds (frames (S,), pixels (S, 2)) → tracks of the surface points their rays hit (seeds that hit nothing
    are dropped), with exact projections, visibility and tracker noise."""
    part, local, hit = _cast_rays(world, frames, pixels)
    frames, part, local = frames[hit], part[hit], local[hit]
    points = _surface_points(world.parts, world.tau, part, local)
    w2c = world.world_to_camera
    cam = points @ w2c[:, :3, :3].transpose(0, 2, 1) + w2c[:, None, :3, 3]
    depth = cam[..., 2]
    k = world.intrinsics
    z = np.maximum(depth, _NEAR)
    true_pixels = np.stack([k[0, 0] * cam[..., 0] / z + k[0, 2], k[1, 1] * cam[..., 1] / z + k[1, 2]], -1)
    width, height = world.image_size
    in_view = (depth > _NEAR) & (true_pixels[..., 0] >= -0.5) & (true_pixels[..., 0] <= width - 0.5) & \
        (true_pixels[..., 1] >= -0.5) & (true_pixels[..., 1] <= height - 0.5)
    visible = in_view & ~_occluded(world, points, part, in_view)
    visible[frames, np.arange(len(frames))] = True            # the seed is the ray's nearest hit
    if config.noise:
        observed, observed_visible = _tracker_noise(rng, true_pixels, visible, in_view, frames, config,
                                                    world.noise_scale)
    else:
        observed, observed_visible = true_pixels, visible
    bound = np.array([width, height], float)
    observed = np.clip(observed, -bound, 2 * bound).astype(np.float32)
    return _Candidates(frames, part, points, depth, visible, observed, observed_visible)


def _assemble(world: _World, cand: _Candidates) -> SyntheticScene:
    n = len(world.tau)
    dynamic = world.parts.dynamic[cand.part]
    truth = GroundTruth(world.world_to_camera, cand.depth, np.broadcast_to(dynamic, (n, len(dynamic))))
    tracks = TrackSet(cand.observed_pixels, cand.observed_visible, np.broadcast_to(world.intrinsics, (n, 3, 3)),
                      np.array(world.image_size), cand.query, truth, source="synthetic")
    owner = world.parts.owner[cand.part]
    movers = np.unique(owner[dynamic])
    object_id = np.where(dynamic, np.searchsorted(movers, owner), -1)
    return SyntheticScene(tracks, world.camera_to_world, cand.world_points, cand.depth, dynamic, cand.true_visible,
                          world.camera_kind, world.mover_kinds, object_id)


def _surface_points(parts: _Parts, tau: np.ndarray, part: np.ndarray, local: np.ndarray) -> np.ndarray:
    """World position in every frame of the points with unit local coordinates local (M, 3) on part (M,) →
    (N, M, 3)."""
    linear = parts.rotation * parts.scale[:, :, None, :]                   # (N, K, 3, 3): rotation · diag(scale)
    points = np.einsum("nmij,mj->nmi", linear[:, part], local) + parts.translation[:, part]
    for wave in parts.waves:
        on = np.flatnonzero(part == wave.part)
        if len(on):
            height = wave.height(local[on, 0], local[on, 1], tau[:, None])          # (N, m) along the normal
            points[:, on] += parts.rotation[:, wave.part, None, :, 2] * height[..., None]
    return points


def _unit_frames(parts: _Parts, index: np.ndarray, frames: np.ndarray, origins: np.ndarray):
    """Maps into the unit local frames of parts ``index`` (K,) at ``frames`` (F,), as row-vector products:
    a point p has local coordinates (p − origin) @ to_unit + local_origin (ray parameters unchanged).

    origins: (F, 3) → to_unit (F, K, 3, 3) and local_origin (F, K, 3), the origins in local coordinates.
    """
    rotation = parts.rotation[frames][:, index]
    to_unit = rotation / parts.scale[frames][:, index][:, :, None, :]
    local_origin = ((origins[:, None] - parts.translation[frames][:, index])[:, :, None, :] @ to_unit)[:, :, 0]
    return to_unit, local_origin


def _box_span(origin: np.ndarray, direction: np.ndarray, half=1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameters where the ray enters and leaves the box [−half, half]³ (enter > leave: miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / direction
        near = (-half - origin) * inverse
        far = (half - origin) * inverse
    return np.minimum(near, far).max(-1), np.maximum(near, far).min(-1)


def _sphere_span(origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameters where the ray enters and leaves the unit sphere (NaN: miss)."""
    a = np.einsum("...i,...i->...", direction, direction)
    b = np.einsum("...i,...i->...", direction, origin)
    c = np.einsum("...i,...i->...", origin, origin) - 1.0
    with np.errstate(invalid="ignore"):
        root = np.sqrt(b * b - a * c)
    return (-b - root) / a, (-b + root) / a


def _sheet_crossing(origin: np.ndarray, direction: np.ndarray, wave: _Wave, tau: np.ndarray, limit: float,
                    refine: bool) -> np.ndarray:
    """First ray parameter in (_EPS, limit) where each ray crosses the waving sheet, inf if none (unit local
    coordinates). Crossings lie in the slab |z| ≤ max height over the unit square, which is sampled at
    _SHEET_SAMPLES points; ``refine`` locates the first crossing (bisection then a secant step), otherwise any
    sampled point before it is returned. origin, direction: (R, 3) · tau: (R,) → (R,)."""
    result = np.full(len(origin), np.inf)
    enter, leave = _box_span(origin, direction, np.array([1.0, 1.0, wave.max_height]))
    enter, leave = np.maximum(enter, _EPS), np.minimum(leave, limit)
    rows = np.flatnonzero(enter < leave)                                    # rays that pass through the slab
    origin, direction, tau, enter, leave = origin[rows], direction[rows], tau[rows, None], enter[rows], leave[rows]

    def gap(s):
        p = origin[:, None] + s[..., None] * direction[:, None]
        return p[..., 2] - wave.height(p[..., 0], p[..., 1], tau)

    s = enter[:, None] + (leave - enter)[:, None] * np.linspace(0.0, 1.0, _SHEET_SAMPLES)
    g = gap(s)
    change = np.signbit(g[:, :-1]) != np.signbit(g[:, 1:])
    found = np.flatnonzero(change.any(1))
    first = change[found].argmax(1)
    crossing = np.full(len(enter), np.inf)
    lo, hi = s[found, first], s[found, first + 1]
    if refine:
        g_lo, g_hi = g[found, first], g[found, first + 1]
        origin, direction, tau = origin[found], direction[found], tau[found]
        for _ in range(12):                                                 # bisection, then one secant step
            mid = 0.5 * (lo + hi)
            g_mid = gap(mid[:, None])[:, 0]
            same = np.signbit(g_mid) == np.signbit(g_lo)
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
            g_lo, g_hi = np.where(same, g_mid, g_lo), np.where(same, g_hi, g_mid)
        with np.errstate(divide="ignore", invalid="ignore"):
            lo = np.where(g_hi != g_lo, lo - g_lo * (hi - lo) / (g_hi - g_lo), lo)
    crossing[found] = lo
    result[rows] = crossing
    return result


def _cast_rays(world: _World, frames: np.ndarray, pixels: np.ndarray):
    """Nearest surface hit of each seed's pixel ray. frames: (S,) · pixels: (S, 2) →
    part (S,) int, unit local coordinates (S, 3), hit (S,) bool."""
    parts = world.parts
    k = world.intrinsics
    c2w = world.camera_to_world[frames]
    rays = np.stack([(pixels[:, 0] - k[0, 2]) / k[0, 0], (pixels[:, 1] - k[1, 2]) / k[1, 1],
                     np.ones(len(frames))], -1)
    directions = np.einsum("sij,sj->si", c2w[:, :3, :3], rays)
    origins = c2w[:, :3, 3]
    best = np.full(len(frames), np.inf)
    part = np.full(len(frames), -1)
    local = np.zeros((len(frames), 3))
    for kind in (_PLANE, _BOX, _ELLIPSOID, _SHEET):
        index = np.flatnonzero(parts.kind == kind)
        if not len(index):
            continue
        to_unit, o = _unit_frames(parts, index, frames, origins)
        d = (directions[:, None, None, :] @ to_unit)[:, :, 0]
        if kind == _PLANE:
            with np.errstate(divide="ignore", invalid="ignore"):
                s = -o[..., 2] / d[..., 2]
                p = o + s[..., None] * d
                s = np.where((s > _EPS) & (np.abs(p[..., :2]) <= 1).all(-1), s, np.inf)
        elif kind == _BOX:
            enter, leave = _box_span(o, d)
            s = np.where((enter < leave) & (enter > _EPS), enter, np.inf)
        elif kind == _ELLIPSOID:
            enter, _ = _sphere_span(o, d)
            s = np.where(enter > _EPS, enter, np.inf)
        else:
            waves = {w.part: w for w in parts.waves}
            s = np.stack([_sheet_crossing(o[:, j], d[:, j], waves[i], world.tau[frames], np.inf, refine=True)
                          for j, i in enumerate(index)], -1)
        j = s.argmin(-1)
        rows = np.arange(len(frames))
        nearest = s[rows, j]
        closer = nearest < best
        if not closer.any():
            continue
        p = o[rows, j] + np.where(closer, nearest, 0.0)[:, None] * d[rows, j]
        if kind == _ELLIPSOID:
            p = p / np.linalg.norm(p, axis=-1, keepdims=True)
        elif kind == _BOX:
            p = np.clip(p, -1, 1)
            face = np.abs(p).argmax(-1)
            p[rows, face] = np.sign(p[rows, face])
        else:
            p[:, 2] = 0.0
        best = np.where(closer, nearest, best)
        part = np.where(closer, index[j], part)
        local = np.where(closer[:, None], p, local)
    return part, local, np.isfinite(best)


def _occluded(world: _World, points: np.ndarray, part: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """(N, M) True where the segment from the camera centre to the point (N, M, 3) on part (M,) passes through a
    box, an ellipsoid or a sheet before reaching it (sheets do not occlude their own points); computed only where
    ``wanted`` (N, M). Only the (occluder, frame, point) triples whose line passes within the occluder's bounding
    sphere get the exact test."""
    parts = world.parts
    n_frames, n_points = points.shape[:2]
    centres = world.camera_to_world[:, :3, 3]
    segments = points - centres[:, None]
    index = np.flatnonzero(parts.kind != _PLANE)
    index = index[np.argsort(parts.kind[index], kind="stable")]          # grouped by kind
    to_part = parts.translation[:, index] - centres[:, None]              # (N, K, 3)
    radius = parts.radius[:, index] * (1 + 1e-6)
    part_distance = np.linalg.norm(to_part, axis=-1)
    clearance = (part_distance - radius) * (part_distance + radius)
    reach = np.where(clearance > 0, np.sqrt(np.abs(clearance)), -np.inf)   # line passes the sphere: ahead > reach
    length = np.linalg.norm(segments, axis=-1)
    ahead = to_part @ (segments / length[..., None]).transpose(0, 2, 1)    # (N, K, M) along each segment
    near = (ahead > reach[:, :, None]) & (length[:, None] > (part_distance - radius)[..., None]) & wanted[:, None]
    near = np.flatnonzero(near.transpose(1, 0, 2))                          # occluder-major
    occluder, frame_point = np.divmod(near, n_frames * n_points)
    frame = frame_point // n_points
    to_unit, local_origin = _unit_frames(parts, index, np.arange(n_frames), centres)
    pair = frame * len(index) + occluder
    origin = np.take(local_origin.reshape(-1, 3), pair, 0)
    direction = np.einsum("ti,tij->tj", np.take(segments.reshape(-1, 3), frame_point, 0),
                          np.take(to_unit.reshape(-1, 3, 3), pair, 0))
    bounds = np.searchsorted(occluder, np.searchsorted(parts.kind[index], [_BOX, _ELLIPSOID, _SHEET, _SHEET + 1]))
    hit = np.zeros(len(near), bool)
    for span, lo, hi in ((_box_span, bounds[0], bounds[1]), (_sphere_span, bounds[1], bounds[2])):
        enter, leave = span(origin[lo:hi], direction[lo:hi])
        hit[lo:hi] = (enter < leave) & (enter < 1 - _EPS) & (leave > _EPS)
    for wave in parts.waves:
        sel = np.flatnonzero((index[occluder] == wave.part) & (part[frame_point % n_points] != wave.part))
        crossing = _sheet_crossing(origin[sel], direction[sel], wave, world.tau[frame[sel]], 1 - _EPS, refine=False)
        hit[sel] = np.isfinite(crossing)
    occluded = np.zeros(n_frames * n_points, bool)
    occluded[frame_point[hit]] = True
    return occluded.reshape(n_frames, n_points)


def _tracker_noise(rng: np.random.Generator, pixels: np.ndarray, visible: np.ndarray, in_view: np.ndarray,
                   query: np.ndarray, config: SceneConfig, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt exact tracks like the built-in tracker: per-track Gaussian jitter, a random-walk drift that is zero
    at the query frame and grows away from it, rare single-entry outliers, a few tracks that jump to a wrong spot
    and stay there, tracks lost for good (flags off from a random frame onwards, away from the query frame), and
    wrong visibility flags (mostly within one frame of a true visibility change; invisible entries only turn visible
    where the point is in view). Query-frame entries stay exact and visible. pixels: (N, M, 2) · visible,
    in_view: (N, M) · query: (M,)."""
    n, m = visible.shape
    frames, columns = np.arange(n)[:, None], np.arange(m)
    at_query = frames == query[None]
    steps = rng.random((n, m, 2)) - 0.5                                    # uniform steps, std 1/√12
    walk = np.cumsum(steps * (np.sqrt(12.0) * rng.uniform(*config.drift_px, (m, 1))), 0)
    offset = rng.standard_normal((n, m, 2)) * rng.uniform(*config.jitter_px, (m, 1)) + walk - walk[query, columns]
    frame, column = np.nonzero(rng.random((n, m)) < rng.uniform(*config.outlier_rate))
    offset[frame, column] += rng.uniform(*config.outlier_px, (len(frame), 1)) * _directions(rng, len(frame))
    forward = rng.random(m) < 0.5                                          # the side of the query frame affected
    away = np.where(forward, frames > query, frames < query)               # (N, M)

    def onset(count: int) -> np.ndarray:
        """(N, M) bool: from a random frame on, away from the query frame, for ``count`` random tracks."""
        chosen = np.zeros(m, bool)
        chosen[rng.choice(m, size=count, replace=False)] = True
        start = np.where(forward, rng.integers(query + 1, n + 1), rng.integers(-1, query))
        return chosen & away & np.where(forward, frames >= start, frames <= start)

    jumped = onset(rng.binomial(m, rng.uniform(*config.outlier_tracks)))
    offset += jumped[..., None] * rng.uniform(*config.outlier_px, (m, 1)) * _directions(rng, m)
    offset[at_query] = 0.0
    change = np.zeros((n, m), bool)
    step = visible[1:] != visible[:-1]
    change[1:] |= step
    change[:-1] |= step
    flip_probability = np.where(change, config.boundary_flip, rng.uniform(*config.flip_rate))
    flip = (rng.random((n, m)) < flip_probability) & ~at_query & (visible | in_view)
    lost = onset(rng.binomial(m, rng.uniform(*config.lost_tracks)))
    return pixels + scale * offset, (visible ^ flip) & ~lost


def _directions(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 2) random unit vectors."""
    angle = rng.uniform(0, 2 * np.pi, count)
    return np.stack([np.cos(angle), np.sin(angle)], -1)


# --------------------------------------------------------------------------------------------- small helpers
def _rng(seed_or_rng: int | np.random.Generator) -> np.random.Generator:
    return seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)


def _pick(rng: np.random.Generator, options: tuple[str, ...], weights: tuple[float, ...]) -> str:
    """One option drawn with probability proportional to its weight."""
    cumulative = np.cumsum(weights)
    return options[int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))]


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _apply(rotation: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """rotation (..., 3, 3) applied to vector (3,) or (..., 3) → (..., 3)."""
    return np.einsum("...ij,...j->...i", rotation, vector)


def _rotation_z(angle: np.ndarray) -> np.ndarray:
    """(...,) radians → (..., 3, 3) rotation about z."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).reshape(np.shape(angle) + (3, 3))


def _rotation_y(angle: np.ndarray) -> np.ndarray:
    """(...,) radians → (..., 3, 3) rotation about y."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([c, zero, s, zero, one, zero, -s, zero, c], -1).reshape(np.shape(angle) + (3, 3))


def _axis_angle(vector: np.ndarray) -> np.ndarray:
    """Rodrigues: (..., 3) axis·angle → (..., 3, 3)."""
    angle = np.linalg.norm(vector, axis=-1)[..., None, None]
    axis = vector / np.maximum(angle[..., 0], 1e-12)
    cross = np.zeros(vector.shape[:-1] + (3, 3))
    cross[..., 0, 1], cross[..., 0, 2], cross[..., 1, 2] = -axis[..., 2], axis[..., 1], -axis[..., 0]
    cross = cross - np.swapaxes(cross, -1, -2)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * (cross @ cross)


def _look_at(centres: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world rotations (N, 3, 3): z towards the target, x level (right), y down-ish."""
    forward = _unit(targets - centres)
    right = _unit(np.stack([forward[:, 1], -forward[:, 0], np.zeros(len(forward))], -1))     # forward × up
    down = np.stack([forward[:, 1] * right[:, 2] - forward[:, 2] * right[:, 1],
                     forward[:, 2] * right[:, 0] - forward[:, 0] * right[:, 2],
                     forward[:, 0] * right[:, 1] - forward[:, 1] * right[:, 0]], -1)
    return np.stack([right, down, forward], -1)


def _smooth_noise(rng: np.random.Generator, tau: np.ndarray, amplitude: float, dims: int,
                  frequency: tuple[float, float] = (0.5, 4.0), terms: int = 3) -> np.ndarray:
    """Smooth random signal (N, dims): a sum of ``terms`` sinusoids (cycles per unit τ) with std ≈ amplitude."""
    f = rng.uniform(*frequency, (terms, dims))
    phase = rng.uniform(0, 2 * np.pi, (terms, dims))
    weight = rng.normal(size=(terms, dims)) * np.sqrt(2.0 / terms)
    return amplitude * (weight * np.sin(2 * np.pi * f * tau[:, None, None] + phase)).sum(1)
