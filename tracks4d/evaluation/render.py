"""A small textured-scene renderer with exact ground-truth 2D tracks, for measuring point trackers (TAP-Vid style).

A scene is a closed-enough room (ground, back and side walls), two static boxes, a moving box that slides and turns
on the ground and a moving two-sided card that flies and spins in front, filmed by a smoothly moving handheld camera.
Every surface is a planar textured rectangle (:class:`Face`) fixed to a body (0 = the static world); bodies have a
pose per frame. Procedural textures (multi-scale noise, faint checkers, random blobs, boxes and strokes) give a
point tracker corners everywhere.

A pixel's colour is the texture of the nearest face its ray (through the pixel centre, OpenCV convention, pixel
centres at integer coordinates) hits, sampled bilinearly, times Lambertian shading from a fixed light. Ground truth
follows the same rays: a query pixel is back-projected onto the surface it shows, the surface point is carried in its
body's coordinates into every frame and projected; it is occluded where another face is nearer along its ray, where its
own face is turned away, outside the image or behind the camera.

Options (:func:`render_scene`): other camera paths (orbit, walk, pan, a fast shaky handheld, a fixed camera), a
large "animal" walking close in front of the camera, and motion blur (each frame the mean of renders over part of
the frame interval). Poses are functions of continuous time, so blur samples the same paths; everything these
options add draws from a second random stream, so the default clip of a seed is unchanged.

World frame: z up, ground z = 0, the camera stands near y = −5 looking towards +y; units are arbitrary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from ..geometry.transforms import invert_rigid, pose_matrix

__all__ = ["Face", "RenderedScene", "render_scene", "ground_truth_tracks", "ground_truth_reconstruction",
           "query_bodies", "CAMERA_KINDS"]

NEAR = 0.05                 # camera z below which nothing is drawn or visible
_DEPTH_TOLERANCE = 1e-6     # relative: a point is visible where its ray's nearest hit lies at its own depth
_SKY = np.array([150.0, 175.0, 205.0])
_LIGHT = np.array([0.35, -0.5, 0.8]) / np.linalg.norm([0.35, -0.5, 0.8])
_AMBIENT = 0.6


@dataclass(frozen=True)
class Face:
    """A textured rectangle fixed to a body: points origin + a·axis_u + b·axis_v, a ∈ [0, width], b ∈ [0, height],
    in body coordinates. axis_u, axis_v: (3,) orthonormal · texture: (h, w, 3) uint8 covering the rectangle at
    texels_per_unit · one_sided: hidden when seen from the side opposite axis_u × axis_v (faces of closed boxes)."""

    body: int
    origin: np.ndarray
    axis_u: np.ndarray
    axis_v: np.ndarray
    width: float
    height: float
    texture: np.ndarray
    texels_per_unit: float
    one_sided: bool


@dataclass(frozen=True)
class RenderedScene:
    """A rendered clip and everything needed for exact ground truth.

    frames: (N, H, W, 3) uint8 RGB · intrinsics: (3, 3) float64 · camera_to_world: (N, 4, 4) float64 OpenCV ·
    body_to_world: (N, B, 4, 4) float64, body 0 the static world (identity) · faces: the B bodies' faces ·
    depth: (N, H, W) float32 camera z of each pixel's surface (inf where none) ·
    face_id: (N, H, W) int16 index into faces of each pixel's surface (−1 where none).
    """

    frames: np.ndarray
    intrinsics: np.ndarray
    camera_to_world: np.ndarray
    body_to_world: np.ndarray
    faces: tuple[Face, ...]
    depth: np.ndarray
    face_id: np.ndarray

    @property
    def world_to_camera(self) -> np.ndarray:
        """(N, 4, 4) float64."""
        return invert_rigid(self.camera_to_world)

    @property
    def image_size(self) -> tuple[int, int]:
        """(W, H)."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


# ---------------------------------------------------------------------------------------------------- scene content
def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: rotation by ``angle`` radians about ``axis`` (3,) → (3, 3)."""
    rot, _ = cv2.Rodrigues(np.asarray(axis, np.float64) / np.linalg.norm(axis) * angle)
    return rot


def _texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Procedural texture (height, width, 3) uint8: coloured multi-scale noise, maybe a faint checker, then random
    blobs, boxes and strokes (about one per 30×30 texels), softened by a 1-texel blur."""
    img = np.tile(rng.uniform(70, 190, 3).astype(np.float32), (height, width, 1))
    for cell, amplitude in ((96, 45.0), (24, 30.0), (6, 18.0)):
        coarse = rng.normal(0, amplitude, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        img += cv2.resize(cv2.GaussianBlur(coarse, (0, 0), 0.8), (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        period = int(rng.integers(16, 64))
        yy, xx = np.mgrid[:height, :width]
        img += np.where(((xx // period + yy // period) % 2)[..., None] == 1, 12.0, -12.0).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(max(4, width * height // 900)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        size = int(rng.integers(3, 22))
        kind = rng.integers(3)
        if kind == 0:
            cv2.circle(img, centre, size, colour, -1, cv2.LINE_AA)
        elif kind == 1:
            corners = cv2.boxPoints((centre, (2.0 * size, float(rng.integers(3, 22))), float(rng.uniform(0, 180))))
            cv2.fillPoly(img, [np.round(corners).astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = (centre[0] + int(rng.integers(-3, 4)) * size, centre[1] + int(rng.integers(-3, 4)) * size)
            cv2.line(img, centre, end, colour, int(rng.integers(1, 5)), cv2.LINE_AA)
    return cv2.GaussianBlur(img, (0, 0), 1.0)


def _rectangle(rng, body, origin, axis_u, axis_v, width, height, texels_per_unit, one_sided) -> Face:
    size = (max(4, round(width * texels_per_unit)), max(4, round(height * texels_per_unit)))
    return Face(body, np.asarray(origin, np.float64), np.asarray(axis_u, np.float64), np.asarray(axis_v, np.float64),
                float(width), float(height), _texture(rng, *size), float(texels_per_unit), one_sided)


def _box(rng, body: int, centre, half: np.ndarray, texels_per_unit: float) -> list[Face]:
    """The 6 outward-facing faces of an axis-aligned box (half sizes (3,)) centred at ``centre`` (3,)."""
    faces = []
    eye = np.eye(3)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        for sign in (1.0, -1.0):
            normal, u = sign * eye[i], eye[j]
            v = np.cross(normal, u)
            origin = np.asarray(centre) + sign * half[i] * eye[i] - half[j] * u - half[k] * v
            faces.append(_rectangle(rng, body, origin, u, v, 2 * half[j], 2 * half[k], texels_per_unit, True))
    return faces


def _room(rng) -> list[Face]:
    """Ground (x, y ∈ [−10, 10] × [−12, 8]), back wall at y = 8 and side walls at x = ±10, 8 units high."""
    ex, ey, ez = np.eye(3)
    return [
        _rectangle(rng, 0, (-10, -12, 0), ex, ey, 20, 20, 80, False),
        _rectangle(rng, 0, (-10, 8, 8), ex, -ez, 20, 8, 64, False),
        _rectangle(rng, 0, (-10, -12, 8), ey, -ez, 20, 8, 48, False),
        _rectangle(rng, 0, (10, 8, 8), -ey, -ez, 20, 8, 48, False),
    ]


def _wiggle(rng, amplitude: float, cycles: tuple[float, float], dims: int = 3) -> Callable[[np.ndarray], np.ndarray]:
    """Sum of two random sinusoids per dimension, as a function of continuous time: τ (N,) → (N, dims), each within
    ±amplitude (``cycles``: the range of whole periods over τ ∈ [0, 1]). The draws happen here, once."""
    params = [(rng.uniform(*cycles, dims), rng.uniform(0, 2 * np.pi, dims)) for _ in range(2)]

    def at(tau: np.ndarray) -> np.ndarray:
        tau = np.asarray(tau, np.float64)
        out = np.zeros((len(tau), dims))
        for freq, phase in params:
            out += 0.5 * amplitude * np.sin(2 * np.pi * freq * tau[:, None] + phase)
        return out
    return at


def _smooth_wiggle(rng, tau: np.ndarray, amplitude: float, cycles: tuple[float, float], dims: int = 3) -> np.ndarray:
    """Sum of two random sinusoids per dimension: (N,) τ ∈ [0, 1] → (N, dims), each within ±amplitude."""
    return _wiggle(rng, amplitude, cycles, dims)(tau)


PoseFunction = Callable[[np.ndarray], np.ndarray]


def _there_and_back(tau: np.ndarray) -> np.ndarray:
    """τ (M,) itself on [0, 1], then back and forth (period 2): on a longer take (:func:`render_scene`'s ``span``) a
    path or mover that would leave the scene turns round at its ends."""
    m = np.mod(np.asarray(tau, np.float64), 2.0)
    return np.where(m <= 1.0, m, 2.0 - m)


def _movers(rng) -> tuple[list[Face], PoseFunction]:
    """A box sliding and turning on the ground (body 1) and a spinning card flying nearer the camera (body 2).

    Returns their faces and body_to_world as a function of time: τ (M,) → (M, 2, 4, 4)."""
    half = np.array([rng.uniform(0.6, 0.9), rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6)])
    faces = _box(rng, 1, (0, 0, 0), half, 192)
    side = rng.choice([-1.0, 1.0])
    start, end = np.array([-2.2 * side, rng.uniform(-1.0, 0.5), half[2]]), np.array([2.2 * side, 0.0, half[2]])
    end[1] = start[1] + rng.uniform(-0.8, 0.8)
    turn = rng.uniform(0.6, 1.6) * rng.choice([-1.0, 1.0])
    yaw0 = rng.uniform(0, np.pi)

    card_w, card_h = rng.uniform(1.0, 1.5), rng.uniform(0.8, 1.1)
    faces.append(_rectangle(rng, 2, (-card_w / 2, 0, card_h / 2), (1, 0, 0), (0, 0, -1), card_w, card_h, 192,
                            False))
    card_start = np.array([2.0 * side, rng.uniform(-2.5, -1.5), rng.uniform(1.0, 1.5)])
    card_end = np.array([-2.0 * side, card_start[1] + rng.uniform(-0.5, 0.5), rng.uniform(0.9, 1.6)])
    spin, tilt = rng.uniform(0.8, 1.5) * rng.choice([-1.0, 1.0]), rng.uniform(-0.4, 0.4)
    bob_at = _wiggle(rng, 0.3, (0.5, 1.5))

    def poses(tau: np.ndarray) -> np.ndarray:
        along = _there_and_back(tau)
        box = [pose_matrix(_rotation((0, 0, 1), yaw0 + turn * s), start + (end - start) * s) for s in along]
        bob = bob_at(tau)
        card = [pose_matrix(_rotation((0, 0, 1), spin * s) @ _rotation((1, 0, 0), tilt * np.sin(np.pi * s)),
                            card_start + (card_end - card_start) * s + bob[i]) for i, s in enumerate(along)]
        return np.stack([np.stack(box), np.stack(card)], 1)
    return faces, poses


# A camera path is three functions of τ: eye (M, 3), target (M, 3) it looks at, roll (M,) radians about the view axis.
CameraPath = tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray],
                   Callable[[np.ndarray], np.ndarray]]
CAMERA_KINDS = ("handheld", "orbit", "walk", "pan", "fast", "fixed")
SCENE_CENTRE = np.array([0.0, 0.5, 0.8])


def _intrinsics(rng, size: tuple[int, int]) -> np.ndarray:
    """Pinhole K (3, 3) with a 55–70° horizontal field of view and a principal point within 3 px of the centre."""
    width, height = size
    focal = (width / 2) / np.tan(np.radians(rng.uniform(55, 70)) / 2)
    return np.array([[focal, 0, (width - 1) / 2 + rng.uniform(-3, 3)],
                     [0, focal, (height - 1) / 2 + rng.uniform(-3, 3)], [0, 0, 1]])


def _handheld(rng, speed: float = 1.0, shake: float = 1.0) -> CameraPath:
    """A sideways sweep with a slight dolly, slow sway and faster shake, looking at the middle of the scene; ``speed``
    scales the sweep and the sway's rate, ``shake`` the shake's and roll's amplitude and rate (1, 1: the default)."""
    sweep = np.array([rng.uniform(1.0, 2.5) * rng.choice([-1.0, 1.0]), rng.uniform(-1.0, 1.0),
                      rng.uniform(-0.3, 0.3)]) * speed
    eye0 = np.array([rng.uniform(-1, 1), rng.uniform(-5.5, -4.5), rng.uniform(1.6, 2.4)])
    sway = _wiggle(rng, 0.15, (0.3 * speed, 1.0 * speed))
    jitter = _wiggle(rng, 0.02 * shake, (3.0 * shake, 6.0 * shake))
    look = _wiggle(rng, 0.3, (0.3 * speed, 1.0 * speed))
    roll = _wiggle(rng, 3.0 * shake, (0.3 * shake, 1.5 * shake), 1)
    return (lambda tau: eye0 + (_there_and_back(tau)[:, None] - 0.5) * sweep + sway(tau) + jitter(tau),
            lambda tau: SCENE_CENTRE + look(tau),
            lambda tau: np.radians(roll(tau)[:, 0]))


def _orbit(rng) -> CameraPath:
    """An arc of 60–90° around a point near the middle of the scene, 5–6.5 units away and 1.8–2.6 high, looking at
    it."""
    centre = SCENE_CENTRE + np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.5), 0.0])
    radius, height = rng.uniform(5.0, 6.5), rng.uniform(1.8, 2.6)
    arc = np.radians(rng.uniform(60, 90)) * rng.choice([-1.0, 1.0])
    azimuth0 = -np.pi / 2 + rng.uniform(-0.3, 0.3)
    breathe = _wiggle(rng, 0.15, (0.3, 1.0))
    jitter = _wiggle(rng, 0.015, (3.0, 6.0))
    look = _wiggle(rng, 0.2, (0.3, 1.0))
    roll = _wiggle(rng, 2.0, (0.3, 1.5), 1)

    def eye(tau):
        tau = np.asarray(tau, np.float64)
        phi = azimuth0 + arc * (tau - 0.5)
        ring = np.stack([centre[0] + radius * np.cos(phi), centre[1] + radius * np.sin(phi),
                         np.full_like(tau, height)], 1)
        return ring + breathe(tau) + jitter(tau)
    return eye, lambda tau: centre + look(tau), lambda tau: np.radians(roll(tau)[:, 0])


def _walk(rng) -> CameraPath:
    """Walking forward (+y, ±15°) 1.8–2.6 units with a sideways drift, eyes 1.7 high, a step bob and sway, looking
    ahead and a little down."""
    start = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-7.0, -6.0), 1.7])
    heading = np.radians(rng.uniform(-15, 15))
    forward = np.array([np.sin(heading), np.cos(heading), 0.0])
    right = np.array([forward[1], -forward[0], 0.0])
    distance, drift = rng.uniform(1.8, 2.6), rng.uniform(-0.6, 0.6)
    steps, phase = rng.uniform(2.5, 3.5), rng.uniform(0, 2 * np.pi)
    jitter = _wiggle(rng, 0.01, (3.0, 6.0))
    look = _wiggle(rng, 0.35, (0.3, 1.0))
    roll = _wiggle(rng, 1.5, (0.5, 2.0), 1)

    def eye(tau):
        tau = np.asarray(tau, np.float64)[:, None]
        bob = 0.03 * np.cos(2 * np.pi * steps * tau + phase) * np.array([0.0, 0.0, 1.0])
        sway = 0.025 * np.sin(np.pi * steps * tau + phase) * right
        return (start + _there_and_back(tau) * (distance * forward + drift * right) + bob + sway
                + jitter(tau[:, 0]))
    return (eye, lambda tau: eye(tau) + 6.0 * forward + np.array([0.0, 0.0, -0.7]) + look(tau),
            lambda tau: np.radians(roll(tau)[:, 0]))


def _pan(rng) -> CameraPath:
    """A camera that mostly turns: a 30–50° pan across the scene with a little tilt, its centre moving < 0.02."""
    eye0 = np.array([rng.uniform(-1, 1), rng.uniform(-5.5, -4.5), rng.uniform(1.5, 2.2)])
    towards = SCENE_CENTRE - eye0
    yaw_mid = np.arctan2(towards[0], towards[1]) + rng.uniform(-0.1, 0.1)
    span = np.radians(rng.uniform(30, 50)) * rng.choice([-1.0, 1.0])
    pitch0 = np.arctan2(towards[2], np.linalg.norm(towards[:2]))
    jitter = _wiggle(rng, 0.01, (1.0, 3.0))
    wobble = _wiggle(rng, np.radians(3.0), (0.3, 1.0), 2)
    roll = _wiggle(rng, 1.0, (0.3, 1.5), 1)

    def target(tau):
        tau = np.asarray(tau, np.float64)
        angles = wobble(tau)
        yaw, pitch = yaw_mid + span * (_there_and_back(tau) - 0.5) + angles[:, 0], pitch0 + angles[:, 1]
        view = np.stack([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), np.sin(pitch)], 1)
        return eye0 + 5.0 * view
    return lambda tau: eye0 + jitter(tau), target, lambda tau: np.radians(roll(tau)[:, 0])


def _fixed(rng) -> CameraPath:
    """A camera that does not move at all (a tripod)."""
    eye0 = np.array([rng.uniform(-1, 1), rng.uniform(-5.5, -4.5), rng.uniform(1.6, 2.2)])
    target0 = SCENE_CENTRE + rng.uniform(-0.3, 0.3, 3)
    return (lambda tau: np.broadcast_to(eye0, (len(tau), 3)), lambda tau: np.broadcast_to(target0, (len(tau), 3)),
            lambda tau: np.zeros(len(tau)))


def _look_at(eyes: np.ndarray, targets: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """camera_to_world (M, 4, 4) of cameras at eyes (M, 3) looking at targets (M, 3), z up, rolled by roll (M,)."""
    poses = []
    for eye, target, angle in zip(eyes, targets, roll):
        forward = (target - eye) / np.linalg.norm(target - eye)
        right = np.cross(forward, (0, 0, 1))
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rot = _rotation(forward, angle) @ np.stack([right, down, forward], 1)
        poses.append(pose_matrix(rot, eye))
    return np.stack(poses)


def _animal(rng, body: int, eye_at: Callable[[np.ndarray], np.ndarray]) -> tuple[list[Face], PoseFunction, Callable]:
    """A large "animal" (body, head and four legs, rigid, x forward, standing on the ground) that walks and turns
    in front of the camera path ``eye_at`` (its middle 1.7–2.1 units from the eye), side-on to it, drifting across its
    view.

    Returns its faces (body ``body``), its body_to_world as a function of τ (M,) → (M, 4, 4), and the point the
    camera should look at, τ (M,) → (M, 3) (the middle of its body)."""
    hx, hy, hz = rng.uniform(0.8, 0.95), rng.uniform(0.3, 0.38), rng.uniform(0.28, 0.34)
    leg = rng.uniform(0.45, 0.55)
    # coarse texture (as coarse as the ground's): seen from 2 units a denser one would out-texture the background
    faces = _box(rng, body, (0.0, 0.0, leg + hz), np.array([hx, hy, hz]), 72)
    head = np.array([0.2, 0.16, 0.17])
    faces += _box(rng, body, (hx + 0.1, 0.0, leg + 2 * hz + 0.05), head, 96)
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            faces += _box(rng, body, (sx * (hx - 0.15), sy * (hy - 0.08), leg / 2), np.array([0.07, 0.07, leg / 2]),
                          96)
    distance = rng.uniform(1.8, 2.0)          # from the eye to the middle of the body
    near_far = _wiggle(rng, 0.12, (0.3, 0.8), 1)
    drift = rng.uniform(0.4, 0.9) * rng.choice([-1.0, 1.0])
    meander = _wiggle(rng, 0.3, (0.3, 0.8), 1)
    turn = rng.uniform(0.5, 1.2) * rng.choice([-1.0, 1.0])
    sway = _wiggle(rng, 0.2, (0.5, 1.5), 1)
    steps, phase = rng.uniform(2.0, 4.0), rng.uniform(0, 2 * np.pi)
    look = _wiggle(rng, 0.08, (0.3, 1.0))

    def ground(tau):
        """Position on the ground (M, 3) and yaw (M,) of the animal at τ."""
        tau = np.asarray(tau, np.float64)
        eyes = eye_at(tau)
        towards = SCENE_CENTRE[:2] - eyes[:, :2]
        towards /= np.linalg.norm(towards, axis=1, keepdims=True)
        across = np.stack([towards[:, 1], -towards[:, 0]], 1)
        offset = drift * (_there_and_back(tau) - 0.5) + meander(tau)[:, 0]
        drop = eyes[:, 2] - (leg + hz)
        reach = np.sqrt(np.maximum((distance + near_far(tau)[:, 0]) ** 2 - drop ** 2, 0.5))
        xy = eyes[:, :2] + reach[:, None] * towards + offset[:, None] * across
        yaw = np.arctan2(across[:, 1], across[:, 0]) + (np.pi if drift < 0 else 0.0) \
            + turn * (_there_and_back(tau) - 0.5) \
            + sway(tau)[:, 0]
        z = 0.015 * (1 + np.sin(2 * np.pi * steps * tau + phase))
        return np.column_stack([xy, z]), yaw

    def poses(tau):
        position, yaw = ground(tau)
        return np.stack([pose_matrix(_rotation((0, 0, 1), a), p) for a, p in zip(yaw, position)])

    def target(tau):
        return ground(tau)[0] + np.array([0.0, 0.0, leg + hz]) + look(tau)
    return faces, poses, target


def _frame_times(n_frames: int, subframes: int, shutter: float, span: float = 1.0) -> np.ndarray:
    """(N, S) sample times: frame t's S subframes spread evenly over ``shutter`` × the frame interval around
    τ_t = span · t / (N − 1)."""
    tau = np.linspace(0.0, span, n_frames)
    offsets = ((np.arange(subframes) + 0.5) / subframes - 0.5) * shutter * span / (n_frames - 1)
    return tau[:, None] + offsets[None]


# ---------------------------------------------------------------------------------------------------- ray casting
def _faces_in_camera(scene_faces, body_to_world: np.ndarray, world_to_camera: np.ndarray) -> np.ndarray:
    """Every face's origin, axis_u, axis_v and normal in one frame's camera coordinates: (F, 4, 3).

    body_to_world: (B, 4, 4) · world_to_camera: (4, 4)."""
    out = np.empty((len(scene_faces), 4, 3))
    for f, face in enumerate(scene_faces):
        pose = world_to_camera @ body_to_world[face.body]
        rot = pose[:3, :3]
        out[f, 0] = rot @ face.origin + pose[:3, 3]
        out[f, 1], out[f, 2] = rot @ face.axis_u, rot @ face.axis_v
        out[f, 3] = np.cross(out[f, 1], out[f, 2])
    return out


def _hit(face: Face, geometry: np.ndarray, rays: np.ndarray):
    """Intersect rays (..., 3) with z = 1 (camera coordinates) with one face (geometry (4, 3) from
    :func:`_faces_in_camera`). Returns depth z (...), face coordinates a, b (...) and hit (...) bool."""
    origin, axis_u, axis_v, normal = geometry
    facing = normal @ origin   # < 0: the camera sees the front side
    if face.one_sided and facing >= 0:
        shape = rays.shape[:-1]
        return np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape, bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = facing / (rays @ normal.astype(rays.dtype))
        a = depth * (rays @ axis_u.astype(rays.dtype)) - axis_u @ origin
        b = depth * (rays @ axis_v.astype(rays.dtype)) - axis_v @ origin
        hit = (depth > NEAR) & (a >= 0) & (a <= face.width) & (b >= 0) & (b <= face.height)
    return depth, a, b, hit


def _cast(faces, geometry: np.ndarray, rays: np.ndarray):
    """Nearest face along each ray (M, 3) with z = 1: face index (M,) int (−1: none), depth, a, b (M,)."""
    m = len(rays)
    best, depth = np.full(m, -1), np.full(m, np.inf)
    a, b = np.zeros(m), np.zeros(m)
    for f, face in enumerate(faces):
        d, fa, fb, hit = _hit(face, geometry[f], rays)
        nearer = hit & (d < depth)
        best[nearer], depth[nearer], a[nearer], b[nearer] = f, d[nearer], fa[nearer], fb[nearer]
    return best, depth, a, b


def _pixel_box(geometry: np.ndarray, face: Face, k: np.ndarray, size: tuple[int, int]) -> tuple[slice, slice]:
    """Rows and columns of the image that a face can cover (the whole image when a corner is behind the camera)."""
    width, height = size
    origin, axis_u, axis_v, _ = geometry
    corners = origin + np.array([[0, 0], [1, 0], [0, 1], [1, 1]]) @ np.stack([face.width * axis_u,
                                                                                face.height * axis_v])
    if (corners[:, 2] <= NEAR).any():
        return slice(0, height), slice(0, width)
    pixels = corners @ k.T
    pixels = pixels[:, :2] / pixels[:, 2:]
    x0, y0 = np.clip(np.floor(pixels.min(0)).astype(int), 0, (width, height))
    x1, y1 = np.clip(np.ceil(pixels.max(0)).astype(int) + 1, 0, (width, height))
    return slice(y0, y1), slice(x0, x1)


def _sample(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear texture colours (M, 3) float32 at texel coordinates x, y (M,) (texel centres at integers)."""
    m, row = len(x), 1024   # cv2.remap wants maps under 32767 rows: lay the M samples out in rows of 1024
    pad = -m % row
    map_x, map_y = (np.pad(c, (0, pad)).reshape(-1, row) for c in (x, y))
    colour = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return colour.reshape(-1, 3)[:m].astype(np.float32)


def _render_frame(faces, geometry: np.ndarray, shading: np.ndarray, k: np.ndarray, rays: np.ndarray):
    """One frame: RGB (H, W, 3) float32, depth (H, W) float32 and face_id (H, W) int16.

    geometry: (F, 4, 3) camera-frame faces · shading: (F,) brightness · rays: (H, W, 3) float32 pixel-centre rays."""
    height, width = rays.shape[:2]
    depth = np.full((height, width), np.inf, np.float32)
    face_id = np.full((height, width), -1, np.int16)
    tex_x, tex_y = np.zeros((height, width), np.float32), np.zeros((height, width), np.float32)
    for f, face in enumerate(faces):
        rows, cols = _pixel_box(geometry[f], face, k, (width, height))
        d, a, b, hit = _hit(face, geometry[f], rays[rows, cols])
        nearer = hit & (d < depth[rows, cols])
        depth[rows, cols][nearer] = d[nearer]
        face_id[rows, cols][nearer] = f
        tex_x[rows, cols][nearer] = a[nearer] * face.texels_per_unit - 0.5
        tex_y[rows, cols][nearer] = b[nearer] * face.texels_per_unit - 0.5
    image = np.tile(_SKY.astype(np.float32), (height, width, 1))
    for f in np.unique(face_id[face_id >= 0]):
        mask = face_id == f
        image[mask] = _sample(faces[f].texture, tex_x[mask], tex_y[mask]) * shading[f]
    return image, depth, face_id


def _pixel_rays(k: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Rays with z = 1 through pixels (..., 2) → (..., 3)."""
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1)
    return homogeneous @ np.linalg.inv(k).T


# ---------------------------------------------------------------------------------------------------- public API
def _camera_path(kind: str, rng, extra) -> CameraPath:
    """The camera path of ``kind`` (:data:`CAMERA_KINDS`); "handheld" draws from the scene's rng as it always did,
    every other kind from ``extra`` (the scene's rng has drawn the handheld path already)."""
    handheld = _handheld(rng)
    if kind == "handheld":
        return handheld
    if kind == "fast":
        return _handheld(extra, speed=3.5, shake=3.0)
    return {"orbit": _orbit, "walk": _walk, "pan": _pan, "fixed": _fixed}[kind](extra)


def render_scene(seed: int, n_frames: int = 50, size: tuple[int, int] = (640, 480), noise_std: float = 0.0, *,
                 camera: str = "handheld", close_mover: bool = False, subframes: int = 1,
                 shutter: float = 0.5, span: float = 1.0) -> RenderedScene:
    """Build and render scene ``seed``: n_frames frames of size (W, H), with Gaussian image noise of ``noise_std``
    grey levels (0 = clean). The same arguments give the same scene, bit for bit.

    camera: the path, one of :data:`CAMERA_KINDS` — "handheld" (a sideways sweep with sway and shake), "orbit" (a
    60–90° arc around the scene's middle, looking at it), "walk" (walking forward 1.7 high with a step bob), "pan"
    (mostly turning), "fast" (handheld with a 3.5× faster sweep and 3× stronger shake, for motion blur) or "fixed"
    (does not move). close_mover: add a large "animal" (body 3: body, head, legs) walking and turning 1–2 units in
    front of the camera, which follows it with its gaze; it covers roughly half of the image. subframes, shutter:
    motion blur — each frame is the mean of ``subframes`` renders spread over ``shutter`` × the frame interval around
    the frame's time (cameras and bodies evaluated at those times); the ground truth (poses, depth, face_id) is the
    frame's centre time. span: the stretch of the paths the clip covers (1: as designed; k > 1: a k times longer
    take at the same speed — the orbit goes on around the scene, coming back to where it started after 4–6; the
    movers, the animal and every other path turn round at their ends and go back, :func:`_there_and_back`). The room,
    static boxes, movers and intrinsics of a seed are the same whatever these options; with their defaults the output
    is the original handheld clip, bit for bit.
    """
    if n_frames < 2:
        raise ValueError(f"render_scene needs n_frames >= 2, got {n_frames}")
    if camera not in CAMERA_KINDS:
        raise ValueError(f"camera must be one of {CAMERA_KINDS}, got {camera!r}")
    if not span > 0:
        raise ValueError(f"render_scene needs span > 0, got {span}")
    if subframes < 1 or not 0.0 <= shutter <= 1.0:
        raise ValueError(f"need subframes >= 1 and shutter in [0, 1], got {subframes}, {shutter}")
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng([seed, 1])     # everything the original scene does not draw
    tau = np.linspace(0.0, span, n_frames)
    faces = _room(rng)
    for _ in range(2):
        half = rng.uniform(0.3, 0.7, 3)
        centre = (rng.uniform(-4, 4), rng.uniform(1.5, 5), half[2])
        faces += _box(rng, 0, centre, half, 96)
    mover_faces, mover_poses = _movers(rng)
    faces = faces + mover_faces
    k = _intrinsics(rng, size)
    eye, target, roll = _camera_path(camera, rng, extra)
    bodies = [mover_poses]
    if close_mover:
        animal_faces, animal_poses, target = _animal(extra, 3, eye)
        faces = faces + animal_faces
        bodies.append(lambda t: animal_poses(t)[:, None])
    faces = tuple(faces)

    def body_poses(times: np.ndarray) -> np.ndarray:
        return np.concatenate([np.broadcast_to(np.eye(4), (len(times), 1, 4, 4))] + [f(times) for f in bodies], 1)

    def camera_poses(times: np.ndarray) -> np.ndarray:
        return _look_at(eye(times), target(times), roll(times))

    body_to_world = body_poses(tau)
    camera_to_world = camera_poses(tau)
    world_to_camera = invert_rigid(camera_to_world)
    if subframes > 1:
        times = _frame_times(n_frames, subframes, shutter, span).reshape(-1)
        sub_bodies = body_poses(times).reshape(n_frames, subframes, -1, 4, 4)
        sub_w2c = invert_rigid(camera_poses(times)).reshape(n_frames, subframes, 4, 4)

    width, height = size
    rays = _pixel_rays(k, np.stack(np.meshgrid(np.arange(width), np.arange(height)), -1).astype(np.float64))
    rays = rays.astype(np.float32)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    depth = np.empty((n_frames, height, width), np.float32)
    face_id = np.empty((n_frames, height, width), np.int16)

    def render_at(poses: np.ndarray, w2c: np.ndarray):
        world_normals = _faces_in_camera(faces, poses, np.eye(4))[:, 3]
        shading = _AMBIENT + (1 - _AMBIENT) * np.abs(world_normals @ _LIGHT)
        return _render_frame(faces, _faces_in_camera(faces, poses, w2c), shading, k, rays)

    for t in range(n_frames):
        image, depth[t], face_id[t] = render_at(body_to_world[t], world_to_camera[t])
        if subframes > 1:
            # the middle of an odd number of subframes is the frame's own time: its render is already there
            image = np.mean([image if 2 * j + 1 == subframes else render_at(sub_bodies[t, j], sub_w2c[t, j])[0]
                             for j in range(subframes)], 0).astype(np.float32)
        if noise_std > 0:
            image += rng.normal(0.0, noise_std, image.shape).astype(np.float32)
        frames[t] = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return RenderedScene(frames, k, camera_to_world, body_to_world, faces, depth, face_id)


def _surface_points(scene: RenderedScene, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face index (Q,) (−1: the query shows no surface) and body-coordinate point (Q, 3) seen at each query."""
    queries = np.asarray(queries, np.float64)
    if queries.ndim != 2 or queries.shape[1] != 3:
        raise ValueError(f"queries must be (Q, 3) [t, x, y], got shape {queries.shape}")
    frame = np.round(queries[:, 0]).astype(int)
    if ((frame < 0) | (frame >= len(scene.frames))).any():
        raise ValueError(f"query frames must lie in [0, {len(scene.frames) - 1}]")
    w2c = scene.world_to_camera
    face_index, local = np.full(len(queries), -1), np.zeros((len(queries), 3))
    for t in np.unique(frame):
        sel = np.flatnonzero(frame == t)
        geometry = _faces_in_camera(scene.faces, scene.body_to_world[t], w2c[t])
        best, _, a, b = _cast(scene.faces, geometry, _pixel_rays(scene.intrinsics, queries[sel, 1:]))
        face_index[sel] = best
        for j in np.flatnonzero(best >= 0):
            face = scene.faces[best[j]]
            local[sel[j]] = face.origin + a[j] * face.axis_u + b[j] * face.axis_v
    return face_index, local


def query_bodies(scene: RenderedScene, queries: np.ndarray) -> np.ndarray:
    """Body each query (Q, 3) [t, x, y] lands on: (Q,) int, 0 = static world, ≥ 1 a mover, −1 no surface."""
    face_index, _ = _surface_points(scene, queries)
    return np.array([scene.faces[f].body if f >= 0 else -1 for f in face_index], dtype=np.int64)


def ground_truth_tracks(scene: RenderedScene, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact tracks of query points.

    queries: (Q, 3) [t, x, y], pixel (x, y) in frame t → tracks (N, Q, 2) float64 pixels, occluded (N, Q) bool.
    A track is the projection of the surface point seen at its query (NaN where it lies behind the camera, and
    everywhere for a query that shows no surface); occluded where that point is out of the image, behind the camera,
    on a face turned away, or behind another surface.
    """
    face_index, local = _surface_points(scene, queries)
    n, q = len(scene.frames), len(face_index)
    width, height = scene.image_size
    tracks, occluded = np.full((n, q, 2), np.nan), np.ones((n, q), bool)
    bodies = np.array([scene.faces[f].body if f >= 0 else -1 for f in face_index])
    w2c = scene.world_to_camera
    for t in range(n):
        cam = np.zeros((q, 3))
        for body in np.unique(bodies[bodies >= 0]):
            sel = bodies == body
            pose = w2c[t] @ scene.body_to_world[t, body]
            cam[sel] = local[sel] @ pose[:3, :3].T + pose[:3, 3]
        z = cam[:, 2]
        front = (bodies >= 0) & (z > NEAR)
        rays = cam[front] / z[front, None]
        pixels = rays @ scene.intrinsics.T
        tracks[t, front] = pixels[:, :2]
        geometry = _faces_in_camera(scene.faces, scene.body_to_world[t], w2c[t])
        _, nearest, _, _ = _cast(scene.faces, geometry, rays)
        inside = (pixels[:, 0] >= -0.5) & (pixels[:, 0] <= width - 0.5) & (pixels[:, 1] >= -0.5) \
            & (pixels[:, 1] <= height - 0.5)
        seen = np.abs(nearest - z[front]) <= _DEPTH_TOLERANCE * z[front]
        occluded[t, front] = ~(inside & seen)
    return tracks, occluded


def ground_truth_reconstruction(scene: RenderedScene, queries: np.ndarray) -> "Reconstruction":
    """The exact :class:`~tracks4d.contracts.Reconstruction` of the tracks of ``queries`` (Q, 3) [t, x, y]: true
    cameras, every track's true world point in every frame, static points and a static mask from the bodies (queries
    that show no surface are dropped). What a perfect reconstruction would give the stages after it."""
    from ..contracts import Reconstruction

    face_index, local = _surface_points(scene, queries)
    keep = face_index >= 0
    tracks, occluded = ground_truth_tracks(scene, queries[keep])
    body = np.array([scene.faces[f].body for f in face_index[keep]])
    pose = scene.body_to_world[:, body]                                           # (N, Q, 4, 4)
    world = np.einsum("nqij,qj->nqi", pose[..., :3, :3], local[keep]) + pose[..., :3, 3]
    w2c = scene.world_to_camera
    depth = np.einsum("nij,nqj->nqi", w2c[:, :3, :3], world)[..., 2] + w2c[:, None, 2, 3]
    static = body == 0
    n, q = depth.shape
    return Reconstruction(
        camera_to_world=scene.camera_to_world, world_to_camera=w2c,
        intrinsics=np.broadcast_to(scene.intrinsics, (n, 3, 3)).copy(), points=world,
        static_points=world.mean(0), motion_level=np.where(static, 1e-4, 1e-1),
        depth=depth, bases=np.zeros((1, q, 3)), coefficients=np.zeros((n, 1)),
        tracks=np.nan_to_num(tracks), visible=~occluded,
        meta={"static_mask": static.tolist(), "image_size": list(scene.image_size), "source": "ground truth"})
