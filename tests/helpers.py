"""What several test modules share: scenes, clips, request bodies and waits (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np

from tracks4d.contracts import Reconstruction, TrackSet
from tracks4d.geometry import invert_rigid, pose_matrix, umeyama_sim3
from training.synthetic import SceneConfig, generate_scene


def texture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(0, 255, (h // 8, w // 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(base + rng.normal(0, 6, (h, w)), 0, 255).astype(np.float32)


def shifted_clip(n=30, h=120, w=160, velocity=(0.7, -0.4), seed=0):
    """A textured image translating by a sub-pixel velocity: the true motion of every pixel is known."""
    big = texture(h + 80, w + 80, seed)
    frames = []
    for t in range(n):
        m = np.float32([[1, 0, velocity[0] * t - 40], [0, 1, velocity[1] * t - 40]])
        g = cv2.warpAffine(big, m, (w, h), flags=cv2.INTER_CUBIC)  # content moves by +velocity per frame
        frames.append(np.repeat(np.clip(g, 0, 255).astype(np.uint8)[..., None], 3, -1))
    return np.stack(frames)


def write_mp4(path, frames, fps=12):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


LIMITS = {"max_upload_mb": 2, "max_frames": 120, "max_tracks": 500, "queue_size": 3}


def small_tracks(seed: int = 0, n_frames: int = 20, step: int = 6) -> TrackSet:
    scene = generate_scene(seed, SceneConfig(n_frames=n_frames))
    return scene.tracks.subset(points=np.arange(0, scene.tracks.n_points, step))


def json_body(tracks: TrackSet, **options) -> dict:
    k = tracks.intrinsics if tracks.intrinsics.ndim == 2 else tracks.intrinsics[0]
    return {"tracks": tracks.tracks.tolist(), "visible": tracks.visible.tolist(), "intrinsics": k.tolist(), **options}


def npz_bytes(tracks: TrackSet, tmp_path: Path) -> bytes:
    tracks.save(tmp_path / "upload.npz")
    return (tmp_path / "upload.npz").read_bytes()


def npz_members(members: dict[str, bytes]) -> bytes:
    """An .npz (zip) holding ``members`` as given, forged or not."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def slow_body(seed: int, steps: int = 200, **options) -> dict:
    """A job that runs a while: ``steps`` fine-tuning steps on 50 frames × 303 tracks (~2 s each on 2 busy cores;
    200: minutes — for jobs a test interrupts)."""
    return json_body(small_tracks(seed, n_frames=50, step=2), finetune_steps=steps, **options)


def running_job(data_dir: Path, timeout: float = 120) -> str:
    """The id of the job that is running, once one is (read from the job states on disk)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in (data_dir / "jobs").glob("*/job.json"):
            try:
                job = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if job["state"] == "running":
                return job["id"]
        time.sleep(0.1)
    raise TimeoutError("no job started running")


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(what)


F, W, H = 500.0, 640, 480


def rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: (3,) → (3, 3)."""
    angle = np.linalg.norm(axis_angle)
    if angle < 1e-12:
        return np.eye(3)
    k = axis_angle / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def make_scene(n: int = 50, n_static: int = 300, n_dynamic: int = 50, seed: int = 0, focal_error: float = 0.0,
               n_outliers: int = 0, arc: float = 0.6):
    """A noisy reconstruction of a known scene → (reconstruction, true c2w (N, 4, 4), outliers (O, 2) (frame, point)).

    Cameras on an arc of ±``arc`` radians (0: a fixed camera) looking at the origin; the last ``n_dynamic`` points move (γ = 0.1), the rest are static
    (γ = 0.001). Initial cameras are perturbed by ~1° and ~1 % of their distance to the scene, static points by
    ~1 %, pixels carry 0.5 px noise; ``n_outliers`` observations are pushed 50 px away; the initial focal is off
    by ``focal_error``.
    """
    rng = np.random.default_rng(seed)
    angles = np.linspace(-arc, arc, n)
    centres = np.stack([4 * np.sin(angles), 0.3 * np.cos(3 * angles), -4 * np.cos(angles)], 1)
    c2w = []
    for c in centres:
        z = -c / np.linalg.norm(c)
        x = np.cross([0.0, 1.0, 0.0], z)
        x /= np.linalg.norm(x)
        c2w.append(pose_matrix(np.stack([x, np.cross(z, x), z], 1), c))
    c2w = np.stack(c2w)
    w2c = invert_rigid(c2w)
    static = rng.uniform(-1.5, 1.5, (n_static, 3))
    dynamic = rng.uniform(-1, 1, (n_dynamic, 3))[None] + 0.3 * np.sin(np.linspace(0, 3, n))[:, None, None]
    points = np.concatenate([np.broadcast_to(static, (n, n_static, 3)), dynamic], 1)
    k = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    pix = cam @ k.T
    tracks = pix[..., :2] / pix[..., 2:] + rng.normal(0, 0.5, (n, points.shape[1], 2))
    visible = rng.random((n, points.shape[1])) < 0.8
    outliers = np.stack(np.unravel_index(rng.choice(n * n_static, n_outliers, replace=False), (n, n_static)), 1)
    tracks[outliers[:, 0], outliers[:, 1]] += 50.0 * np.array([0.6, 0.8])
    visible[outliers[:, 0], outliers[:, 1]] = True

    noisy_c2w = c2w.copy()
    for t in range(1, n):
        noisy_c2w[t, :3, :3] = rodrigues(rng.normal(0, np.deg2rad(1.0) / np.sqrt(3), 3)) @ c2w[t, :3, :3]
        noisy_c2w[t, :3, 3] += rng.normal(0, 0.04 / np.sqrt(3), 3)
    noisy_w2c = invert_rigid(noisy_c2w)
    noisy_static = static + rng.normal(0, 0.02 / np.sqrt(3), static.shape)
    k0 = k.copy()
    k0[[0, 1], [0, 1]] *= 1 + focal_error
    # Initial dynamic points: consistent with the noisy cameras (tracks lifted at the true depth).
    noisy_points = np.concatenate([np.broadcast_to(noisy_static, (n, n_static, 3)), np.zeros((n, n_dynamic, 3))], 1)
    dyn_cam = np.concatenate([(tracks[:, n_static:] - k0[:2, 2]) / k0[0, 0], np.ones((n, n_dynamic, 1))], -1)
    dyn_cam *= cam[:, n_static:, 2:]
    noisy_points[:, n_static:] = np.einsum("nij,npj->npi", noisy_c2w[:, :3, :3], dyn_cam) + noisy_c2w[:, None, :3, 3]
    depth = np.einsum("nj,npj->np", noisy_w2c[:, 2, :3], noisy_points) + noisy_w2c[:, None, 2, 3]
    gamma = np.r_[np.full(n_static, 1e-3), np.full(n_dynamic, 0.1)]
    static_all = np.concatenate([noisy_static, noisy_points[0, n_static:]])
    rec = Reconstruction(noisy_c2w, noisy_w2c, np.broadcast_to(k0, (n, 3, 3)), noisy_points, static_all, gamma,
                         depth, np.zeros((1, points.shape[1], 3)), np.zeros((n, 1)), tracks, visible, {"x": 1})
    return rec, c2w, outliers


def centre_error(c2w_est: np.ndarray, c2w_true: np.ndarray) -> float:
    """RMS camera-centre error after Sim(3) alignment."""
    s, r, t = umeyama_sim3(c2w_est[:, :3, 3], c2w_true[:, :3, 3])
    aligned = s * c2w_est[:, :3, 3] @ r.T + t
    return float(np.sqrt(((aligned - c2w_true[:, :3, 3]) ** 2).sum(1).mean()))


K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])


def look_at(centre, target) -> np.ndarray:
    """Camera-to-world pose at ``centre`` looking at ``target``, image y pointing down (world z up)."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], 1)
    pose[:3, 3] = centre
    return pose


FAST = ["--no-progress", "--batch-size", "2", "--tracks", "40", "--val-scenes", "1", "--val-frames", "24",
        "--val-tracks", "60", "--pretrain-max-steps", "3", "--curriculum-steps", "1", "--max-frames", "24",
        "--val-every", "0", "--ckpt-every", "0", "--threads", "2"]
