"""Bundle adjustment of every camera and the static points (paper appendix): one solve per clip.

The static tracks (chosen by the motion stage, :mod:`tracks4d.geometry.motion`), observed where their initial
reprojection error is small, are refined together with every camera pose by COLMAP's C++ Ceres bundle adjuster
(pycolmap); no Python cost function runs. The monocular 7-dof gauge is fixed by COLMAP (``TWO_CAMS_FROM_WORLD``: the
first observed camera's pose and the scale set by the second camera stay put). Too little static structure, or a solve
that makes things worse, is not an error: the input comes back unchanged with ``BAReport.skipped`` naming the reason.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from ..contracts import Cameras
from .transforms import invert_rigid, transform_points

__all__ = ["BAReport", "bundle_adjust", "MIN_FRAMES", "MIN_POINTS"]

MIN_FRAMES = 3  # frames that must observe the static points
MIN_POINTS = 8  # static points with at least two kept observations
MIN_FRAME_OBSERVATIONS = 6  # a frame with fewer kept observations stays out of the problem (its pose unchanged)
MIN_FOCAL_POINTS = 30  # fewer static points: the focal stays fixed even when asked to refine it
SMALL_BASELINE = 0.02  # camera centres spread less than this × median depth: points held fixed, cameras refined
MAX_FOCAL_CHANGE = 2.0  # a refined focal more than this factor away from the start is rejected
MAX_DEPTH_RATIO = 20.0  # a refined static point farther than this × the typical depth has run off
DIVERGED_RMS_RATIO = 1.5  # a solve whose RMS error grows past this factor (or whose median grows) is rejected
MAX_SCALE_CHANGE = 5.0  # the typical static depth changing by more than this factor: the gauge ran off
ITERATIVE_SCHUR_FRAMES = 60  # more frames: Ceres' iterative Schur solver (the direct ones grow too slow)
_LOSSES = ("trivial", "huber", "soft_l1", "cauchy")


@dataclass
class BAReport:
    """What one bundle adjustment did; RMS errors are over the kept observations, in pixels."""

    initial_rms_px: float
    final_rms_px: float
    n_points: int
    n_observations: int
    n_inliers: int
    seconds: float
    refined_focal: bool
    n_frames: int = 0
    focal_px: float | None = None
    iterations: int = 0
    termination: str = ""
    skipped: str = ""
    notes: list = dataclasses.field(default_factory=list)
    fixed_structure: bool = False
    initial_median_px: float = float("nan")
    final_median_px: float = float("nan")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _project(points_world: np.ndarray, w2c: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(P, 3) points through (N, 4, 4) cameras and (N, 3, 3) K → (N, P, 2) pixels (z clamped at 1e-9)."""
    pix = np.einsum("nij,npj->npi", intrinsics, transform_points(w2c, points_world))
    return pix[..., :2] / np.maximum(pix[..., 2:], 1e-9)


def _select(tracks, visible, cameras: Cameras, points, static, max_error_px: float):
    """Static points and observations to adjust → indices (M,) into P · obs (N, M) bool kept observations ·
    n_observations (visible ones, before the gate)."""
    candidates = np.flatnonzero(static & np.isfinite(points).all(1))
    xyz = points[candidates].astype(np.float64)
    pix = _project(xyz, cameras.world_to_camera, cameras.intrinsics)
    seen = visible[:, candidates]
    depth = transform_points(cameras.world_to_camera, xyz)[..., 2]
    error = np.linalg.norm(pix - tracks[:, candidates].astype(np.float64), axis=-1)
    obs = seen & (depth > 0) & (error < max_error_px)
    obs[obs.sum(1) < MIN_FRAME_OBSERVATIONS] = False  # under-constrained poses would wander off
    keep = obs.sum(0) >= 2
    return candidates[keep], obs[:, keep], int(seen.sum())


def _errors(points_world, w2c, intrinsics, tracks, obs) -> tuple[float, float]:
    """(RMS, median) reprojection error in px over the observations ``obs`` (NaN when there are none)."""
    err = np.linalg.norm(_project(points_world, w2c, intrinsics) - tracks, axis=-1)[obs]
    return (float(np.sqrt(np.mean(err**2))), float(np.median(err))) if err.size else (float("nan"), float("nan"))


def _colmap_problem(tracks: np.ndarray, cameras: Cameras, xyz: np.ndarray, obs: np.ndarray, shared_camera: bool):
    """A pycolmap.Reconstruction (image t+1 ↔ frame t) of the selected tracks (N, M, 2) and their points xyz (M, 3)
    → (reconstruction, point3D ids (M,))."""
    import pycolmap

    n = cameras.n_frames
    k = cameras.intrinsics
    size = np.maximum(np.ceil(2 * k[:, :2, 2]).astype(int), 1)  # COLMAP wants an image size; K is what we have
    colmap = pycolmap.Reconstruction()
    if shared_camera:
        f = float(np.mean(k[:, [0, 1], [0, 1]]))
        params = [f, float(k[:, 0, 2].mean()), float(k[:, 1, 2].mean())]
        colmap.add_camera_with_trivial_rig(pycolmap.Camera(
            model="SIMPLE_PINHOLE", width=int(size[:, 0].max()), height=int(size[:, 1].max()),
            params=params, camera_id=1))
    else:
        for t in range(n):
            colmap.add_camera_with_trivial_rig(pycolmap.Camera(
                model="PINHOLE", width=int(size[t, 0]), height=int(size[t, 1]),
                params=[k[t, 0, 0], k[t, 1, 1], k[t, 0, 2], k[t, 1, 2]], camera_id=t + 1))
    for t in range(n):
        image = pycolmap.Image(name=str(t), keypoints=tracks[t], camera_id=1 if shared_camera else t + 1,
                               image_id=t + 1)
        colmap.add_image_with_trivial_frame(image, pycolmap.Rigid3d(cameras.world_to_camera[t, :3]))
    ids = np.empty(len(xyz), dtype=np.int64)
    for j in range(len(xyz)):
        frames = np.flatnonzero(obs[:, j])
        track = pycolmap.Track([pycolmap.TrackElement(int(t) + 1, int(j)) for t in frames])
        ids[j] = colmap.add_point3D(xyz[j], track)
    return colmap, ids


def _solve(colmap, observed: np.ndarray, refine_focal: bool, loss: str, loss_scale_px: float,
           max_iterations: int, constant_points: np.ndarray | None = None):
    """Run COLMAP's Ceres bundle adjuster in place → its summary. observed: (N,) bool frames holding observations."""
    import pycolmap

    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = refine_focal
    options.refine_principal_point = False
    options.refine_extra_params = False
    options.print_summary = False
    options.ceres.loss_function_type = getattr(pycolmap.LossFunctionType, loss.upper())
    options.ceres.loss_function_scale = loss_scale_px
    options.ceres.solver_options.max_num_iterations = max_iterations
    options.ceres.solver_options.function_tolerance = 1e-6  # Ceres' default; COLMAP's 0 doubles the iterations
    if observed.sum() > ITERATIVE_SCHUR_FRAMES:  # measured 150 frames × 1462 points: 3.9 s against 9–13 s direct
        from pycolmap._core.pyceres import LinearSolverType, PreconditionerType

        options.ceres.auto_select_solver_type = False
        options.ceres.solver_options.linear_solver_type = LinearSolverType.ITERATIVE_SCHUR
        options.ceres.solver_options.preconditioner_type = PreconditionerType.SCHUR_JACOBI
    config = pycolmap.BundleAdjustmentConfig()
    for t in np.flatnonzero(observed):
        config.add_image(int(t) + 1)
    if constant_points is None:
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.THREE_POINTS)
    else:  # fixed structure fixes the gauge; cameras are resected against it
        for i in constant_points:
            config.add_constant_point(int(i))
    return pycolmap.create_default_bundle_adjuster(options, config, colmap).solve()


def bundle_adjust(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, points: np.ndarray,
                  static: np.ndarray, *, refine_focal: bool = False, max_initial_error_px: float = 10.0,
                  loss: str = "cauchy", loss_scale_px: float = 1.0, max_iterations: int = 100
                  ) -> tuple[Cameras, np.ndarray, BAReport]:
    """Refine every camera pose and the static points (and one shared focal when ``refine_focal``).

    tracks (N, P, 2) px · visible (N, P) bool · cameras: the start · points (P, 3) start positions (NaN: unplaced) ·
    static (P,) bool, the tracks to adjust. Observations: visible tracks whose reprojection through the start is
    < ``max_initial_error_px``; points left with fewer than two are dropped. ``loss`` ∈ trivial/huber/soft_l1/cauchy,
    scale in pixels; when the initial RMS exceeds three times that scale a first solve runs at the initial RMS, then one at
    ``loss_scale_px``. With ``refine_focal`` all frames share one SIMPLE_PINHOLE camera (f refined, principal point
    fixed at the mean); otherwise each frame keeps its own fixed K. When the camera centres spread less than
    ``SMALL_BASELINE`` × the typical depth the points are held fixed and only the cameras move.

    Returns (cameras, points (P, 3) with the adjusted rows replaced, report). Frames with fewer than
    ``MIN_FRAME_OBSERVATIONS`` kept observations stay fixed. Fewer than ``MIN_FRAMES`` observing frames or
    ``MIN_POINTS`` usable points, a focal that moves more than ``MAX_FOCAL_CHANGE``×, a gauge that runs off, or a solve
    that ends with a higher median error, a non-finite RMS or one over ``DIVERGED_RMS_RATIO`` × the initial: the input
    unchanged, ``report.skipped`` says why. Raises ValueError on bad arguments.
    """
    if loss not in _LOSSES:
        raise ValueError(f"bundle_adjust: loss must be one of {_LOSSES}, got {loss!r}")
    if not (max_initial_error_px > 0 and loss_scale_px > 0 and max_iterations >= 1):
        raise ValueError("bundle_adjust: max_initial_error_px and loss_scale_px must be > 0, max_iterations ≥ 1")
    start = time.perf_counter()
    chosen, obs, n_observations = _select(tracks, visible, cameras, points, static, max_initial_error_px)
    observed = tracks[:, chosen].astype(np.float64)
    xyz0 = points[chosen].astype(np.float64)
    initial_rms, initial_median = _errors(xyz0, cameras.world_to_camera, cameras.intrinsics, observed, obs)
    report = BAReport(initial_rms, initial_rms, len(chosen), n_observations, int(obs.sum()), 0.0,
                      refined_focal=False, n_frames=int(obs.any(1).sum()), initial_median_px=initial_median,
                      final_median_px=initial_median)

    def unchanged(reason: str):
        report.skipped, report.seconds = reason, time.perf_counter() - start
        return cameras, points, report

    if report.n_frames < MIN_FRAMES:
        return unchanged(f"skipped: {report.n_frames} frames observe static points, need ≥ {MIN_FRAMES}")
    if len(chosen) < MIN_POINTS:
        return unchanged(f"skipped: {len(chosen)} usable static points, need ≥ {MIN_POINTS}")
    if refine_focal and len(chosen) < MIN_FOCAL_POINTS:
        refine_focal = False
        report.notes.append(f"focal kept: {len(chosen)} static points, need ≥ {MIN_FOCAL_POINTS} to refine it")
    observing = obs.any(1)
    centres = invert_rigid(cameras.world_to_camera[observing])[:, :3, 3]
    typical0 = float(np.median(transform_points(cameras.world_to_camera, xyz0)[..., 2][obs]))
    baseline = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) / typical0
    report.fixed_structure = baseline < SMALL_BASELINE
    if report.fixed_structure:
        report.notes.append(f"static points held fixed: camera baseline {baseline:.3g} × depth < {SMALL_BASELINE}")
    colmap, ids = _colmap_problem(observed, cameras, xyz0, obs, shared_camera=refine_focal)
    # A robust loss far narrower than the initial errors stalls (e.g. Cauchy 1 px vs a 10 % focal error):
    # solve first at the initial RMS, then at the requested scale.
    scales = [initial_rms, loss_scale_px] if loss != "trivial" and initial_rms > 3 * loss_scale_px else [loss_scale_px]
    for scale in scales:
        summary = _solve(colmap, observing, refine_focal, loss, scale, max_iterations,
                         ids if report.fixed_structure else None)
        ceres = getattr(summary, "ceres_summary", None)
        report.iterations += 0 if ceres is None else ceres.num_successful_steps + ceres.num_unsuccessful_steps
    report.termination = str(summary.termination_type).split(".")[-1]

    n = cameras.n_frames
    w2c = np.tile(np.eye(4), (n, 1, 1))
    for t in range(n):
        w2c[t, :3] = colmap.image(t + 1).cam_from_world().matrix()
    intrinsics = cameras.intrinsics.copy()
    if refine_focal:
        f, cx, cy = colmap.camera(1).params
        intrinsics[:] = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
        report.refined_focal, report.focal_px = True, float(f)
    xyz = np.stack([colmap.point3D(int(i)).xyz for i in ids])
    point_depth = transform_points(w2c, xyz)[..., 2]
    typical = float(np.median(point_depth[obs]))
    seen_depth = np.where(obs, point_depth, typical)
    runaway = (seen_depth.min(0) <= 0) | (seen_depth.max(0) > MAX_DEPTH_RATIO * typical)
    if runaway.any():  # a static point with too little parallax can slide off to infinity under a robust loss
        xyz[runaway] = xyz0[runaway]
        report.notes.append(f"{int(runaway.sum())} static points ran off (behind a camera or beyond "
                            f"{MAX_DEPTH_RATIO:g}× the typical depth) and keep their initial position")
    report.final_rms_px, report.final_median_px = _errors(xyz, w2c, intrinsics, observed, obs)
    report.seconds = time.perf_counter() - start
    f0 = float(np.mean(cameras.intrinsics[:, [0, 1], [0, 1]]))
    if refine_focal and not 1 / MAX_FOCAL_CHANGE <= report.focal_px / f0 <= MAX_FOCAL_CHANGE:
        return unchanged(f"rejected: the focal ran from {f0:.4g} to {report.focal_px:.4g} px; the cameras are "
                         f"returned unchanged")
    if not 1 / MAX_SCALE_CHANGE <= typical / typical0 <= MAX_SCALE_CHANGE:
        return unchanged(f"rejected: the solve ran off (typical static depth {typical0:.3g} → {typical:.3g}); the "
                         f"cameras are returned unchanged")
    # The robust loss may trade a slightly higher RMS for fitting the inliers better; the median must not rise.
    if (not np.isfinite(report.final_rms_px) or report.final_median_px > report.initial_median_px
            or report.final_rms_px > DIVERGED_RMS_RATIO * report.initial_rms_px):
        return unchanged(f"rejected: the solve diverged (RMS {report.initial_rms_px:.3g} → {report.final_rms_px:.3g}"
                         f" px, median {report.initial_median_px:.3g} → {report.final_median_px:.3g} px, "
                         f"{report.termination}); the cameras are returned unchanged")
    adjusted = points.astype(np.float64, copy=True)
    adjusted[chosen] = xyz
    return Cameras(w2c, intrinsics), adjusted, report
