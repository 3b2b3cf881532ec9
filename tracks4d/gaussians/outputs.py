"""What the Gaussian refinement writes to ``OUT/refine/``: videos from the input cameras and from novel ones, the
held-out metrics, the Gaussians as a 3DGS PLY, the dense trajectories and a contact sheet."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..io.overlay import save_video
from .optimize import Working, render_frames, render_views
from .scene import GaussianScene

__all__ = ["write_refine_outputs", "write_gaussian_ply", "novel_cameras", "SH_C0"]

SH_C0 = 0.28209479177387814       # degree-0 spherical harmonic: 3DGS stores colour as (rgb − 0.5) / SH_C0
ORBIT_DEG = 20.0                  # the bullet-time orbit sweeps ± this about the scene's up axis
ORBIT_FRAMES = 48
SIDE_STEP = 0.1                   # the fixed novel camera: this × the median depth beside the middle camera


def write_gaussian_ply(path: Path, scene: GaussianScene, t: int) -> Path:
    """The Gaussians at frame t as a standard 3DGS PLY (binary; x y z, normals, f_dc, opacity, scales, rotation)."""
    with torch.no_grad():
        means, quats = scene.at(t)
        fields = {"x": means[:, 0], "y": means[:, 1], "z": means[:, 2]}
        fields.update({f"n{a}": torch.zeros_like(means[:, 0]) for a in "xyz"})
        dc = (scene.colours - 0.5) / SH_C0
        fields.update({f"f_dc_{i}": dc[:, i] for i in range(3)})
        fields["opacity"] = scene.opacity_logits
        fields.update({f"scale_{i}": scene.log_scales[:, i] for i in range(3)})
        q = torch.nn.functional.normalize(quats, dim=-1)
        fields.update({f"rot_{i}": q[:, i] for i in range(4)})
    rows = np.empty(scene.count, dtype=[(name, "<f4") for name in fields])
    for name, value in fields.items():
        rows[name] = value.detach().cpu().numpy()
    header = ("ply\nformat binary_little_endian 1.0\n" f"element vertex {scene.count}\n"
              + "".join(f"property float {name}\n" for name in fields) + "end_header\n")
    path.write_bytes(header.encode() + rows.tobytes())
    return path


def _look_at_pivot(data: Working, t: int) -> np.ndarray:
    """A point straight ahead of camera t at the clip's median track depth (world)."""
    depth = float(np.median(data.depth[data.visible & (data.depth > 0)]))
    c2w = np.linalg.inv(data.world_to_camera[t])
    return c2w[:3, 3] + c2w[:3, 2] * depth


def novel_cameras(data: Working) -> dict[str, np.ndarray]:
    """World-to-camera matrices of the novel views: ``fixed`` (one camera beside the middle frame's, held for the
    whole clip) and ``orbit`` (ORBIT_FRAMES cameras swinging ± ORBIT_DEG around the scene at the middle frame)."""
    mid = data.world_to_camera.shape[0] // 2
    c2w = np.linalg.inv(data.world_to_camera[mid])
    depth = float(np.median(data.depth[data.visible & (data.depth > 0)]))
    fixed = c2w.copy()
    fixed[:3, 3] += c2w[:3, 0] * SIDE_STEP * depth
    pivot = _look_at_pivot(data, mid)
    up = -c2w[:3, 1]
    orbit = []
    for angle in np.radians(ORBIT_DEG) * np.sin(np.linspace(0, 2 * math.pi, ORBIT_FRAMES, endpoint=False)):
        k = np.array([[0, -up[2], up[1]], [up[2], 0, -up[0]], [-up[1], up[0], 0]])
        rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
        pose = np.eye(4)
        pose[:3, :3] = rot @ c2w[:3, :3]
        pose[:3, 3] = pivot + rot @ (c2w[:3, 3] - pivot)
        orbit.append(np.linalg.inv(pose))
    return {"fixed": np.linalg.inv(fixed), "orbit": np.stack(orbit)}


def _contact_sheet(path: Path, data: Working, rendered: np.ndarray, novel: np.ndarray, frames: list[int]) -> Path:
    """Rows of (input, refit from its camera, novel fixed camera) at ``frames``, labelled."""
    import cv2

    rows = []
    for t in frames:
        tiles = [(data.frames[t] * 255).round().astype(np.uint8), rendered[t], novel[t]]
        labels = [f"input {t}" + (" (held out)" if not data.train[t] else ""), "refit", "novel view"]
        for tile, label in zip(tiles, labels):
            cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(np.concatenate(tiles, 1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return path


def write_refine_outputs(out_dir: str | Path, scene: GaussianScene, data: Working, metrics: dict,
                         fps: float = 10.0, backend: str = "auto") -> dict[str, Path]:
    """OUT/refine/: render_input_cameras.mp4, novel_fixed_camera.mp4, novel_orbit.mp4, metrics.json,
    gaussians.ply (at the canonical frame), refined.npz (``means`` (G, 3): static centres in the world, moving ones
    at the canonical frame; ``moving_means`` (N, G_moving, 3): the moving ones' centres in every frame, in the order
    of ``moving``; ``track`` (G,): the track each Gaussian stands for, −1 none), contact_sheet.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = data.frames.shape[0]
    cams = novel_cameras(data)
    mid = n // 2
    k_mid = data.intrinsics[mid]
    to_bytes = lambda images: (images * 255).round().astype(np.uint8)  # noqa: E731
    rendered = to_bytes(render_frames(scene, data, range(n), backend))
    fixed = to_bytes(render_views(scene, data.size, range(n), np.repeat(cams["fixed"][None], n, 0),
                                  np.repeat(k_mid[None], n, 0), backend))
    orbit = to_bytes(render_views(scene, data.size, [mid] * len(cams["orbit"]), cams["orbit"],
                                  np.repeat(k_mid[None], len(cams["orbit"]), 0), backend))
    paths = {
        "render": save_video(rendered, out / "render_input_cameras.mp4", fps),
        "novel_fixed": save_video(fixed, out / "novel_fixed_camera.mp4", fps),
        "novel_orbit": save_video(orbit, out / "novel_orbit.mp4", fps),
        "ply": write_gaussian_ply(out / "gaussians.ply", scene, scene.canonical),
    }
    with torch.no_grad():
        moving = torch.nonzero(scene.moving).squeeze(1)                        # (G_moving,)
        trajectories = np.stack([scene.at(t)[0][moving].cpu().numpy() for t in range(n)])
    np.savez_compressed(out / "refined.npz", means=scene.means.detach().cpu().numpy(),
                        moving=scene.moving.cpu().numpy(), moving_means=trajectories.astype(np.float32),
                        track=scene.track.cpu().numpy(), colours=scene.colours.detach().cpu().numpy(),
                        canonical_frame=scene.canonical,
                        world_to_camera=data.world_to_camera, intrinsics=data.intrinsics,
                        image_size=np.array(data.size))
    paths["trajectories"] = out / "refined.npz"
    sheet_frames = sorted({0, mid - mid % 8, n - 1 - (n - 1) % 8, mid + 1 if mid + 1 < n else mid})
    paths["contact_sheet"] = _contact_sheet(out / "contact_sheet.png", data, rendered, fixed, sheet_frames)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    paths["metrics"] = out / "metrics.json"
    return paths
