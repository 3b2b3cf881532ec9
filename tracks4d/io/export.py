"""What a reconstruction writes for people and tools: points.ply, cameras.json, a PNG summary, a track video and
a COLMAP text model.

Colours follow the motion level γ: purple = static, red = moving (log γ, stretched over its 2nd–98th percentiles).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402

from ..contracts import Reconstruction  # noqa: E402
from .colmap import write_colmap_text  # noqa: E402
from .overlay import draw_tracks, drawn_frames, save_video, track_colours  # noqa: E402

__all__ = ["write_ply", "write_cameras_json", "write_summary_png", "write_trajectories_png", "write_outputs",
           "motion_colours"]


UNRELIABLE_GREY = (150, 150, 150)


def motion_colours(rec: Reconstruction) -> np.ndarray:
    """(P, 3) uint8 RGB per track from its motion level; unreliable tracks grey."""
    colours = track_colours(rec.n_points, np.log(rec.motion_level))
    colours[~rec.shown] = UNRELIABLE_GREY
    return colours


def write_ply(path: str | Path, points: np.ndarray, colours: np.ndarray) -> Path:
    """Binary little-endian PLY of points (M, 3) with colours (M, 3) uint8."""
    points = np.asarray(points, dtype=np.float32)
    colours = np.asarray(colours, dtype=np.uint8)
    rows = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                        ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    for i, name in enumerate("xyz"):
        rows[name] = points[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        rows[name] = colours[:, i]
    header = ("ply\nformat binary_little_endian 1.0\ncomment tracks4d: units are arbitrary (monocular scale)\n"
              f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(rows.tobytes())
    return path


def write_cameras_json(path: str | Path, rec: Reconstruction) -> Path:
    """Per-frame OpenCV cameras: camera_to_world, world_to_camera (4×4, row-major lists), K and fx, fy, cx, cy."""
    frames = [{"frame": t, "camera_to_world": rec.camera_to_world[t].tolist(),
               "world_to_camera": rec.world_to_camera[t].tolist(), "K": rec.intrinsics[t].tolist(),
               "fx": float(rec.intrinsics[t, 0, 0]), "fy": float(rec.intrinsics[t, 1, 1]),
               "cx": float(rec.intrinsics[t, 0, 2]), "cy": float(rec.intrinsics[t, 1, 2])}
              for t in range(rec.n_frames)]
    doc = {"convention": "OpenCV: x right, y down, z forward; pixel centres at integer coordinates",
           "units": "arbitrary (monocular reconstruction: scale is unknown)", "frames": frames}
    path = Path(path)
    path.write_text(json.dumps(doc, indent=1))
    return path


def _frame_or_canvas(rec: Reconstruction, frames: np.ndarray | None, t: int) -> np.ndarray:
    if frames is not None:
        return frames[t]
    w, h = (np.nanmax(rec.tracks[rec.visible], axis=0) + 1).astype(int)
    return np.full((max(h, 2), max(w, 2), 3), 235, np.uint8)


def _save_figure(fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_summary_png(path: str | Path, rec: Reconstruction, frames: np.ndarray | None = None,
                      frame_tracks: np.ndarray | None = None) -> Path:
    """Top view (x–z) of the camera path and the static points, and the first and last frames with their tracks
    coloured by γ: on the video's frames (N, H, W, 3) when given, with ``frame_tracks`` (N, P, 2) the tracks in
    those frames' pixels (default: ``rec.tracks``), else on a blank canvas."""
    frame_tracks = rec.tracks if frame_tracks is None else frame_tracks
    colours = motion_colours(rec)
    fig = plt.figure(figsize=(15, 5))
    ax = fig.add_subplot(1, 3, 1)
    static = rec.static_points
    lo, hi = np.percentile(static[:, [0, 2]], [2, 98], axis=0)
    pad = 0.2 * (hi - lo) + 1e-9
    keep = np.all((static[:, [0, 2]] >= lo - pad) & (static[:, [0, 2]] <= hi + pad), axis=1)
    ax.scatter(static[keep, 0], static[keep, 2], s=3, c=colours[keep] / 255.0)
    centres = rec.camera_to_world[:, :3, 3]
    ax.plot(centres[:, 0], centres[:, 2], "k-", lw=1.5, label="camera path")
    ax.plot(*centres[0, [0, 2]], "go", label="first frame")
    ax.plot(*centres[-1, [0, 2]], "rs", label="last frame")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x")
    ax.set_ylabel("z")
    ax.set_title("top view: camera path, static points by γ", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    for k, t in enumerate((0, rec.n_frames - 1)):
        ax = fig.add_subplot(1, 3, 2 + k)
        img = draw_tracks(_frame_or_canvas(rec, frames, t)[None], frame_tracks[t : t + 1], rec.visible[t : t + 1],
                          colours, trail=0)[0]
        ax.imshow(img)
        ax.set_title(f"frame {t}: tracks by γ (purple static, red moving, grey unreliable)", fontsize=10)
        ax.axis("off")
    return _save_figure(fig, path)


def write_trajectories_png(path: str | Path, rec: Reconstruction, frames: np.ndarray | None = None,
                           frame_tracks: np.ndarray | None = None, max_tracks: int = 60) -> Path:
    """The moving points' 3D trajectories (up to ``max_tracks`` of the moving tracks, one colour per track, fading
    from first to last frame) seen from above and from the side, in the first camera's frame (x right, y down,
    z forward), over the static points (grey) and the camera path; and the middle frame with the same tracks."""
    frame_tracks = rec.tracks if frame_tracks is None else frame_tracks
    state = rec.motion_state if rec.motion_state is not None else \
        np.where(rec.motion_level < np.median(rec.motion_level), 0, 1)
    moving = np.flatnonzero(state == 1)                  # unreliable tracks are left out
    rng = np.random.default_rng(0)
    shown = np.sort(rng.choice(moving, min(max_tracks, moving.size), replace=False)) if moving.size else moving
    w2c0 = rec.world_to_camera[0]
    to_first = lambda x: x @ w2c0[:3, :3].T + w2c0[:3, 3]  # noqa: E731
    static = to_first(rec.static_points[state == 0])
    centres = to_first(rec.camera_to_world[:, :3, 3])
    colours = plt.cm.tab20(np.arange(len(shown)) % 20)
    fig = plt.figure(figsize=(15, 5))
    for k, (a, b, title) in enumerate(((0, 2, "from above (x, z)"), (2, 1, "from the side (z, y)"))):
        ax = fig.add_subplot(1, 3, 1 + k)
        if len(static):
            lo, hi = np.nanpercentile(static[:, [a, b]], [2, 98], axis=0)
            keep = np.all((static[:, [a, b]] >= lo) & (static[:, [a, b]] <= hi), axis=1)
            ax.scatter(static[keep, a], static[keep, b], s=2, c="0.75", label="static points")
        ax.plot(centres[:, a], centres[:, b], "k-", lw=1.5, label="camera path")
        for colour, p in zip(colours, shown):
            traj = to_first(rec.points[:, p])
            seen = rec.visible[:, p]
            ax.plot(traj[:, a], traj[:, b], "-", color=colour, lw=0.8, alpha=0.8)
            ax.scatter(traj[seen, a], traj[seen, b], s=3, color=colour)
        if b == 1:
            ax.invert_yaxis()
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel("xyz"[a])
        ax.set_ylabel("xyz"[b])
        ax.set_title(f"moving-point trajectories {title}", fontsize=10)
        ax.legend(loc="best", fontsize=8)
    ax = fig.add_subplot(1, 3, 3)
    t = rec.n_frames // 2
    img = _frame_or_canvas(rec, frames, t)
    ax.imshow(img)
    for colour, p in zip(colours, shown):
        seen = rec.visible[:, p]
        ax.plot(frame_tracks[seen, p, 0], frame_tracks[seen, p, 1], "-", color=colour, lw=0.8)
    ax.set_xlim(0, img.shape[1])
    ax.set_ylim(img.shape[0], 0)
    ax.set_title(f"frame {t}: the same tracks in the image", fontsize=10)
    ax.axis("off")
    return _save_figure(fig, path)


def write_outputs(rec: Reconstruction, out_dir: str | Path, frames: np.ndarray | None = None,
                  frame_tracks: np.ndarray | None = None, fps: float = 10.0) -> dict[str, Path]:
    """reconstruction.npz, points.ply (every visible point of every frame, coloured by γ), cameras.json,
    summary.png, trajectories.png (the moving points in 3D), tracks.mp4 (tracks coloured by γ on the frames, or on a blank canvas) and colmap/ (a COLMAP text
    model, :func:`~tracks4d.io.colmap.write_colmap_text`); ``frame_tracks`` (N, P, 2) are the tracks in the frames'
    pixels when those differ from the input's."""
    image_size = (frames.shape[2], frames.shape[1]) if frames is not None and frame_tracks is None else None
    frame_tracks = rec.tracks if frame_tracks is None else frame_tracks
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    colours = motion_colours(rec)
    rec.save(out / "reconstruction.npz")
    paths = {"reconstruction": out / "reconstruction.npz"}
    paths["points"] = write_ply(out / "points.ply", rec.points[rec.visible],
                                np.broadcast_to(colours, rec.points.shape)[rec.visible])
    paths["cameras"] = write_cameras_json(out / "cameras.json", rec)
    paths["summary"] = write_summary_png(out / "summary.png", rec, frames, frame_tracks)
    paths["trajectories"] = write_trajectories_png(out / "trajectories.png", rec, frames, frame_tracks)
    blank = _frame_or_canvas(rec, None, 0)
    canvas = frames if frames is not None else np.broadcast_to(blank, (rec.n_frames, *blank.shape))
    paths["tracks_video"] = save_video(drawn_frames(canvas, frame_tracks, rec.visible, colours), out / "tracks.mp4",
                                       fps)
    paths["colmap"] = write_colmap_text(rec, out / "colmap", image_size)
    return paths
