"""The main job: video, frame folder or track file → :class:`Reconstruction` (and the frames, for pictures).

Stages: decode → track → per window of ≤ 50 frames: [fine-tune] → network → stitch → [bundle adjustment; for a
long clip the better of two ways, :func:`_adjust_long`]. Timings of every stage go to ``meta["timings"]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .network.checkpoint import default_checkpoint
from .contracts import Reconstruction, TrackSet
from .network.finetune import finetune
from .geometry.transforms import transform_points
from .network.inference import guess_intrinsics, run_network
from .network.onnx_backend import load_backend
from .network.stitch import split_windows, stitch, window_spans
from .tracking.lk import TrackerConfig, track_clip
from .io.video import Clip, read_video

__all__ = ["ReconstructOptions", "ReconstructResult", "run_pipeline", "reconstruct", "intrinsics_from_options"]


CAMERA_INITS = ("auto", "network")
MIN_INLIER_SHARE = 0.25
"""BA from the network's cameras that keeps fewer of the visible static observations than this is not trusted."""


@dataclass
class ReconstructOptions:
    """checkpoint: model file (None: the shipped one for ``device``, :func:`default_checkpoint`) · device · fx, fy, cx, cy or fov_deg: intrinsics in input pixels (None: unknown) ·
    tracker / tracker_checkpoint / grid / query_every: tracking · stride, max_frames, long_side: decoding ·
    bundle_adjust (a long clip: :func:`_adjust_long`) · ba_gamma: static points for BA have γ below this (the paper: 0.008 pets, 0.005 out-of-domain;
    None: the 40th percentile of this clip's γ) · camera_init: "auto" (BA starts from the network's cameras; when it
    cannot — under ``MIN_INLIER_SHARE`` of the static observations reproject within its gate, or its cameras barely
    move while the tracks show parallax —
    from cameras the tracks give, :mod:`tracks4d.geometry.track_sfm`)
    or "network" (never the fallback) · finetune_steps · window / overlap: long-video windows (the network
    sees ≤ 50 frames) · backend: "torch", or "onnx" (ONNX Runtime, :mod:`tracks4d.network.onnx_backend`; checkpoint may be
    a .onnx file; no fine-tuning)."""

    checkpoint: str | Path | None = None
    device: str = "cpu"
    backend: str = "torch"
    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    fov_deg: float | None = None
    tracker: str = "lk"
    tracker_checkpoint: str | Path | None = None
    grid: int = 15
    query_every: int = 20
    stride: int = 1
    max_frames: int | None = None
    long_side: int | None = 640
    bundle_adjust: bool = False
    ba_gamma: float | None = 0.008
    camera_init: str = "auto"
    finetune_steps: int = 0
    window: int = 50
    overlap: int = 10
    progress: bool = True


@dataclass
class ReconstructResult:
    """reconstruction · clip: decoded frames (None for a track-file input) · timings in seconds per stage."""

    reconstruction: Reconstruction
    clip: Clip | None
    timings: dict = field(default_factory=dict)


def intrinsics_from_options(opts: ReconstructOptions, image_size: tuple[int, int] | None) -> np.ndarray | None:
    """(3, 3) pixel K from --fx/--fy/--cx/--cy or --fov-deg (horizontal); None when the user gave none."""
    if opts.fx is None and opts.fov_deg is None:
        if any(v is not None for v in (opts.fy, opts.cx, opts.cy)):
            raise ValueError("give --fx (with optional --fy, --cx, --cy) or --fov-deg")
        return None
    if image_size is None and (opts.cx is None or opts.cy is None or opts.fx is None):
        raise ValueError("the input has no image size: give --fx and --cx --cy")
    w, h = image_size if image_size is not None else (0, 0)
    if opts.fov_deg is not None:
        if not 1.0 < opts.fov_deg < 179.0:
            raise ValueError(f"--fov-deg must lie in (1, 179), got {opts.fov_deg}")
        fx = 0.5 * w / np.tan(np.radians(opts.fov_deg) / 2)
    else:
        fx = opts.fx
    fy = opts.fy if opts.fy is not None else fx
    if fx <= 0 or fy <= 0:
        raise ValueError("focal lengths must be positive")
    cx = opts.cx if opts.cx is not None else (w - 1) / 2
    cy = opts.cy if opts.cy is not None else (h - 1) / 2
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def _from_track_cameras(rec: Reconstruction, known: bool) -> Reconstruction | None:
    """BA from cameras the tracks give (:mod:`tracks4d.geometry.track_sfm`) when it cannot start from the network's: the
    result even when that BA is rejected (the track cameras then stand), None when the tracks give no cameras or too
    few static points. ``meta['camera_init']`` says so."""
    from .geometry.bundle_adjust import bundle_adjust
    from .geometry.track_sfm import with_track_cameras

    found = with_track_cameras(rec)
    if found is None:
        return None
    alternative, static = found
    adjusted, report = bundle_adjust(alternative, gamma_threshold=np.inf, static_mask=static, refine_focal=not known)
    return None if report.too_little_structure else adjusted


def _adjust(rec: Reconstruction, opts: ReconstructOptions, known: bool) -> Reconstruction:
    """Bundle adjustment of one window's network output: from its cameras, or from the track cameras when those
    cannot seed it (``camera_init="auto"``). ``meta`` records the γ threshold and the report."""
    from .geometry.bundle_adjust import bundle_adjust

    threshold = opts.ba_gamma if opts.ba_gamma is not None else float(np.quantile(rec.motion_level, 0.4))
    adjusted, report = bundle_adjust(rec, gamma_threshold=threshold, refine_focal=not known)
    # The network's cameras cannot seed BA when few static observations reproject within the gate, or when
    # they barely move although the tracks show parallax (not rotation-only): then start from the track cameras.
    stuck = not report.rotation_only and (report.skipped or report.fixed_structure
                                          or report.n_inliers < MIN_INLIER_SHARE * report.n_observations)
    if stuck and opts.camera_init == "auto":
        adjusted = _from_track_cameras(rec, known) or adjusted
    return replace(adjusted, meta={**adjusted.meta, "ba_gamma_threshold": threshold})


def _adjust_stitched(rec: Reconstruction, known: bool) -> Reconstruction:
    """Bundle adjustment of a stitched clip from its (already adjusted) windows' cameras, on the tracks that
    triangulate as static points under them, starting from those triangulations rather than the windows' averaged
    static points (or rotation-only cameras when the track homographies say so); the input when that finds too little
    or is rejected."""
    from .geometry.bundle_adjust import bundle_adjust
    from .geometry.track_sfm import triangulated_static

    tri, static = triangulated_static(rec)
    static_points, points, depth = rec.static_points.copy(), rec.points.copy(), rec.depth.copy()
    static_points[static] = points[:, static] = tri[static]
    depth[:, static] = transform_points(rec.world_to_camera, tri[static])[..., 2]
    start = replace(rec, static_points=static_points, points=points, depth=depth)
    adjusted, report = bundle_adjust(start, gamma_threshold=np.inf, static_mask=static, refine_focal=not known)
    if report.skipped and not report.rotation_only:
        return replace(rec, meta={**rec.meta, "stitched_bundle_adjustment": report.to_dict()})
    return adjusted


def _adjust_long(tracks: TrackSet, windows: list, stitched: Reconstruction, opts: ReconstructOptions,
                 known: bool) -> Reconstruction:
    """Bundle adjustment of a long clip, two ways, keeping the one under whose cameras more tracks triangulate as
    static points (:func:`~tracks4d.geometry.track_sfm.static_tracks`; ties: the first): each window adjusted, stitched, then
    the clip adjusted (:func:`_adjust_stitched`; robust to one window's poor network cameras), or the stitched
    network output adjusted as one (:func:`_adjust` with its track cameras over the whole clip; robust when windows
    alone see too little parallax, as in pans) and then, like the first, once more from the tracks that triangulate
    as static under its cameras. ``meta["long_clip_bundle_adjustment"]`` says which and why."""
    from .geometry.track_sfm import static_tracks

    adjusted = [(span, idx, _adjust(rec, opts, known)) for span, idx, rec in windows]
    candidates = {"windows_first": _adjust_stitched(stitch(tracks, adjusted), known),
                  "whole_clip": _adjust_stitched(_adjust(stitched, opts, known), known)}
    counts = {name: int(static_tracks(rec).sum()) for name, rec in candidates.items()}
    chosen = max(counts, key=counts.get)
    rec = candidates[chosen]
    return replace(rec, meta={**rec.meta, "long_clip_bundle_adjustment": {"chosen": chosen,
                                                                          "static_tracks": counts}})


def reconstruct(source: str | Path | TrackSet, checkpoint: str | Path | None = None, **options) -> Reconstruction:
    """``tracks4d.reconstruct("clip.mp4", bundle_adjust=True)``: the reconstruction of a video, frame folder, track
    file or TrackSet with the shipped checkpoint (or ``checkpoint``); ``options`` are :class:`ReconstructOptions`
    fields."""
    return run_pipeline(source, ReconstructOptions(checkpoint=checkpoint, **options)).reconstruction


def run_pipeline(source: str | Path | TrackSet, opts: ReconstructOptions, network: tuple | None = None,
                 on_progress: Callable[[float, str], None] | None = None) -> ReconstructResult:
    """Run the whole pipeline on a video file, a frame folder, a track ``.npz`` or a :class:`TrackSet`.

    network: an already loaded ``(network, payload)`` from :func:`~tracks4d.network.onnx_backend.load_backend` (a server
    loads it once), else it is loaded from ``opts.checkpoint`` / ``opts.backend``. on_progress(fraction, stage) is
    told as stages finish (decoded, tracked, each window, bundle adjustment)."""
    progress = on_progress or (lambda fraction, stage: None)
    if opts.camera_init not in CAMERA_INITS:
        raise ValueError(f"camera_init must be one of {CAMERA_INITS}, got {opts.camera_init!r}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    checkpoint = opts.checkpoint if opts.checkpoint is not None else default_checkpoint(opts.device)
    if opts.backend == "onnx" and opts.finetune_steps > 0:
        raise ValueError("fine-tuning needs the torch backend (--backend torch)")
    model, payload = network if network is not None else load_backend(checkpoint, opts.backend, opts.device)
    timings["load_model_s"] = time.perf_counter() - start
    clip = None
    if isinstance(source, TrackSet):
        tracks = source
    elif Path(source).is_file() and Path(source).suffix.lower() == ".npz":
        tracks = TrackSet.load(source)
    else:
        t = time.perf_counter()
        clip = read_video(source, stride=opts.stride, max_frames=opts.max_frames, long_side=opts.long_side)
        timings["decode_s"] = time.perf_counter() - t
        progress(0.05, "decoded")
        t = time.perf_counter()
        tracks = track_clip(clip, TrackerConfig(grid=opts.grid, query_every=opts.query_every), tracker=opts.tracker,
                            checkpoint=opts.tracker_checkpoint, device=opts.device, progress=opts.progress)
        timings["tracking_s"] = time.perf_counter() - t
        progress(0.3, "tracked")
    size = tuple(int(v) for v in tracks.image_size) if tracks.image_size is not None else None
    given = intrinsics_from_options(opts, size)
    known = given is not None or tracks.intrinsics is not None
    k = given if given is not None else (tracks.intrinsics if tracks.intrinsics is not None
                                         else guess_intrinsics(tracks))
    tracks = TrackSet(tracks.tracks, tracks.visible, k, tracks.image_size, tracks.query_frame, tracks.ground_truth)
    net_s, tune_s, reports = [0.0], [0.0], []
    long = tracks.n_frames > opts.window
    n_windows, done_windows = len(window_spans(tracks.n_frames, opts.window, opts.overlap)), [0]

    def run_window(sub: TrackSet) -> Reconstruction:
        window_model = model
        if opts.finetune_steps > 0:
            t0 = time.perf_counter()
            window_model, report = finetune(model, sub, opts.finetune_steps, device=opts.device,
                                            progress=opts.progress)
            tune_s[0] += time.perf_counter() - t0
            reports.append(report.to_dict())
        t0 = time.perf_counter()
        rec = run_network(window_model, sub, opts.device)
        net_s[0] += time.perf_counter() - t0
        done_windows[0] += 1
        progress(0.3 + 0.4 * done_windows[0] / n_windows, f"window {done_windows[0]}/{n_windows}")
        return rec

    t = time.perf_counter()
    windows = []
    if long:
        windows = [(span, idx, run_window(sub)) for span, idx, sub in split_windows(tracks, opts.window, opts.overlap)]
        rec = stitch(tracks, windows)
    else:
        rec = run_window(tracks)
    timings["network_s"] = net_s[0]
    if opts.finetune_steps > 0:
        timings["finetune_s"] = tune_s[0]
    timings["windows_s"] = time.perf_counter() - t
    if opts.bundle_adjust:
        t = time.perf_counter()
        rec = _adjust_long(tracks, windows, rec, opts, known) if long else _adjust(rec, opts, known)
        timings["bundle_adjustment_s"] = time.perf_counter() - t
        progress(0.95, "bundle adjustment")
    meta = dict(rec.meta)
    timings["total_s"] = time.perf_counter() - start
    meta.update({
        "timings": timings, "checkpoint": str(checkpoint), "checkpoint_step": int(payload.get("step", 0)),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "intrinsics_known": bool(known), "finetune": reports, "torch": torch.__version__,
        "units": "arbitrary (monocular scale)",
    })
    rec = replace(rec, meta=meta)
    return ReconstructResult(rec, clip, timings)
