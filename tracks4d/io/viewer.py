"""Interactive 3D viewer of a :class:`Reconstruction` in the browser, built on viser (optional dependency).

Shows the per-frame points coloured by motion level γ, the static points, every camera as a frustum and the
camera path, with a time slider, play/pause, a point-size slider and a static-points toggle; and, where the folder
holds a Gaussian refinement (``refine/refined.npz``), its dense scene: every Gaussian's centre in its colour, the
moving ones where they are in the current frame (a toggle).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..contracts import Reconstruction
from .export import motion_colours

__all__ = ["ViewerScene", "DenseScene", "build_scene", "serve", "resolve_reconstruction", "load_dense"]

DENSE_MAX_STATIC = 100_000  # static Gaussians shown at most (a random subset beyond)

_CURRENT = (230, 40, 40)  # colour of the current frame's frustum
_OTHER = (120, 120, 120)  # colour of every other frustum
_PATH = (40, 90, 220)  # colour of the camera path


def _viser():
    try:
        import viser
    except ImportError:
        raise ImportError("the viewer needs viser: pip install viser") from None
    return viser


@dataclass
class DenseScene:
    """A Gaussian refinement's centres: static (S, 3) with colours (S, 3) uint8, moving (N, M, 3) per frame with
    colours (M, 3) uint8 (:func:`load_dense`)."""

    static: np.ndarray
    static_colours: np.ndarray
    moving: np.ndarray
    moving_colours: np.ndarray


def load_dense(path: str | Path, n_frames: int) -> DenseScene:
    """``refined.npz`` (written by :func:`tracks4d.gaussians.write_refine_outputs`) → its centres and colours."""
    with np.load(path) as z:
        moving, means, colours = z["moving"].astype(bool), z["means"], z["colours"]
        trajectories = z["moving_means"]
    if trajectories.shape[0] != n_frames:
        raise ValueError(f"{path}: {trajectories.shape[0]} frames, the reconstruction has {n_frames}")
    rgb = (np.clip(colours, 0, 1) * 255).round().astype(np.uint8)
    static = np.flatnonzero(~moving)
    if static.size > DENSE_MAX_STATIC:
        static = np.sort(np.random.default_rng(0).choice(static, DENSE_MAX_STATIC, replace=False))
    return DenseScene(means[static].astype(np.float32), rgb[static], trajectories.astype(np.float32), rgb[moving])


@dataclass
class ViewerScene:
    """Handles of what :func:`build_scene` added; ``show_frame(t)`` is what the time slider calls."""

    rec: Reconstruction
    colours: np.ndarray  # (P, 3) uint8
    cloud: object  # PointCloudHandle of the current frame's visible points
    static: object  # PointCloudHandle of rec.static_points
    frustums: list  # N CameraFrustumHandle
    path: object | None  # LineSegmentsHandle of the camera path (None for a single frame)
    slider: object
    play: object
    fps: object
    point_size: object
    show_static: object
    dense: tuple | None = None  # (static, moving) PointCloudHandles of a refinement, and its DenseScene
    show_dense: object | None = None

    def show_frame(self, t: int) -> None:
        """Show frame t's visible points (and refined moving Gaussians) and highlight its frustum."""
        points, colours = frame_points(self.rec, self.colours, t)
        self.cloud.points = points
        self.cloud.colors = colours
        if self.dense is not None:
            self.dense[1].points = np.ascontiguousarray(self.dense[2].moving[t])
        for i, frustum in enumerate(self.frustums):
            frustum.color = _CURRENT if i == t else _OTHER


def frame_points(rec: Reconstruction, colours: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame t's visible points (M, 3) float32 and their colours (M, 3) uint8."""
    vis = rec.visible[t]
    return np.ascontiguousarray(rec.points[t][vis], np.float32), np.ascontiguousarray(colours[vis])


def scene_extent(rec: Reconstruction) -> float:
    """A robust size of the scene: the 5–95 % spread of static points and camera centres (> 0)."""
    xyz = np.concatenate([rec.static_points, rec.camera_to_world[:, :3, 3]])
    lo, hi = np.percentile(xyz, [5, 95], axis=0)
    return float(max(np.linalg.norm(hi - lo), 1e-6))


def frustum_fov_aspect(k: np.ndarray) -> tuple[float, float]:
    """Vertical fov (radians) and aspect W/H from a (3, 3) K, taking the image as 2·cx × 2·cy pixels."""
    fy, cx, cy = k[1, 1], k[0, 2], k[1, 2]
    if cx <= 0 or cy <= 0:  # principal point unknown: a square 60° camera
        return float(np.deg2rad(60.0)), 1.0
    return float(2.0 * np.arctan2(cy, fy)), float(cx / cy)


def _add_cameras(server, rec: Reconstruction, scale: float) -> tuple[list, object | None]:
    """One frustum per frame (OpenCV, as viser's frustums) and the camera path as line segments."""
    so3 = _viser().transforms.SO3
    frustums = []
    for t in range(rec.n_frames):
        fov, aspect = frustum_fov_aspect(rec.intrinsics[t])
        c2w = rec.camera_to_world[t]
        frustums.append(server.scene.add_camera_frustum(
            f"/cameras/{t:05d}", fov=fov, aspect=aspect, scale=scale, thickness=0.05 * scale, color=_OTHER,
            wxyz=so3.from_matrix(c2w[:3, :3]).wxyz, position=c2w[:3, 3]))
    centres = rec.camera_to_world[:, :3, 3].astype(np.float32)
    path = None
    if rec.n_frames > 1:
        segments = np.stack([centres[:-1], centres[1:]], axis=1)  # (N-1, 2, 3)
        path = server.scene.add_line_segments("/camera_path", segments, _PATH, thickness=0.03 * scale)
    return frustums, path


def _start_playback(scene: ViewerScene) -> None:
    """Advance the slider at ``fps`` frames per second in a daemon thread while ``play`` is ticked."""
    def loop() -> None:
        while scene.play.value:
            time.sleep(1.0 / max(float(scene.fps.value), 0.1))
            if scene.play.value:
                scene.slider.value = (int(scene.slider.value) + 1) % scene.rec.n_frames

    threading.Thread(target=loop, name="tracks4d-viewer-play", daemon=True).start()


def build_scene(server, rec: Reconstruction, frame: int = 0, dense: DenseScene | None = None) -> ViewerScene:
    """Add the reconstruction (and a refinement's ``dense`` scene) and its GUI controls to a ``viser.ViserServer``;
    show ``frame`` first."""
    if not 0 <= frame < rec.n_frames:
        raise ValueError(f"frame {frame} is outside [0, {rec.n_frames - 1}]")
    extent = scene_extent(rec)
    size = 0.005 * extent
    colours = motion_colours(rec)
    server.scene.set_up_direction("-y")  # OpenCV: y points down
    points, point_colours = frame_points(rec, colours, frame)
    cloud = server.scene.add_point_cloud("/points", points, point_colours, point_size=size, precision="float32")
    static = server.scene.add_point_cloud("/static_points", rec.static_points.astype(np.float32), colours,
                                          point_size=0.5 * size, precision="float32")
    frustums, path = _add_cameras(server, rec, scale=0.03 * extent)
    gui = server.gui
    scene = ViewerScene(
        rec, colours, cloud, static, frustums, path,
        slider=gui.add_slider("frame", min=0, max=max(rec.n_frames - 1, 1), step=1, initial_value=frame,
                              disabled=rec.n_frames == 1),
        play=gui.add_checkbox("play", False),
        fps=gui.add_number("fps", 10.0, min=0.1, max=120.0, step=0.5),
        point_size=gui.add_slider("point size", min=size / 20, max=size * 20, step=size / 20, initial_value=size),
        show_static=gui.add_checkbox("static points (all frames)", True),
    )
    if dense is not None:
        handles = (server.scene.add_point_cloud("/dense/static", dense.static, dense.static_colours,
                                                point_size=0.5 * size, precision="float32"),
                   server.scene.add_point_cloud("/dense/moving", dense.moving[frame], dense.moving_colours,
                                                point_size=0.5 * size, precision="float32"))
        scene.dense = (*handles, dense)
        scene.show_dense = gui.add_checkbox("refined Gaussians (dense)", True)

        def toggle(_) -> None:
            for handle in handles:
                handle.visible = bool(scene.show_dense.value)

        scene.show_dense.on_update(toggle)
    scene.show_frame(frame)
    scene.slider.on_update(lambda _: scene.show_frame(min(int(scene.slider.value), rec.n_frames - 1)))
    scene.play.on_update(lambda _: _start_playback(scene) if scene.play.value else None)

    def set_size(_) -> None:
        cloud.point_size = float(scene.point_size.value)
        static.point_size = 0.5 * float(scene.point_size.value)

    scene.point_size.on_update(set_size)
    scene.show_static.on_update(lambda _: setattr(static, "visible", bool(scene.show_static.value)))
    return scene


def resolve_reconstruction(path: str | Path) -> Path:
    """``path`` itself when it is a file, ``path/reconstruction.npz`` for a folder; ValueError otherwise."""
    p = Path(path)
    if p.is_dir():
        p = p / "reconstruction.npz"
    if not p.is_file():
        raise ValueError(f"{path}: not a reconstruction .npz nor a folder holding reconstruction.npz")
    return p


def _local_server(host: str, port: int):
    """A ``viser.ViserServer`` on host:port only: its public share tunnel is hidden and refused."""
    server = _viser().ViserServer(host=host, port=port, verbose=False)
    server.gui.configure_theme(show_share_button=False)

    def refuse_share_url(*_args, **_kwargs) -> None:
        print("tracks4d viewer: share URLs are disabled (the viewer serves only the address it was given)")

    server.request_share_url = refuse_share_url  # a browser can still send the request; never open a tunnel
    return server


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8080, block: bool = True):
    """Load a reconstruction (file or output folder), serve the viewer on host:port and print its URL.

    With ``block`` wait until Ctrl-C, then stop; else return the running ``viser.ViserServer`` (call ``.stop()``).
    viser moves to the next free port when ``port`` is taken; the printed URL is the real one.
    """
    file = resolve_reconstruction(path)
    rec = Reconstruction.load(file)
    refined = file.parent / "refine" / "refined.npz"
    dense = load_dense(refined, rec.n_frames) if refined.is_file() else None
    server = _local_server(host, port)
    try:
        build_scene(server, rec, dense=dense)
    except BaseException:
        server.stop()
        raise
    print(f"tracks4d viewer: http://{server.get_host()}:{server.get_port()}/ "
          f"({rec.n_frames} frames, {rec.n_points} points"
          + (f", {len(dense.static) + dense.moving.shape[1]} refined Gaussians" if dense is not None else "") + ")"
          + ("; Ctrl-C to stop" if block else ""), flush=True)
    if block:
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            server.stop()
    return server
