"""The camera stage: one solve over the whole clip — or, for a long clip of short-lived tracks (:func:`in_pieces`),
one per overlapping piece, joined and adjusted once over the clip (:func:`_solve_in_pieces`, :mod:`.pieces`).

1. Motion model (:func:`~.motion_model.select_motion_model`): general, rotation-only, or segments of both.
2. A clip that only rotates (a tripod, a fixed camera): rotations from the tracks (rays of each frame fitted to an
   earlier frame's by RANSAC, chained to the earliest frame that shares enough tracks); the centre stays where the
   network put frame 0. No parallax: nothing to adjust, static depth is unobservable. A guessed focal is measured
   from the rotations where they tell it (:func:`_with_measured_focal`).
3. Otherwise the seeds compete — found and judged on the longest tracks until every frame sees
   ``SEED_TRACKS_PER_FRAME`` (long clips carry long tracks: 5× the observations for 3× the frames; this keeps the
   stage linear in frames) — the network's cameras, cameras from the tracks alone grown from each of a few
   initial pairs inside general-motion segments (:func:`~.track_sfm.cameras_from_tracks`) and the rotation-only
   cameras of 2. — by one residual test: the number of tracks that fit a static point (or, for the rotation, a static
   direction) within ``SEED_PX`` (:func:`~.motion.track_residuals`). The best general seed wins (ties: the
   network; an initial pair whose essential matrix locked onto a moving object explains fewer tracks) — unless
   another seed explains other tracks that surround its tracks in the image (:func:`_world`: a pet or a person
   close to the camera holds most of the tracks; the world is the scene around it, out to the image border); the
   rotation wins over it when it explains ≥ ``ROTATION_PREFERENCE`` × as many tracks with fewer degrees of freedom —
   a pan whose little parallax let the essential matrix lock onto a moving object.
4. With ``adjust``: the residual test is taken after adjusting the ``SHORTLIST`` best seeds (measured: a seed
   fitting 85 tracks adjusted to 414 and 0.3 % ATE, one fitting 250 to 319 and 8 %; letting a seed that fits 60 %
   of the tracks skip the test cost a tripod-then-walk clip 0.04 → 0.37 % ATE), and the world of :func:`_world`
   when the count leaves it out. Each is one bundle adjustment
   (:func:`~.bundle_adjust.bundle_adjust`) over every frame and the static tracks of the motion stage's score
   (:func:`~.motion.motion_levels`) under the seed — the longest, until every frame sees ``BA_TRACKS_PER_FRAME``
   within the gate — with one focal for the clip when the intrinsics are unknown; frames the seed left without
   static points near their tracks are resected against them first. The chosen cameras are finished by one more
   adjustment on ``FINAL_TRACKS_PER_FRAME`` (from a poor seed, the first adjustment brings more tracks within the
   gate: a 150-frame orbit went 0.61 → 0.09 % ATE against adjusting once on as many). With a guessed focal, of
   adjusted seeds within ``FOCAL_TIE`` of the best count one whose adjustment could refine the focal wins
   (:func:`_most_fitting`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..contracts import Cameras
from .bundle_adjust import MIN_FRAME_OBSERVATIONS, BAReport, bundle_adjust
from .motion import motion_levels, static_fit, track_residuals
from .motion_model import MIN_SHARED, MotionModel, Segment, fit_rotation, rotation_focal, select_motion_model
from .pieces import joining_similarity, piece_spans
from .track_sfm import cameras_from_tracks, enclosed
from .transforms import Sim3, transform_points
from .triangulation import reprojection_errors, triangulate

__all__ = ["CameraSolution", "solve_cameras", "rotation_cameras", "CAMERA_INITS"]

SEED_PX = 3.0               # a track fits a seed: its static-fit residual is below this
ROTATION_PREFERENCE = 0.9   # the rotation-only seed wins when it fits ≥ this × the best general seed's tracks
MIN_FITTING = 1             # … and at least this many (no seed fitting anything is no evidence of a tripod)
BA_TRACKS_PER_FRAME = 100   # a seed's adjustment keeps static tracks until every frame sees this many
FINAL_TRACKS_PER_FRAME = 400  # the chosen seed's, once more from its adjusted cameras (150 frames: ATE 0.14 → 0.05 %)
MAX_INITIAL_ERROR_PX = 10.0  # the adjustment's gate on observations at the start
SHORTLIST = 3               # with adjustment: the seeds fitting most tracks (and ≥ SHORTLIST_SHARE × the best) are
SHORTLIST_SHARE = 0.25      # each adjusted, and the residual test is taken on the adjusted cameras
SEED_ITERATIONS = 20        # Ceres iterations of a seed's adjustment (it ranks seeds; the chosen one is finished)
SEED_TRACKS_PER_FRAME = 400  # seeds are grown, adjusted and judged on the longest tracks until every frame sees this
SURROUND_MARGIN = 0.5       # a seed whose static tracks surround the most-fitting seed's by this margin is the world
MAX_SHARED_FIT = 0.5        # … when the two explain different tracks (share of the smaller set explained by both)
SURROUND_FRAMES = 12        # frames the surround test looks at
MIN_WORLD_COVERAGE = 0.8    # … and a surrounding seed must have posed this share of the frames itself
FOCAL_TIE = 0.05            # seeds within this share of the best count: one whose adjustment refined the focal wins
LONG_CLIP_FRAMES = 200      # a clip this long has its cameras solved in pieces (:func:`_solve_in_pieces`) …
PIECE_TRACK_LIFE = 75       # … when its tracks live fewer frames than this (observations per track): the
#   chain of tracks across it is long. A slow take's tracks live long (600 frames: 106 on average; long takes at the
#   50-frame clip's speed: 37–48) — one growth chains it well, and its pieces see too little parallax
#   (slow orbit 600 in pieces: ATE 0.28 → 0.37 %, depth AbsRel 0.22 → 0.28)
JOIN_TRACKS_PER_FRAME = 200  # the joined pieces' one adjustment over the clip
PIECE_ITERATIONS = 10       # a piece's finishing adjustment and the joined clip's stop after this many iterations: the
                            # joined cameras start close, and the steps after ten (conjugate-gradient steps that
                            # lengthen with the chain) left ATE and rms as they were at twice the time (600 frames)

CAMERA_INITS = ("auto", "network")
"""auto: the network's cameras or the tracks', by the residual test; network: the network's only."""


@dataclass
class CameraSolution:
    """cameras · model: the motion model · source: "network", "tracks i: r-j" (the i-th growth, from the
    initial pair r, j), "rotation" (rotation-only clip) or "pieces" (a long clip) · seeds: tracks that fit as static
    under each seed tried · ba: the bundle adjustment's report (None: not run) · notes: what the verdict should say
    about the choice (a close mover) · pieces: a long clip's pieces (frames, source, scale, …)."""

    cameras: Cameras
    model: MotionModel
    source: str
    seeds: dict
    ba: BAReport | None = None
    notes: list[str] = field(default_factory=list)
    pieces: list[dict] = field(default_factory=list)

    @property
    def rotation_only(self) -> bool:
        return self.model.kind == "rotation"

    def to_meta(self) -> dict:
        return {"model": self.model.kind, "motion_model": self.model.to_dict(), "source": self.source,
                "seed_static_tracks": self.seeds, "notes": self.notes, "pieces": self.pieces,
                "bundle_adjustment": None if self.ba is None else self.ba.to_dict()}


def rotation_cameras(tracks: np.ndarray, visible: np.ndarray, intrinsics: np.ndarray,
                     first: np.ndarray) -> np.ndarray:
    """(N, 4, 4) world-to-camera poses of a camera that only rotates, all with frame 0's centre.

    Frame t's rotation relative to a reference r — the earliest solved frame sharing ≥ ``MIN_SHARED`` tracks with it,
    else the nearest earlier one — comes from :func:`~.motion_model.fit_rotation`. first: (4, 4) pose of frame 0."""
    n = tracks.shape[0]
    rotations = np.empty((n, 3, 3))
    rotations[0] = first[:3, :3]
    for t in range(1, n):
        shared = (visible[:t] & visible[t]).sum(1)
        enough = np.flatnonzero(shared >= MIN_SHARED)
        r = int(enough[0]) if enough.size else int(np.argmax(shared))
        both = visible[r] & visible[t]
        if both.sum() < 3:
            rotations[t] = rotations[t - 1]
            continue
        relative, _ = fit_rotation(tracks[r, both].astype(np.float64), tracks[t, both].astype(np.float64),
                                   intrinsics[r], intrinsics[t], seed=t)
        rotations[t] = relative @ rotations[r]
    centre = -first[:3, :3].T @ first[:3, 3]
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, :3, :3] = rotations
    w2c[:, :3, 3] = -rotations @ centre
    return w2c


FOCAL_PAIRS = 8             # frame pairs a rotating camera's focal is measured on


def _with_measured_focal(tracks: np.ndarray, visible: np.ndarray, rotation: Cameras, first: np.ndarray) -> Cameras:
    """A camera that only rotates (:func:`rotation_cameras` under a guessed focal) again under the focal its
    rotations tell (:func:`~.motion_model.rotation_focal`, on frames against the earliest frame each shares
    ``MIN_SHARED`` tracks with — the references :func:`rotation_cameras` chains to; a pan guessed at 560 px against a
    true 613 px turned 3.3° wrong); unchanged when they do not tell it (a tripod, a small rotation)."""
    k, r_world = rotation.intrinsics, rotation.world_to_camera[:, :3, :3]
    pairs = []
    for t in np.unique(np.linspace(1, len(tracks) - 1, FOCAL_PAIRS).round().astype(int)):
        shared = np.flatnonzero((visible[:t] & visible[t]).sum(1) >= MIN_SHARED)
        if shared.size:
            r = int(shared[0])
            both = visible[r] & visible[t]
            pairs.append((tracks[r, both].astype(np.float64), tracks[t, both].astype(np.float64),
                          r_world[t] @ r_world[r].T))
    focal = rotation_focal(pairs, k[0])
    if focal is None:
        return rotation
    k = k.copy()
    k[:, 0, 0] = k[:, 1, 1] = focal
    return Cameras(rotation_cameras(tracks, visible, k, first), k)


def _fitting_tracks(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, rotation_only: bool) -> np.ndarray:
    """(P,) bool: tracks whose static fit under ``cameras`` (one linear triangulation, or a mean direction) has a
    residual below ``SEED_PX``."""
    if rotation_only:
        _, errors = static_fit(tracks, visible, cameras, rotation_only=True)
    else:
        points = triangulate(tracks, visible, cameras.world_to_camera, cameras.intrinsics)
        errors = reprojection_errors(points, tracks.astype(np.float64), cameras.world_to_camera, cameras.intrinsics,
                                    visible)
    return track_residuals(errors, visible) < SEED_PX


def _inside_share(tracks: np.ndarray, visible: np.ndarray, outer: np.ndarray, inner: np.ndarray) -> float:
    """Share of the ``inner`` (P,) tracks' entries that lie inside the convex hull of the ``outer`` tracks' entries
    of the same frame (:func:`~.track_sfm.enclosed`), over ``SURROUND_FRAMES`` frames spread over the clip (frames
    with < 3 of either skipped)."""
    inside = total = 0
    for f in np.unique(np.linspace(0, len(tracks) - 1, SURROUND_FRAMES).astype(int)):
        hull, points = tracks[f, visible[f] & outer], tracks[f, visible[f] & inner]
        if len(hull) >= 3 and len(points) >= 3:
            inside += int(enclosed(hull, points).sum())
            total += len(points)
    return inside / total if total else 0.0


def _most_fitting(names: list[str], counts: dict[str, int], reports: dict[str, BAReport], refine_focal: bool) -> str:
    """The seed fitting most tracks (ties: the network). With a guessed focal, a seed whose adjustment could refine
    it wins over one within ``FOCAL_TIE`` of the best count whose adjustment held the structure fixed: the focal
    stays at the guess there, the static points having been triangulated under it (a low-parallax pan: 560 px kept
    against a true 604, rotation error 2.7°; the seed whose adjustment moved the focal reached 606 px and 1.0°)."""
    best = max(counts[name] for name in names)

    def rank(name: str) -> tuple:
        report = reports.get(name)
        free = refine_focal and report is not None and not report.skipped and not report.fixed_structure
        return counts[name] >= (1 - FOCAL_TIE) * best and free, counts[name], name == "network"

    return max(names, key=rank)


def _world(fits: dict[str, np.ndarray], best: str, candidates: list[str], tracks: np.ndarray,
           visible: np.ndarray, coverage: dict[str, float]) -> tuple[str, str | None]:
    """The seed whose static tracks are the world, and a note for the verdict (None: nothing to say): ``best`` (the
    most-fitting), unless a candidate explaining other tracks (``MAX_SHARED_FIT``) surrounds it — the candidate's
    tracks enclose ``best``'s in the image far more than the reverse (``SURROUND_MARGIN``): a large mover close to the
    camera, filling the middle of the frame, holds most of the tracks, and the scene around it and at the image
    border is the world. A surrounding candidate posed in under ``MIN_WORLD_COVERAGE`` of the frames (``coverage``)
    is noted, not chosen: half a clip's cameras are worse than a mover's."""
    chosen, margin, note = best, SURROUND_MARGIN, None
    for name in candidates:
        a, b = fits[name], fits[best]
        if name == best or not a.any() or (a & b).sum() > MAX_SHARED_FIT * min(a.sum(), b.sum()):
            continue
        surround = _inside_share(tracks, visible, a, b) - _inside_share(tracks, visible, b, a)
        if surround < margin:
            continue
        if coverage.get(name, 1.0) < MIN_WORLD_COVERAGE:
            note = (f"the {int(b.sum())} tracks the cameras rest on are surrounded in the image by {int(a.sum())} that "
                    f"move otherwise, which could not be followed through the clip: the cameras may follow a close "
                    f"mover")
            continue
        chosen, margin = name, surround
        note = (f"the scene around a close mover was taken for the world ({int(a.sum())} tracks surround the "
                f"{int(b.sum())} of the motion most tracks share)")
    return chosen, note


def _spread_subset(static: np.ndarray, visible: np.ndarray, per_frame: int) -> np.ndarray:
    """(P,) bool: the static tracks the bundle adjustment uses — the longest first, each kept while a frame it is
    seen in (``visible``: seen within the adjustment's gate) has fewer than ``per_frame``. Cameras need no more; every static track is triangulated under
    the adjusted cameras afterwards (the motion and points stages), and the solve stays about linear in frames."""
    chosen = np.zeros_like(static)
    count = np.zeros(visible.shape[0], int)
    for p in sorted(np.flatnonzero(static), key=lambda p: -visible[:, p].sum()):
        frames = visible[:, p]
        if (count[frames] < per_frame).any():
            chosen[p] = True
            count[frames] += 1
    return chosen


def _resect_lost_frames(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, points: np.ndarray,
                        static: np.ndarray) -> Cameras:
    """Frames where fewer than ``MIN_FRAME_OBSERVATIONS`` static points reproject within the adjustment's gate (a
    frame the seed could not pose and copied from a neighbour) posed afresh by RANSAC PnP against the static
    points, so the adjustment can take them in."""
    w2c = cameras.world_to_camera.copy()
    errors = reprojection_errors(np.nan_to_num(points), tracks.astype(np.float64), w2c, cameras.intrinsics, visible)
    usable = static & np.isfinite(points).all(1)
    within = (visible & usable[None] & (errors < MAX_INITIAL_ERROR_PX)).sum(1)
    for f in np.flatnonzero(within < MIN_FRAME_OBSERVATIONS):
        seen = np.flatnonzero(visible[f] & usable)
        if seen.size < 12:
            continue
        ok, rvec, tvec, inliers = cv2.solvePnPRansac(points[seen], tracks[f, seen].astype(np.float64),
                                                     cameras.intrinsics[f], None, reprojectionError=3.0,
                                                     iterationsCount=200)
        if ok and inliers is not None and len(inliers) >= 12:
            w2c[f, :3, :3], w2c[f, :3, 3] = cv2.Rodrigues(rvec)[0], tvec[:, 0]
    return Cameras(w2c, cameras.intrinsics)


def solve_cameras(tracks: np.ndarray, visible: np.ndarray, network: Cameras, network_gamma: np.ndarray | None, *,
                  adjust: bool, refine_focal: bool, camera_init: str = "auto",
                  static_gamma: float | None = None, finish_iterations: int = 100) -> CameraSolution:
    """The clip's cameras (module docstring).

    tracks (N, P, 2) px · visible (N, P) bool · network: the network's cameras, with the clip's (known or guessed)
    intrinsics · network_gamma (P,): its motion levels (fill in where geometry says little when choosing the static
    set) · adjust: run the bundle adjustment · refine_focal: the intrinsics are a guess · camera_init: CAMERA_INITS ·
    finish_iterations: of the chosen seed's finishing adjustment (a piece's: ``PIECE_ITERATIONS``)."""
    if camera_init not in CAMERA_INITS:
        raise ValueError(f"camera_init must be one of {CAMERA_INITS}, got {camera_init!r}")
    k = network.intrinsics
    # the seeds are found and judged on a subset of the tracks that every frame sees enough of: the cost stays
    # linear in frames when long clips carry long tracks (a 150-frame orbit: 5× the observations of 50 frames)
    core = _spread_subset(np.ones(tracks.shape[1], bool), visible, SEED_TRACKS_PER_FRAME)
    tracks_c, visible_c = tracks[:, core], visible[:, core]
    gamma_c = None if network_gamma is None else network_gamma[core]
    model = select_motion_model(tracks_c, visible_c, k)
    pieces = model.kind != "rotation" and in_pieces(visible)
    if pieces:             # the clip's rotation-only cameras are needed only when every piece only rotates
        solution = _solve_in_pieces(tracks, visible, network, network_gamma, model, adjust=adjust,
                                    refine_focal=refine_focal, camera_init=camera_init, static_gamma=static_gamma)
        if solution is not None:
            return solution
    rotation = Cameras(rotation_cameras(tracks_c, visible_c, k, network.world_to_camera[0]), k)
    if refine_focal:
        rotation = _with_measured_focal(tracks_c, visible_c, rotation, network.world_to_camera[0])
    if model.kind == "rotation":
        return CameraSolution(rotation, model, "rotation", {})
    if pieces:
        return _rotation_solution(rotation, model, {})
    seeds = {"network": network}
    coverage: dict[str, float] = {}            # share of frames a track seed posed itself
    if camera_init == "auto":
        for i, ((r, j), w2c, posed) in enumerate(cameras_from_tracks(tracks_c, visible_c, k,
                                                                      allowed=~model.rotation_frames())):
            seeds[f"tracks {i}: {r}-{j}"] = Cameras(w2c, k)
            coverage[f"tracks {i}: {r}-{j}"] = float(posed.mean())
    fits = {name: _fitting_tracks(tracks_c, visible_c, cams, False) for name, cams in seeds.items()}
    counts = {name: int(fit.sum()) for name, fit in fits.items()}
    reports: dict[str, BAReport] = {}
    if adjust:  # a weak seed can adjust into the right cameras (and a strong-looking one into a wrong minimum)
        best = max(counts.values())
        ranked = sorted((name for name in seeds if counts[name] >= SHORTLIST_SHARE * best and counts[name] > 0),
                        key=lambda name: -counts[name])
        shortlist = ranked[:SHORTLIST]
        world = _world(fits, ranked[0], ranked, tracks_c, visible_c, coverage)[0] if ranked else None
        if world is not None and world not in shortlist:       # a world outvoted by a close mover is adjusted too
            shortlist.append(world)
        mover = fits[ranked[0]] if world is not None and world != ranked[0] else None
        for name in shortlist:
            seeds[name], reports[name] = _adjust(tracks_c, visible_c, seeds[name], gamma_c, static_gamma,
                                                 refine_focal, max_iterations=SEED_ITERATIONS,
                                                 exclude=mover if name == world else None)
            fits[name] = _fitting_tracks(tracks_c, visible_c, seeds[name], False)
            counts[name] = int(fits[name].sum())
    judged = list(reports or seeds)            # with adjustment, only adjusted seeds (else one could skip it)
    most = _most_fitting(judged, counts, reports, refine_focal)
    source, note = _world(fits, most, [name for name in judged if counts[name] >= SHORTLIST_SHARE * counts[most]],
                          tracks_c, visible_c, coverage)
    counts["rotation"] = int(_fitting_tracks(tracks_c, visible_c, rotation, True).sum())
    if counts["rotation"] >= max(ROTATION_PREFERENCE * counts[source], MIN_FITTING):
        return _rotation_solution(rotation, model, counts)
    report = reports.get(source)
    if report is not None and not report.skipped:  # the chosen cameras, finished on more static tracks
        mover = None if source == most else _fitting_tracks(tracks, visible, seeds[most], False)
        cameras, final = _adjust(tracks, visible, seeds[source], network_gamma, static_gamma, refine_focal,
                                 FINAL_TRACKS_PER_FRAME, finish_iterations, exclude=mover)
        if not final.skipped:
            seeds[source], report = cameras, final
    return CameraSolution(seeds[source], model, source, counts, report, [note] if note else [])


def _adjust(tracks: np.ndarray, visible: np.ndarray, seed: Cameras, network_gamma: np.ndarray | None,
            static_gamma: float | None, refine_focal: bool,
            per_frame: int = BA_TRACKS_PER_FRAME, max_iterations: int = 100,
            exclude: np.ndarray | None = None) -> tuple[Cameras, BAReport]:
    """One bundle adjustment from ``seed``: the motion stage's static set under it (less the ``exclude`` (P,)
    tracks: those of the close mover a surrounding world was chosen over), lost frames resected, the longest static
    tracks until every frame sees ``per_frame`` within the gate."""
    points, errors = static_fit(tracks, visible, seed, rotation_only=False)
    focal = float(np.mean(seed.intrinsics[:, [0, 1], [0, 1]]))
    static = motion_levels(errors, visible, focal, network_gamma, static_gamma).static
    if exclude is not None:
        static &= ~exclude
    start = _resect_lost_frames(tracks, visible, seed, points, static)
    near = reprojection_errors(np.nan_to_num(points), tracks.astype(np.float64), start.world_to_camera,
                               start.intrinsics, visible) < MAX_INITIAL_ERROR_PX
    static = _spread_subset(static & np.isfinite(points).all(1), visible & near, per_frame)
    cameras, _, report = bundle_adjust(tracks, visible, start, points, static, refine_focal=refine_focal,
                                       max_initial_error_px=MAX_INITIAL_ERROR_PX, max_iterations=max_iterations)
    return cameras, report


def _rotation_solution(rotation: Cameras, model: MotionModel, counts: dict) -> CameraSolution:
    """The rotation-only cameras as the clip's, its motion model one rotation segment (``model``'s voting pairs)."""
    whole = MotionModel("rotation", [Segment(0, rotation.n_frames, "rotation")], model.pairs)
    return CameraSolution(rotation, whole, "rotation", counts)


def in_pieces(visible: np.ndarray) -> bool:
    """Whether a clip's (N, P) ``visible`` tracks have their cameras solved in pieces: ≥ ``LONG_CLIP_FRAMES`` frames
    and tracks (seen twice or more) living fewer than ``PIECE_TRACK_LIFE`` frames on average."""
    seen_twice = visible.sum(0) >= 2
    life = visible[:, seen_twice].sum() / max(int(seen_twice.sum()), 1)
    return visible.shape[0] >= LONG_CLIP_FRAMES and life < PIECE_TRACK_LIFE


def _solve_in_pieces(tracks: np.ndarray, visible: np.ndarray, network: Cameras, network_gamma: np.ndarray | None,
                     model: MotionModel, *, adjust: bool, refine_focal: bool, camera_init: str,
                     static_gamma: float | None) -> CameraSolution | None:
    """A long clip's cameras (:mod:`.pieces`): each piece solved as a short clip (:func:`solve_cameras`, on the tracks
    it sees twice), joined to the clip in turn (:func:`~.pieces.joining_similarity`, on its overlap frames and the
    static points both placed; the overlap's second half takes the new piece's cameras), then with ``adjust`` one
    bundle adjustment over the clip on ``JOIN_TRACKS_PER_FRAME`` static tracks a frame (pieces and clip adjusted
    ``PIECE_ITERATIONS`` iterations at most). None when every piece only rotates (the caller's rotation-only cameras
    are the clip's)."""
    n, p = visible.shape
    w2c, k = np.tile(np.eye(4), (n, 1, 1)), network.intrinsics.copy()
    clip_points = np.full((p, 3), np.nan)   # each track's static point in the clip's world, from its latest piece
    typical = None                          # the clip's typical static depth, from the latest piece with parallax
    pieces, notes, end_before = [], [], 0
    for start, end in piece_spans(n):
        frames = slice(start, end)
        tracked = np.flatnonzero(visible[frames].sum(0) >= 2)
        sub_tracks, sub_visible = tracks[frames][:, tracked], visible[frames][:, tracked]
        piece = solve_cameras(sub_tracks, sub_visible, network.subset(frames),
                              None if network_gamma is None else network_gamma[tracked], adjust=adjust,
                              refine_focal=refine_focal, camera_init=camera_init, static_gamma=static_gamma,
                              finish_iterations=PIECE_ITERATIONS)
        piece_w2c = piece.cameras.world_to_camera
        points, errors = static_fit(sub_tracks, sub_visible, piece.cameras, piece.rotation_only)
        static = (track_residuals(errors, sub_visible) < SEED_PX) & (not piece.rotation_only)
        depth = np.where(sub_visible & static, transform_points(piece_w2c, np.nan_to_num(points))[..., 2], np.nan)
        piece_typical = float(np.nanmedian(depth)) if static.any() else float("nan")
        similarity, pairs = Sim3(1.0, np.eye(3), np.zeros(3)), 0
        if start > 0:
            overlap = np.arange(start, end_before)
            clip_depth = np.where(sub_visible[overlap - start], transform_points(
                w2c[overlap], np.nan_to_num(clip_points[tracked]))[..., 2], np.nan)
            clip_depth[:, ~np.isfinite(clip_points[tracked, 0])] = np.nan
            fallback = typical / piece_typical if typical is not None and piece_typical > 0 else 1.0
            similarity, pairs = joining_similarity(w2c[overlap], piece_w2c[overlap - start], clip_depth,
                                                   depth[overlap - start], fallback)
        take = (start + end_before) // 2            # the overlap's second half is this piece's
        w2c[take:end] = similarity.world_to_camera(piece_w2c[take - start:])
        k[take:end] = piece.cameras.intrinsics[take - start:]
        clip_points[tracked[static]] = similarity.points(points[static])
        if piece_typical > 0:
            typical = similarity.scale * piece_typical
        end_before = end
        notes += [note for note in piece.notes if note not in notes]
        pieces.append({"frames": [start, end], "source": piece.source, "model": piece.model.kind,
                       "scale": similarity.scale, "scale_pairs": pairs, "seed_static_tracks": piece.seeds,
                       "ba_final_rms_px": None if piece.ba is None else piece.ba.final_rms_px})
    if all(piece["model"] == "rotation" for piece in pieces):
        return None
    cameras, report = Cameras(w2c, k), None
    if adjust:
        adjusted, report = _adjust(tracks, visible, cameras, network_gamma, static_gamma, refine_focal,
                                   JOIN_TRACKS_PER_FRAME, PIECE_ITERATIONS)
        cameras = cameras if report.skipped else adjusted
    return CameraSolution(cameras, model, "pieces", {}, report, notes, pieces)
