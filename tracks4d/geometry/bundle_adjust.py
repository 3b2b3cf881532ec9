"""Bundle adjustment of a reconstruction's cameras and static points (paper appendix, DESIGN §7).

The static points B₁ whose motion level γ lies below a threshold, observed where their initial reprojection error
is small, are refined together with every camera pose by COLMAP's C++ Ceres bundle adjuster (pycolmap); no Python
cost function runs. The monocular 7-dof gauge is fixed by COLMAP (``TWO_CAMS_FROM_WORLD``: the first observed
camera's pose and the scale set by the second camera stay put). Dynamic points keep their depth and pixel position
in every frame. Too little static structure is not an error: the reconstruction comes back unchanged with
``BAReport.skipped`` naming the reason. A camera that only rotates (homographies between frames explain the
tracks) has no parallax to adjust: its rotations come from the homographies and its centre stays put.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..contracts import Reconstruction
from .transforms import invert_rigid, transform_points

__all__ = ["BAReport", "bundle_adjust", "rotation_only_cameras", "MIN_FRAMES", "MIN_POINTS"]

MIN_FRAMES = 3  # frames that must observe the static points
MIN_POINTS = 8  # static points with at least two kept observations
MIN_FRAME_OBSERVATIONS = 6  # a frame with fewer kept observations stays out of the problem (its pose unchanged)
MIN_FOCAL_POINTS = 30  # fewer static points: the focal stays fixed even when asked to refine it
SMALL_BASELINE = 0.02  # camera centres spread less than this × median depth: points held fixed, cameras refined
MAX_FOCAL_CHANGE = 2.0  # a refined focal more than this factor away from the start is rejected
MAX_DEPTH_RATIO = 20.0  # a refined static point farther than this × the typical depth has run off
DIVERGED_RMS_RATIO = 1.5  # a solve whose RMS error grows past this factor (or whose median grows) is rejected
MAX_SCALE_CHANGE = 5.0  # the typical static depth changing by more than this factor: the gauge ran off
ROTATION_ONLY_INLIERS = 0.6  # a frame whose tracks a homography from the reference frame explains this well …
ROTATION_ONLY_FRAMES = 0.9  # … in this share of frames: the camera only rotates (or stands still)
HOMOGRAPHY_PX = 1.5  # inlier threshold of those homographies
MIN_SHARED_TRACKS = 30  # tracks two frames must share for a homography between them
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
    rotation_only: bool = False
    fixed_structure: bool = False
    initial_median_px: float = float("nan")
    final_median_px: float = float("nan")

    @property
    def too_little_structure(self) -> bool:
        """Skipped before solving: too few frames or static points passed the gate (not rotation-only)."""
        return self.skipped.startswith("skipped")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _project(points_world: np.ndarray, w2c: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(P, 3) points through (N, 4, 4) cameras and (N, 3, 3) K → (N, P, 2) pixels (z clamped at 1e-9)."""
    pix = np.einsum("nij,npj->npi", intrinsics, transform_points(w2c, points_world))
    return pix[..., :2] / np.maximum(pix[..., 2:], 1e-9)


def _select(rec: Reconstruction, gamma_threshold: float, max_error_px: float, static_mask: np.ndarray | None = None):
    """Static points and observations to adjust (candidates: γ below the threshold, or ``static_mask``).

    → points (M,) indices into P · obs (N, M) bool kept observations ·
    n_observations (visible ones, before the gate).
    """
    candidates = np.flatnonzero(rec.motion_level < gamma_threshold if static_mask is None else static_mask)
    xyz = rec.static_points[candidates].astype(np.float64)
    pix = _project(xyz, rec.world_to_camera, rec.intrinsics)
    visible = rec.visible[:, candidates]
    depth = transform_points(rec.world_to_camera, xyz)[..., 2]
    error = np.linalg.norm(pix - rec.tracks[:, candidates].astype(np.float64), axis=-1)
    obs = visible & (depth > 0) & (error < max_error_px)
    obs[obs.sum(1) < MIN_FRAME_OBSERVATIONS] = False  # under-constrained poses would wander off
    keep = obs.sum(0) >= 2
    return candidates[keep], obs[:, keep], int(visible.sum())


def _bearings(pixels: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(M, 2) pixels → (M, 3) unit viewing rays in the camera frame."""
    rays = np.concatenate([pixels, np.ones((len(pixels), 1))], 1) @ np.linalg.inv(k).T
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    return u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt


def rotation_only_cameras(rec: Reconstruction) -> np.ndarray | None:
    """(N, 4, 4) world-to-camera poses when the tracks say the camera only rotates, else None.

    Frame t is related to a reference frame r (the first with ≥ ``MIN_SHARED_TRACKS`` tracks visible in both) by a
    RANSAC homography; when it explains ≥ ``ROTATION_ONLY_INLIERS`` of the shared tracks within ``HOMOGRAPHY_PX`` in
    ≥ ``ROTATION_ONLY_FRAMES`` of the frames (moving objects are the outliers), the camera centre is unobservable
    from parallax: every centre is set to frame 0's and R_t = R_{t←r} R_r, with R_{t←r} the rotation that best maps
    the homography inliers' viewing rays in frame r onto those in frame t (Kabsch).
    """
    n = rec.n_frames
    rotations = np.empty((n, 3, 3))
    rotations[0] = rec.world_to_camera[0, :3, :3]
    explained = []
    for t in range(1, n):
        shared = (rec.visible[:t] & rec.visible[t]).sum(1)
        refs = np.flatnonzero(shared >= MIN_SHARED_TRACKS)
        if refs.size == 0:
            return None
        r = int(refs[0])
        both = rec.visible[r] & rec.visible[t]
        a, b = rec.tracks[r, both].astype(np.float64), rec.tracks[t, both].astype(np.float64)
        h, _ = cv2.findHomography(a, b, cv2.RANSAC, HOMOGRAPHY_PX)
        if h is None:
            return None
        inliers = np.linalg.norm(cv2.perspectiveTransform(a[None], h)[0] - b, axis=1) < HOMOGRAPHY_PX
        explained.append(float(inliers.mean()))
        if inliers.sum() < 3:
            return None
        rays_r, rays_t = _bearings(a[inliers], rec.intrinsics[r]), _bearings(b[inliers], rec.intrinsics[t])
        rotations[t] = _nearest_rotation(rays_t.T @ rays_r) @ rotations[r]   # Kabsch: rays_t ≈ R rays_r
    if np.mean(np.asarray(explained) >= ROTATION_ONLY_INLIERS) < ROTATION_ONLY_FRAMES:
        return None
    centre = invert_rigid(rec.world_to_camera[:1])[0, :3, 3]
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, :3] = rotations
    w2c[:, :3, 3] = -rotations @ centre
    return w2c


def reexpress(rec: Reconstruction, w2c: np.ndarray, camera_map: np.ndarray | float = 1.0) -> np.ndarray:
    """(N, P, 3) world points under new cameras ``w2c`` (N, 4, 4) that keep every point's camera-frame position in
    every frame, after ``camera_map`` (a scale, or (N, 3, 3) matrices applied to camera-frame points)."""
    cam = transform_points(rec.world_to_camera, rec.points.astype(np.float64))
    cam = cam * camera_map if np.isscalar(camera_map) else np.einsum("nij,npj->npi", camera_map, cam)
    return transform_points(invert_rigid(w2c), cam)


def _with_cameras(rec: Reconstruction, w2c: np.ndarray) -> Reconstruction:
    """``rec`` seen from new cameras: every point keeps its camera-frame position in every frame; a static point
    becomes the median of its per-frame world positions over the frames that see it."""
    points = reexpress(rec, w2c)
    seen = np.where(rec.visible[..., None], points, np.nan)
    static = np.nanmedian(seen, axis=0)
    static = np.where(np.isfinite(static), static, points[0])
    return dataclasses.replace(rec, camera_to_world=invert_rigid(w2c), world_to_camera=w2c,
                               points=points.astype(rec.points.dtype), static_points=static.astype(rec.static_points.dtype))


def _errors(points_world, w2c, intrinsics, tracks, obs) -> tuple[float, float]:
    """(RMS, median) reprojection error in px over the observations ``obs`` (NaN when there are none)."""
    err = np.linalg.norm(_project(points_world, w2c, intrinsics) - tracks, axis=-1)[obs]
    return (float(np.sqrt(np.mean(err**2))), float(np.median(err))) if err.size else (float("nan"), float("nan"))


def _colmap_problem(rec: Reconstruction, points: np.ndarray, obs: np.ndarray, shared_camera: bool):
    """A pycolmap.Reconstruction (image t+1 ↔ frame t) → (reconstruction, point3D ids (M,) in ``points`` order)."""
    import pycolmap

    n = rec.n_frames
    k = rec.intrinsics
    size = np.maximum(np.ceil(2 * k[:, :2, 2]).astype(int), 1)  # no image size in a Reconstruction
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
    tracks = rec.tracks[:, points].astype(np.float64)
    for t in range(n):
        image = pycolmap.Image(name=str(t), keypoints=tracks[t], camera_id=1 if shared_camera else t + 1,
                               image_id=t + 1)
        colmap.add_image_with_trivial_frame(image, pycolmap.Rigid3d(rec.world_to_camera[t, :3]))
    ids = np.empty(len(points), dtype=np.int64)
    for j, p in enumerate(points):
        frames = np.flatnonzero(obs[:, j])
        track = pycolmap.Track([pycolmap.TrackElement(int(t) + 1, int(j)) for t in frames])
        ids[j] = colmap.add_point3D(rec.static_points[p].astype(np.float64), track)
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
    config = pycolmap.BundleAdjustmentConfig()
    for t in np.flatnonzero(observed):
        config.add_image(int(t) + 1)
    if constant_points is None:
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    else:  # fixed structure fixes the gauge; cameras are resected against it
        for i in constant_points:
            config.add_constant_point(int(i))
    return pycolmap.create_default_bundle_adjuster(options, config, colmap).solve()


def bundle_adjust(rec: Reconstruction, *, gamma_threshold: float = 0.008, max_initial_error_px: float = 10.0,
                  refine_focal: bool = False, loss: str = "cauchy", loss_scale_px: float = 1.0,
                  max_iterations: int = 100, static_mask: np.ndarray | None = None) -> tuple[Reconstruction, BAReport]:
    """Refine every camera pose and the static points of ``rec`` (and one shared focal when ``refine_focal``).

    Static points: ``static_points[p]`` with ``motion_level[p] < gamma_threshold`` (γ in normalised image units), or
    where ``static_mask`` (P,) is True when given.
    Observations: visible ``tracks`` whose reprojection through the initial camera is < ``max_initial_error_px``;
    points left with fewer than two are dropped. ``loss`` ∈ trivial/huber/soft_l1/cauchy, scale in pixels; when the
    initial RMS exceeds twice that scale a first solve runs at the initial RMS, then one at ``loss_scale_px``.
    With ``refine_focal`` all frames share one SIMPLE_PINHOLE camera (f refined, principal point fixed at the
    mean); otherwise each frame keeps its own fixed K.

    Returns the new reconstruction and its report. Refined static points replace ``static_points[p]`` and
    ``points[:, p]``; every other point keeps its depth and pixel position in every frame
    (X_cam ← K_new⁻¹·K_old·X_cam, i.e. the camera-frame position when K is unchanged). ``bases`` and
    ``coefficients`` are left as they were: after BA ``points`` is authoritative (``meta`` says so).
    Frames with fewer than ``MIN_FRAME_OBSERVATIONS`` kept observations stay fixed. Fewer than ``MIN_FRAMES``
    observing frames or ``MIN_POINTS`` usable points, or a solve that ends with a higher median error, a non-finite
    RMS or one over ``DIVERGED_RMS_RATIO`` × the initial: ``rec`` unchanged, ``skipped`` says why.
    Raises ValueError on bad arguments.
    """
    if loss not in _LOSSES:
        raise ValueError(f"bundle_adjust: loss must be one of {_LOSSES}, got {loss!r}")
    if not (gamma_threshold > 0 and max_initial_error_px > 0 and loss_scale_px > 0 and max_iterations >= 1):
        raise ValueError("bundle_adjust: gamma_threshold, max_initial_error_px, loss_scale_px must be > 0 "
                         "and max_iterations ≥ 1")
    start = time.perf_counter()
    rotation_only = rotation_only_cameras(rec)
    if rotation_only is not None:
        rec = _with_cameras(rec, rotation_only)
    points, obs, n_observations = _select(rec, gamma_threshold, max_initial_error_px, static_mask)
    tracks = rec.tracks[:, points].astype(np.float64)
    xyz0 = rec.static_points[points].astype(np.float64)
    initial_rms, initial_median = _errors(xyz0, rec.world_to_camera, rec.intrinsics, tracks, obs)
    report = BAReport(initial_rms, initial_rms, len(points), n_observations, int(obs.sum()), 0.0,
                      refined_focal=False, n_frames=int(obs.any(1).sum()), initial_median_px=initial_median,
                      final_median_px=initial_median)
    problem = None
    report.rotation_only = rotation_only is not None
    if report.rotation_only:
        problem = ("rotation-only camera (track homographies explain the frames): centres set to frame 0's, "
                   "rotations from the homographies; no Ceres solve, as depth and position have no parallax to go on")
    elif report.n_frames < MIN_FRAMES:
        problem = f"skipped: {report.n_frames} frames observe static points, need ≥ {MIN_FRAMES}"
    elif len(points) < MIN_POINTS:
        problem = f"skipped: {len(points)} usable static points, need ≥ {MIN_POINTS}"
    if problem:
        report.skipped, report.seconds = problem, time.perf_counter() - start
        return dataclasses.replace(rec, meta={**rec.meta, "bundle_adjustment": report.to_dict()}), report

    if refine_focal and len(points) < MIN_FOCAL_POINTS:
        refine_focal = False
        report.notes.append(f"focal kept: {len(points)} static points, need ≥ {MIN_FOCAL_POINTS} to refine it")
    observing = obs.any(1)
    centres = invert_rigid(rec.world_to_camera[observing])[:, :3, 3]
    typical0 = float(np.median(transform_points(rec.world_to_camera, xyz0)[..., 2][obs]))
    baseline = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) / typical0
    fixed_structure = report.fixed_structure = baseline < SMALL_BASELINE
    if fixed_structure:
        report.notes.append(f"static points held fixed: camera baseline {baseline:.3g} × depth < {SMALL_BASELINE}")
    colmap, ids = _colmap_problem(rec, points, obs, shared_camera=refine_focal)
    # A robust loss far narrower than the initial errors stalls (e.g. Cauchy 1 px vs a 10 % focal error):
    # solve first at the initial RMS, then at the requested scale.
    scales = [initial_rms, loss_scale_px] if loss != "trivial" and initial_rms > 2 * loss_scale_px else [loss_scale_px]
    for scale in scales:
        summary = _solve(colmap, observing, refine_focal, loss, scale, max_iterations,
                         ids if fixed_structure else None)
        ceres = getattr(summary, "ceres_summary", None)
        report.iterations += 0 if ceres is None else ceres.num_successful_steps + ceres.num_unsuccessful_steps

    w2c = np.tile(np.eye(4), (rec.n_frames, 1, 1))
    for t in range(rec.n_frames):
        w2c[t, :3] = colmap.image(t + 1).cam_from_world().matrix()
    c2w = invert_rigid(w2c)
    intrinsics = rec.intrinsics.copy()
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
        point_depth[:, runaway] = transform_points(w2c, xyz0[runaway])[..., 2]
        report.notes.append(f"{int(runaway.sum())} static points ran off (behind a camera or beyond "
                            f"{MAX_DEPTH_RATIO:g}× the typical depth) and keep their initial position")

    # Keep every frame's depth and pixel position of the other points: X_cam ← K_new⁻¹ K_old X_cam.
    new_points = reexpress(rec, w2c, np.linalg.inv(intrinsics) @ rec.intrinsics)
    new_points[:, points] = xyz[None]
    depth = rec.depth.copy()
    depth[:, points] = point_depth
    static = rec.static_points.copy()
    static[points] = xyz

    report.final_rms_px, report.final_median_px = _errors(xyz, w2c, intrinsics, tracks, obs)
    report.termination = str(summary.termination_type).split(".")[-1]
    report.seconds = time.perf_counter() - start
    f0 = float(np.mean(rec.intrinsics[:, [0, 1], [0, 1]]))
    if refine_focal and not 1 / MAX_FOCAL_CHANGE <= report.focal_px / f0 <= MAX_FOCAL_CHANGE:
        report.skipped = (f"rejected: the focal ran from {f0:.4g} to {report.focal_px:.4g} px; the reconstruction "
                          f"is returned unchanged")
        return dataclasses.replace(rec, meta={**rec.meta, "bundle_adjustment": report.to_dict()}), report
    if not 1 / MAX_SCALE_CHANGE <= typical / typical0 <= MAX_SCALE_CHANGE:
        report.skipped = (f"rejected: the solve ran off (typical static depth {typical0:.3g} → {typical:.3g}); the "
                          f"reconstruction is returned unchanged")
        return dataclasses.replace(rec, meta={**rec.meta, "bundle_adjustment": report.to_dict()}), report
    # The robust loss may trade a slightly higher RMS for fitting the inliers better; the median must not rise.
    if (not np.isfinite(report.final_rms_px) or report.final_median_px > report.initial_median_px
            or report.final_rms_px > DIVERGED_RMS_RATIO * report.initial_rms_px):
        report.skipped = (f"rejected: the solve diverged (RMS {report.initial_rms_px:.3g} → {report.final_rms_px:.3g}"
                          f" px, median {report.initial_median_px:.3g} → {report.final_median_px:.3g} px, "
                          f"{report.termination}); the reconstruction is returned unchanged")
        return dataclasses.replace(rec, meta={**rec.meta, "bundle_adjustment": report.to_dict()}), report
    meta = {**rec.meta, "bundle_adjustment": {**report.to_dict(), "authoritative": "points (bases not adjusted)"}}
    out = dataclasses.replace(rec, camera_to_world=c2w, world_to_camera=w2c, intrinsics=intrinsics,
                              points=new_points, static_points=static, depth=depth, meta=meta)
    return out, report
