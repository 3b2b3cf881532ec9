"""The main job: video, frame folder or track file → :class:`Reconstruction` (and the frames, for pictures).

A straight line of stages, each a function with typed inputs and outputs, each decision made once in its stage and
recorded with the stage's time in ``meta["stages"]``:

    decode → track → network (per ≤ 50-frame window, stitched: γ, points and a camera guess)
           → cameras (:func:`~tracks4d.geometry.cameras.solve_cameras`: motion model, seed, one bundle adjustment)
           → motion levels (:func:`~tracks4d.geometry.motion.motion_levels`: static-fit residuals, fused with γ)
           → consistency (:func:`~tracks4d.geometry.consistency.static_consistency`: do distant windows agree?)
           → ground contact (:func:`~tracks4d.geometry.ground.ground_contact`: plane, objects, contact depth)
           → moving depth (:func:`~tracks4d.network.conditioned.moving_depth`: the geometry-conditioned network)
           → points (:func:`~tracks4d.geometry.points.place_points`: static triangulated, moving on their rays)
           → refinement (:func:`~tracks4d.geometry.refine.refine_moving`: moving trajectories, cameras fixed)
"""

from __future__ import annotations

import functools
import importlib.util
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .contracts import Cameras, Reconstruction, TrackSet
from .devices import resolve_device
from .geometry.cameras import CAMERA_INITS, CameraSolution, solve_cameras
from .geometry.consistency import Consistency, static_consistency
from .geometry.ground import GroundContact, ground_contact
from .geometry.motion import MotionLevels, motion_levels, motion_states, static_fit
from .geometry.plausible import between_sightings, flying_entries, on_their_object, plausible_trajectories
from .geometry.points import PlacedPoints, on_rays, place_points
from .geometry.refine import Refined, refine_moving
from .geometry.transforms import transform_points
from .memory import MemoryPlan, give_back_freed, plan_stride
from .io.video import Clip, probe_video, read_video
from .network.checkpoint import default_checkpoint, default_moving_checkpoint
from .network.conditioned import ClipGeometry, MovingDepth, load_conditioned, moving_depth
from .network.finetune import finetune
from .network.inference import PRECISIONS, guess_intrinsics, native_bf16, run_network
from .network.backends import load_backend
from .network.stitch import reconstruct_long, window_spans
from .tracking import TrackerConfig, track_clip
from .tracking.revisits import Revisit, find_revisits, seen_again

__all__ = ["ReconstructOptions", "ReconstructResult", "run_pipeline", "reconstruct", "intrinsics_from_options",
           "resolve_backend", "resolve_precision", "moving_network"]


@dataclass
class ReconstructOptions:
    """checkpoint: model file (None: the shipped one for ``device``, :func:`default_checkpoint`) · device · fx, fy, cx, cy or fov_deg: intrinsics in input pixels (None: unknown) ·
    tracker / tracker_checkpoint / grid / query_every: tracking · stride, max_frames, long_side: decoding ·
    max_memory_gb: read every k-th frame of a video whose estimated peak memory would pass this
    (:mod:`tracks4d.memory`; said in ``meta["memory"]`` and the verdict; None: no limit) ·
    bundle_adjust: one bundle adjustment of the clip's cameras and static points · ba_gamma: static tracks have γ
    below this (None: automatic, :data:`~tracks4d.geometry.motion.STATIC_SIGMAS` × the clip's noise level) ·
    camera_init: "auto" (the network's cameras or the tracks', whichever more tracks fit as static points) or
    "network" (:mod:`tracks4d.geometry.cameras`) · finetune_steps · window / overlap / window_tracks: long-video windows (the
    network sees ≤ 50 frames and, in a clip longer than that, ≤ ``window_tracks`` tracks per window: those the
    window sees longest) · backend: "auto" (ONNX Runtime on the CPU when it is installed and nothing is fine-tuned —
    1.6–2× faster than eager torch at the same outputs —, else torch), "torch", or "onnx" (ONNX Runtime,
    :mod:`tracks4d.network.onnx_backend`; checkpoint may be
    a .onnx file; no fine-tuning) · precision: "auto" (bf16 autocast for the torch backend where the device
    multiplies bf16 natively, :func:`~tracks4d.network.inference.native_bf16`; else fp32), "fp32" or "bf16" ·
    moving_checkpoint: the geometry-conditioned network that places moving points (None: the shipped one,
    :func:`~tracks4d.network.checkpoint.default_moving_checkpoint`; "none": the first network's points instead) ·
    refine_moving: the per-clip refinement of moving trajectories."""

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
    max_memory_gb: float | None = None
    bundle_adjust: bool = False
    ba_gamma: float | None = None
    camera_init: str = "auto"
    finetune_steps: int = 0
    window: int = 50
    overlap: int = 10
    window_tracks: int = 800
    precision: str = "auto"
    moving_checkpoint: str | Path | None = None
    refine_moving: bool = True
    progress: bool = True


@dataclass
class ReconstructResult:
    """reconstruction · clip: the input video, its frames released (``clip.decoded()`` reads them; None for a
    track-file input) · timings in seconds per stage."""

    reconstruction: Reconstruction
    clip: Clip | None
    timings: dict = field(default_factory=dict)


def intrinsics_from_options(opts: ReconstructOptions, image_size: tuple[int, int] | None) -> np.ndarray | None:
    """(3, 3) pixel K from fx/fy/cx/cy or fov_deg (horizontal); None when none is given. Errors name the options as
    both the command line (``--fx``) and the service (``fx``) know them."""
    if opts.fx is None and opts.fov_deg is None:
        if any(v is not None for v in (opts.fy, opts.cx, opts.cy)):
            raise ValueError("give fx (with optional fy, cx, cy) or fov_deg")
        return None
    if image_size is None and (opts.cx is None or opts.cy is None or opts.fx is None):
        raise ValueError("the input has no image size: give fx, cx and cy")
    w, h = image_size if image_size is not None else (0, 0)
    if opts.fov_deg is not None:
        if not 1.0 < opts.fov_deg < 179.0:
            raise ValueError(f"fov_deg must lie in (1, 179), got {opts.fov_deg}")
        fx = 0.5 * w / np.tan(np.radians(opts.fov_deg) / 2)
    else:
        fx = opts.fx
    fy = opts.fy if opts.fy is not None else fx
    if not (np.isfinite(fx) and np.isfinite(fy) and fx > 0 and fy > 0):
        raise ValueError(f"focal lengths must be positive and finite, got fx {fx:g}, fy {fy:g}")
    width = w if w else 2 * (opts.cx or 0) + 1
    for name, f in (("fx", fx), ("fy", fy)):  # a field of view outside (1°, 179°) is no camera (and NaN downstream)
        if width > 1 and not 0.5 * width / np.tan(np.radians(89.5)) <= f <= 0.5 * width / np.tan(np.radians(0.5)):
            fov = float(np.degrees(2 * np.arctan(0.5 * width / f)))
            raise ValueError(f"{name} {f:g} px gives a {fov:.3g}° field of view across {width:g} px; it must lie "
                             f"between 1° and 179°")
    cx = opts.cx if opts.cx is not None else (w - 1) / 2
    cy = opts.cy if opts.cy is not None else (h - 1) / 2
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def reconstruct(source: str | Path | TrackSet, checkpoint: str | Path | None = None, **options) -> Reconstruction:
    """``tracks4d.reconstruct("clip.mp4", bundle_adjust=True)``: the reconstruction of a video, frame folder, track
    file or TrackSet with the shipped checkpoint (or ``checkpoint``); ``options`` are :class:`ReconstructOptions`
    fields."""
    return run_pipeline(source, ReconstructOptions(checkpoint=checkpoint, **options)).reconstruction


def resolve_backend(opts: ReconstructOptions) -> str:
    """The network backend ``opts.backend`` names; "auto": "onnx" for an ``.onnx`` checkpoint, or on the CPU when
    onnxruntime is installed and nothing is fine-tuned; else "torch". ValueError when fine-tuning is asked of an ONNX
    model (only the torch model has weights to tune)."""
    onnx_file = opts.checkpoint is not None and Path(opts.checkpoint).suffix == ".onnx"
    if opts.finetune_steps > 0 and (onnx_file or opts.backend == "onnx"):
        raise ValueError("fine-tuning needs the torch model: give the .pt checkpoint (and backend torch or auto), "
                         "not an .onnx export or backend onnx")
    if opts.backend != "auto":
        return opts.backend
    if onnx_file:
        return "onnx"
    onnx_ready = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None
    cpu = resolve_device(opts.device) == "cpu"
    return "onnx" if onnx_ready and cpu and opts.finetune_steps == 0 else "torch"


def resolve_precision(opts: ReconstructOptions, model) -> str:
    """The network's precision ``opts.precision`` names; "auto": bf16 for a torch model on a device with native bf16
    (measured on an AVX-512 BF16 CPU: 1.56× faster, depth within 1 %), else fp32."""
    if opts.precision not in ("auto",) + PRECISIONS:
        raise ValueError(f"precision must be auto or one of {PRECISIONS}, got {opts.precision!r}")
    torch_model = isinstance(model, torch.nn.Module)
    if opts.precision == "bf16" and not torch_model:
        raise ValueError("--precision bf16 needs the torch backend (--backend torch)")
    if opts.precision != "auto":
        return opts.precision
    return "bf16" if torch_model and native_bf16(next(model.parameters()).device) else "fp32"


@contextmanager
def _timed(timings: dict, name: str):
    """Times a stage into ``timings``; what the stage freed is handed back to the system as it ends (a long clip's
    stages free hundreds of MB of (frame × track) work arrays that the next stage's large arrays, mapped afresh,
    would otherwise stack on)."""
    start = time.perf_counter()
    yield
    give_back_freed()
    timings[f"{name}_s"] = time.perf_counter() - start


def memory_plan(source: str | Path, opts: ReconstructOptions) -> MemoryPlan | None:
    """The extra frame stride that keeps a video under ``opts.max_memory_gb`` (None without a limit)."""
    if opts.max_memory_gb is None:
        return None
    info = probe_video(source)
    frames = -(-info.n_frames // opts.stride)
    if opts.max_frames is not None:
        frames = min(frames, opts.max_frames)
    scale = 1.0 if opts.long_side is None else min(1.0, opts.long_side / max(info.width, info.height))
    return plan_stride(frames, round(info.width * scale), round(info.height * scale), opts.max_memory_gb)


def read_tracks(source: str | Path | TrackSet, opts: ReconstructOptions, timings: dict,
                progress: Callable[[float, str], None]
                ) -> tuple[TrackSet, Clip | None, MemoryPlan | None, list[Revisit]]:
    """Decode, track and revisit stages: the input's tracks (a TrackSet or track file as given), its clip (or None),
    the memory plan its frames were read under (None: no ``max_memory_gb``, or not a video) and the video's revisits
    (:func:`~tracks4d.tracking.revisits.find_revisits`: views seen again, for the camera solve). The clip comes back
    :meth:`~tracks4d.io.video.Clip.released`: no later stage reads the frames, and at 600 frames they are a quarter of
    the reconstruction's peak memory (``clip.decoded()`` reads them again for pictures)."""
    if isinstance(source, TrackSet):
        return source, None, None, []
    if Path(source).is_file() and Path(source).suffix.lower() == ".npz":
        return TrackSet.load(source), None, None, []
    with _timed(timings, "decode"):
        plan = memory_plan(source, opts)
        extra = 1 if plan is None else plan.stride
        max_frames = None if opts.max_frames is None else -(-opts.max_frames // extra)
        clip = read_video(source, stride=opts.stride * extra, max_frames=max_frames, long_side=opts.long_side)
    progress(0.05, "decoded")
    with _timed(timings, "tracking"):
        tracks = track_clip(clip, TrackerConfig(grid=opts.grid, query_every=opts.query_every), tracker=opts.tracker,
                            checkpoint=opts.tracker_checkpoint, device=opts.device, progress=opts.progress)
    with _timed(timings, "revisits"):
        revisits = find_revisits(clip.frames, tracks, clip.scale)
    progress(0.3, "tracked")
    return tracks, clip.released(), plan, revisits


def with_intrinsics(tracks: TrackSet, opts: ReconstructOptions) -> tuple[TrackSet, bool]:
    """``tracks`` with per-frame K — the user's, the file's, or a guess (:func:`guess_intrinsics`) — and whether it is
    known (a guess gets its focal refined by the bundle adjustment)."""
    size = tuple(int(v) for v in tracks.image_size) if tracks.image_size is not None else None
    given = intrinsics_from_options(opts, size)
    known = given is not None or tracks.intrinsics is not None
    k = given if given is not None else (tracks.intrinsics if tracks.intrinsics is not None
                                         else guess_intrinsics(tracks))
    return replace(tracks, intrinsics=k), known


def propose(model, tracks: TrackSet, opts: ReconstructOptions, precision: str, timings: dict,
            progress: Callable[[float, str], None]) -> tuple[Reconstruction, list]:
    """Network stage: each ≤ ``opts.window``-frame window (fine-tuned first with ``finetune_steps``) through the
    network at ``precision``, stitched into one clip → (its proposal of γ, points and cameras, fine-tuning
    reports)."""
    spans = window_spans(tracks.n_frames, opts.window, opts.overlap)
    network_s, tune_s, reports, done = 0.0, 0.0, [], 0

    def run_window(sub: TrackSet) -> Reconstruction:
        nonlocal network_s, tune_s, done
        window_model = model
        if opts.finetune_steps > 0:
            t0 = time.perf_counter()
            window_model, report = finetune(
                model, sub, opts.finetune_steps, device=opts.device, progress=opts.progress,
                on_step=lambda step, steps: progress(0.3 + 0.5 * (done + 0.9 * step / steps) / len(spans),
                                                     f"fine-tuning window {done + 1}/{len(spans)}"))
            tune_s += time.perf_counter() - t0
            reports.append(report.to_dict())
        t0 = time.perf_counter()
        rec = run_network(window_model, sub, opts.device, precision)
        give_back_freed()
        network_s += time.perf_counter() - t0
        done += 1
        progress(0.3 + 0.5 * done / len(spans), f"window {done}/{len(spans)}")
        return rec

    proposal = run_window(tracks) if len(spans) == 1 else reconstruct_long(tracks, run_window, opts.window,
                                                                          opts.overlap, opts.window_tracks)
    timings["network_s"] = network_s
    if opts.finetune_steps > 0:
        timings["finetune_s"] = tune_s
    return proposal, reports


def image_size_of(tracks: TrackSet) -> tuple[int, int]:
    """(W, H) of the tracks' images: as stored, else the tracks' extent."""
    if tracks.image_size is not None:
        return tuple(int(v) for v in tracks.image_size)
    seen = tracks.tracks[tracks.visible]
    return (int(np.ceil(seen[:, 0].max())) + 1, int(np.ceil(seen[:, 1].max())) + 1) if seen.size else (1, 1)


def static_world(fitted: np.ndarray, motion: MotionLevels, rotation_only: bool) -> np.ndarray:
    """(P, 3) triangulated world points of the static tracks, NaN elsewhere (all NaN without parallax)."""
    if rotation_only:
        return np.full(fitted.shape, np.nan)
    return np.where(motion.static[:, None] & np.isfinite(fitted).all(1, keepdims=True), fitted, np.nan)


def place_moving(tracks: TrackSet, cameras: Cameras, motion: MotionLevels, static_points: np.ndarray,
                 contact: GroundContact, moving_checkpoint: Path | None, opts: ReconstructOptions
                 ) -> MovingDepth | None:
    """Moving-depth stage: the geometry-conditioned network on what geometry knows (cameras, motion scores, static
    depth, ground contact), windowed like the first network; None without a conditioned checkpoint."""
    if moving_checkpoint is None:
        return None
    model, _ = moving_network(moving_checkpoint, opts.device)
    z = transform_points(cameras.world_to_camera, np.nan_to_num(static_points))[..., 2]
    placed_by_geometry = np.isfinite(static_points).all(1)
    known = placed_by_geometry[None] & tracks.visible & (z > 0)
    score = np.log(np.maximum(motion.residual_px, 1e-3) / motion.noise_px)
    geometry = ClipGeometry(tracks.tracks, tracks.visible, cameras, score, np.where(known, z, np.nan), contact.depth,
                            contact.plane)
    out = moving_depth(model, geometry, window_spans(tracks.n_frames, opts.window, opts.overlap), ~placed_by_geometry,
                       opts.device)
    out.depth[:, placed_by_geometry] = z[:, placed_by_geometry]       # triangulated: their own depth
    out.sigma[:, placed_by_geometry] = 0.0
    return out


REFINE_MAX_PX = 3.0   # a refined entry farther than this from its track keeps the proposal


def moving_network(path: str | Path, device: str | torch.device = "cpu"):
    """The geometry-conditioned network of ``path`` on ``device`` and its payload, loaded once per process (a
    server calls it at start-up, so a broken checkpoint shows before the first request)."""
    return _load_moving(str(path), str(device))


@functools.lru_cache(maxsize=4)
def _load_moving(path: str, device: str):
    return load_conditioned(path, device)


def refine(tracks: TrackSet, cameras: Cameras, motion: MotionLevels, placed: PlacedPoints,
           moving: MovingDepth | None) -> tuple[PlacedPoints, Refined | None]:
    """Refinement stage: the moving tracks' trajectories optimised with the cameras fixed (reprojection, smoothness,
    a pull towards the placed depth weighted by the network's certainty). The moving tracks' entries of
    ``placed.points`` are replaced in place (a long clip's (frame × track) points are not copied)."""
    index = np.flatnonzero(motion.moving)
    if index.size == 0:
        return placed, None
    sigma = moving.sigma[:, index] if moving is not None else np.full((tracks.n_frames, index.size), 0.3)
    refined = refine_moving(placed.points[:, index], tracks.tracks[:, index], tracks.visible[:, index], cameras,
                            placed.depth[:, index], sigma)
    points = placed.points
    depth = transform_points(cameras.world_to_camera, refined.points)[..., 2]
    usable = np.isfinite(refined.points).all(-1) & (depth > 0)            # never behind the camera
    kept = usable & ~(refined.error_px > REFINE_MAX_PX)
    # an entry the low-rank trajectory cannot follow (off its track) goes onto its own ray at the refined depth, not
    # back to the proposal's (one track alternating between two depths); behind the camera: the proposal
    onto_ray = transform_points(cameras.camera_to_world,
                                on_rays(tracks.tracks[:, index], cameras, np.where(usable, depth, 1.0)))
    points[:, index] = np.where(kept[..., None], refined.points,
                                np.where(usable[..., None], onto_ray, placed.points[:, index]))
    depth = transform_points(cameras.world_to_camera, points)[..., 2]
    errors = refined.error_px[kept & np.isfinite(refined.error_px)]
    refined.reprojection_px = float(np.median(errors)) if errors.size else 0.0
    return PlacedPoints(points, placed.static_points, depth, placed.observed, placed.scale), refined


def keep_plausible(tracks: TrackSet, cameras: Cameras, motion: MotionLevels, placed: PlacedPoints
                   ) -> tuple[PlacedPoints, dict]:
    """Plausibility stage (:mod:`~tracks4d.geometry.plausible`): moving tracks off their object's depth scaled onto
    it, flying entries (a jump along the ray that their neighbourhood does not share) given the neighbourhood's
    motion, unseen entries interpolated between sightings → (points, counts for ``meta``)."""
    static_depth = placed.depth[:, motion.static][tracks.visible[:, motion.static]]
    static_depth = static_depth[np.isfinite(static_depth) & (static_depth > 0)]
    if not motion.moving.any() or static_depth.size == 0:
        return placed, {"flying_before": 0, "flying_after": 0}
    scale = float(np.median(static_depth))
    before = int(flying_entries(placed.points, tracks.tracks, tracks.visible, motion.moving, scale).sum())
    points, off_object = on_their_object(placed.points, tracks.tracks, tracks.visible, motion.moving,
                                         cameras.world_to_camera, max(image_size_of(tracks)))
    points, replaced = plausible_trajectories(points, tracks.tracks, tracks.visible, motion.moving, cameras, scale)
    points = between_sightings(points, tracks.visible, motion.moving)
    after = int(flying_entries(points, tracks.tracks, tracks.visible, motion.moving, scale).sum())
    depth = transform_points(cameras.world_to_camera, points)[..., 2]
    counts = {"flying_before": before, "flying_after": after, "replaced": int(replaced.sum()),
              "off_object": int(off_object.sum()), "scene_depth": scale}
    return PlacedPoints(points, placed.static_points, depth, placed.observed, placed.scale), counts


def assemble(tracks: TrackSet, solution: CameraSolution, motion: MotionLevels, placed: PlacedPoints,
             proposal: Reconstruction, meta: dict) -> Reconstruction:
    """The output: the stages' results in the reconstruction contract (README, *Files*). The network's bases and
    coefficients are kept as it gave them; ``points`` is authoritative."""
    cams = solution.cameras
    return Reconstruction(cams.camera_to_world, cams.world_to_camera, cams.intrinsics, placed.points,
                          placed.static_points, motion.gamma, placed.depth, proposal.bases, proposal.coefficients,
                          tracks.tracks, tracks.visible, meta, motion_state=motion.state)


def run_pipeline(source: str | Path | TrackSet, opts: ReconstructOptions, network: tuple | None = None,
                 on_progress: Callable[[float, str], None] | None = None) -> ReconstructResult:
    """Run the whole pipeline on a video file, a frame folder, a track ``.npz`` or a :class:`TrackSet`.

    network: an already loaded ``(network, payload)`` from :func:`~tracks4d.network.backends.load_backend` (a
    server loads it once), else it is loaded from ``opts.checkpoint`` / ``opts.backend``. on_progress(fraction, stage)
    is told as stages finish (decoded, tracked, each window, cameras, points)."""
    progress = on_progress or (lambda fraction, stage: None)
    if opts.camera_init not in CAMERA_INITS:
        raise ValueError(f"camera_init must be one of {CAMERA_INITS}, got {opts.camera_init!r}")
    backend = resolve_backend(opts)
    if opts.ba_gamma is not None and not opts.ba_gamma > 0:
        raise ValueError(f"--ba-gamma must be positive, got {opts.ba_gamma}")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    checkpoint = opts.checkpoint if opts.checkpoint is not None else default_checkpoint(opts.device)
    with _timed(timings, "load_model"):
        model, payload = network if network is not None else load_backend(checkpoint, backend, opts.device)
    precision = resolve_precision(opts, model)
    moving_checkpoint = (default_moving_checkpoint() if opts.moving_checkpoint is None else
                         None if str(opts.moving_checkpoint).lower() == "none" else Path(opts.moving_checkpoint))
    if moving_checkpoint is not None:
        with _timed(timings, "load_moving_model"):
            moving_network(moving_checkpoint, opts.device)

    tracks, clip, plan, revisits = read_tracks(source, opts, timings, progress)
    tracks, known = with_intrinsics(tracks, opts)
    with _timed(timings, "windows"):
        proposal, finetune_reports = propose(model, tracks, opts, precision, timings, progress)
    k = tracks.intrinsics_per_frame()
    with _timed(timings, "cameras"):
        looped = seen_again(tracks, revisits)
        solution = solve_cameras(looped.tracks, looped.visible, Cameras(proposal.world_to_camera, k),
                                 proposal.motion_level, adjust=opts.bundle_adjust, refine_focal=not known,
                                 camera_init=opts.camera_init, static_gamma=opts.ba_gamma)
        del looped                                      # the revisits serve the camera solve only
    progress(0.9, "cameras")
    with _timed(timings, "motion"):
        fitted, errors = static_fit(tracks.tracks, tracks.visible, solution.cameras, solution.rotation_only)
        focal = float(np.mean(solution.cameras.intrinsics[:, [0, 1], [0, 1]]))
        motion = motion_levels(errors, tracks.visible, focal, proposal.motion_level, opts.ba_gamma)
        motion = motion.with_states(motion_states(tracks.tracks, tracks.visible, solution.cameras, motion,
                                                  image_size_of(tracks),
                                                  None if solution.rotation_only else fitted))
    static_points = static_world(fitted, motion, solution.rotation_only)
    with _timed(timings, "consistency"):
        consistency = static_consistency(tracks.tracks, tracks.visible, solution.cameras, static_points,
                                         image_size_of(tracks))
    with _timed(timings, "contact"):
        contact = ground_contact(tracks.tracks, tracks.visible, solution.cameras, static_points, motion.static,
                                 image_size_of(tracks))
    with _timed(timings, "moving"):
        moving = place_moving(tracks, solution.cameras, motion, static_points, contact, moving_checkpoint, opts)
    with _timed(timings, "points"):
        placed = place_points(tracks.tracks, tracks.visible, solution.cameras, motion, fitted, errors,
                              solution.rotation_only, proposal, None if moving is None else moving.depth)
    progress(0.93, "points")
    refined = None
    if opts.refine_moving:
        with _timed(timings, "refine"):
            placed, refined = refine(tracks, solution.cameras, motion, placed, moving)
    progress(0.95, "refined")
    with _timed(timings, "plausible"):
        placed, plausible = keep_plausible(tracks, solution.cameras, motion, placed)
    timings["total_s"] = time.perf_counter() - start
    meta = {
        **proposal.meta,
        "stages": {"cameras": {**solution.to_meta(), "seconds": timings["cameras_s"]},
                   "motion": {**motion.to_meta(), "seconds": timings["motion_s"]},
                   "points": {"static_depth": "unobservable (no parallax): the network's, scaled"
                              if solution.rotation_only else "triangulated under the solved cameras",
                              "static_observed": int(placed.observed.sum()), "seconds": timings["points_s"]},
                   "consistency": {**consistency.to_meta(), "seconds": timings["consistency_s"]},
                   "contact": {**contact.to_meta(), "seconds": timings["contact_s"]},
                   "moving": {"network": "none: the first network's points" if moving is None else
                              str(moving_checkpoint), "seconds": timings["moving_s"]},
                   "refine": None if refined is None else
                   {"tracks": int(motion.moving.sum()), "reprojection_px": refined.reprojection_px,
                    "kept": float(np.mean(~(refined.error_px > REFINE_MAX_PX))),
                    "seconds": timings["refine_s"]},
                   "plausible": {**plausible, "seconds": timings["plausible_s"]}},
        "verdict": _verdict(solution, motion, placed, consistency) + ([plan.sentence()] if plan and plan.sentence()
                                                                      else []),
        "static_mask": motion.static.tolist(),
        "motion_states": motion.state_counts,
        "tracks_per_frame": _per_frame(tracks.visible),
        "revisits": [revisit.to_meta() for revisit in revisits],
        "memory": None if plan is None else plan.to_meta(),
        "image_size": None if tracks.image_size is None else [int(v) for v in tracks.image_size],
        "video": None if clip is None else clip.to_meta(),
        "timings": timings, "checkpoint": str(checkpoint), "checkpoint_step": int(payload.get("step", 0)),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "backend": backend if network is None else type(model).__name__, "precision": precision,
        "intrinsics_known": bool(known), "finetune": finetune_reports, "torch": torch.__version__,
        "units": "arbitrary (monocular scale)", "authoritative": "points (bases and coefficients are the network's)",
    }
    rec = assemble(tracks, solution, motion, placed, proposal, meta)
    return ReconstructResult(rec, clip, timings)


def _per_frame(visible: np.ndarray) -> dict[str, int]:
    """Tracks seen per frame (visible (N, P)): min, median and max over the frames."""
    count = np.asarray(visible).sum(1)
    return {"min": int(count.min()), "median": int(np.median(count)), "max": int(count.max())}


def _verdict(solution: CameraSolution, motion: MotionLevels, placed: PlacedPoints, consistency: Consistency
             ) -> list[str]:
    """Plain sentences on what the clip allowed: where the cameras come from, then any warnings (no parallax, too few
    static tracks, a skipped adjustment, static tracks that could not be triangulated, a folded scene)."""
    ba = solution.ba
    adjusted = "" if ba is None or ba.skipped else f", adjusted over {ba.n_frames} frames and {ba.n_points} tracks"
    states = motion.state_counts
    notes = [f"cameras: {solution.model.kind} motion from the {solution.source.split(':')[0]} seed{adjusted}; "
             f"{states['static']} of {len(motion.static)} tracks static, {states['moving']} moving, "
             f"{states['unreliable']} unreliable (they fail the static fit alone: lost tracks, reflections)"]
    notes += solution.notes
    if solution.rotation_only:
        notes.append("the camera only rotates or stands still: static depth is unobservable (the network's is used)")
    elif solution.model.kind == "mixed":
        spans = [f"{s.start}–{s.end - 1}" for s in solution.model.segments if s.kind == "rotation"]
        notes.append(f"the camera only rotates in frames {', '.join(spans)}")
    share = float(motion.static.mean())
    if share < 0.2:
        notes.append(f"only {share:.0%} of the tracks fit a static scene: the cameras rest on few static tracks")
    if solution.ba is not None and solution.ba.skipped:
        notes.append(f"bundle adjustment {solution.ba.skipped}")
    if not solution.rotation_only and placed.observed.sum() < 0.5 * motion.static.sum():
        notes.append(f"only {int(placed.observed.sum())} of {int(motion.static.sum())} static tracks could be "
                     f"triangulated: the rest keep the network's depth")
    if consistency.folded:
        notes.append(consistency.sentence())
    return notes
