"""Motion levels from geometry: how badly each track fits a static point under the solved cameras.

A static track, placed by triangulation (general motion) or as a direction (a camera that only rotates), reprojects
within the tracker's noise in every frame that sees it; a track on something that moves does not. Each track's
residual — the ``RESIDUAL_QUANTILE`` of its reprojection errors over the frames that see it, robust to a few
outlying entries — is compared with the clip's noise level (the robust spread of the residuals of the better-fitting
half of the tracks, or of the best quarter when a close mover holds most of them). Where geometry says little (a
track seen in few frames) the network's γ fills in, as far as it agrees with geometry on the tracks geometry is sure
of.

γ (the reconstruction's ``motion_level``): the residual in normalised image units (px / focal), fused with the network's γ
(rank-matched to that scale) by each track's confidence. A static track's γ is about the noise level over the focal
(≈ 0.001 for LK tracks at 640 px); tracks with γ below ``STATIC_SIGMAS`` × that are the *static set* — the tracks
geometry is built on: bundle adjustment, the ground plane, the static depth around the movers.

Every track then gets one of three states (:func:`motion_states`): *static* (still: its residual is below a threshold
that adapts to the clip — ``STATIC_SIGMAS`` × the noise level, or ``STATIC_SPREAD`` × the residual of the
best-fitting quarter of the tracks when the clip's static tracks drift more than its noise, as LK does on real
textures and blur: measured on rendered clips, 8–13 % of well-tracked static tracks passed 4 × the noise level),
*moving* (fails that and shares the failure with a neighbourhood — its departures from a static scene match those of
nearby tracks that fail too: an object moving, rigidly or not) or *unreliable* (fails alone: a lost or jumping
track, glare, a reflection). Static and unreliable tracks stay at their static fit; unreliable ones are left out of
trajectories, pictures and the Gaussian seeding.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import warnings

import numpy as np

from ..contracts import Cameras
from .transforms import transform_points
from .track_pairs import nan_median, spans, spread_frames
from .triangulation import direction_errors, mean_directions, reprojection_errors, triangulate_robust

__all__ = ["MotionLevels", "static_fit", "track_residuals", "motion_levels", "motion_states", "motion_auc",
           "STATIC_SIGMAS", "STATIC", "MOVING", "UNRELIABLE", "MOTION_STATES"]

RESIDUAL_QUANTILE = 0.8   # a track's residual: this quantile of its per-frame reprojection errors
STATIC_SIGMAS = 4.0       # static: residual below this × the clip's noise level
MIN_NOISE_PX = 0.25       # the noise level never drops below this (sub-pixel trackers on a still scene)
NOISE_SPREAD = 2.0        # the noise level: at most this × that of the best-fitting quarter of the tracks
CONFIDENT_FRAMES = 10     # a track seen in this many frames is judged by geometry alone
MIN_AGREEMENT_TRACKS = 10  # sure moving and sure static tracks, each, needed to judge the network's γ
STATIC_SPREAD = 12.0      # static: residual also below this × the 25th percentile of the clip's residuals
NEIGHBOUR_RADIUS = 0.15   # of the image diagonal: tracks this near (median over shared frames) are neighbours
MIN_SHARED_FRAMES = 5     # frames two tracks must share to be compared
TIME_BUCKET = 50          # frames: tracks are compared in groups whose middle frames fall in one such span
COHERENCE = 0.7           # a neighbour moves with a track when their departures differ by < this × their size
COHERENT_NEIGHBOURS = 2   # moving: at least this many neighbours move with it …
STILL_COHERENCE = 0.2     # … and fewer than STILL_LIKENESS of its still neighbours depart within this × their size
STILL_LIKENESS = 0.3
DEPTH_MARGIN = 0.8        # a still track's static fit nearer than this × its static neighbours' nearest (or farther
MIN_DEPTH_NEIGHBOURS = 3  # than their farthest ÷ this), with at least this many of them, is no static point
STATIC, MOVING, UNRELIABLE = 0, 1, 2
MOTION_STATES = ("static", "moving", "unreliable")


@dataclass
class MotionLevels:
    """gamma (P,) γ > 0 · residual_px (P,) static-fit residual · noise_px: the clip's noise level · static (P,) bool:
    the static set · confidence (P,) in [0, 1], the weight of geometry against the network's γ · network_trust in
    [0, 1]: how well the network's γ ranks the tracks geometry is sure of (2·AUC − 1; how much it may fill in
    elsewhere) · still_px: the state decision's threshold on the residual · state: (P,) int8 three-way decision
    (:meth:`with_states`)."""

    gamma: np.ndarray
    residual_px: np.ndarray
    noise_px: float
    static: np.ndarray
    confidence: np.ndarray
    network_trust: float = 0.0
    still_px: float = 0.0
    state: np.ndarray | None = None

    def with_states(self, state: np.ndarray) -> "MotionLevels":
        """These levels with the three-way decision ``state`` (P,) int8 (:func:`motion_states`)."""
        return replace(self, state=np.asarray(state, np.int8))

    @property
    def moving(self) -> np.ndarray:
        """(P,) bool: tracks in the moving state (every track outside the static set before :meth:`with_states`)."""
        return ~self.static if self.state is None else self.state == MOVING

    @property
    def still(self) -> np.ndarray:
        """(P,) bool: residual below the decision's threshold ``still_px`` (the static state's candidates)."""
        return self.residual_px < self.still_px

    @property
    def state_counts(self) -> dict[str, int]:
        """Tracks per state, by name (empty before :meth:`with_states`)."""
        if self.state is None:
            return {}
        return {name: int((self.state == code).sum()) for code, name in enumerate(MOTION_STATES)}

    def to_meta(self) -> dict:
        return {"noise_px": self.noise_px, "static_tracks": int(self.static.sum()), "states": self.state_counts,
                "still_threshold_px": self.still_px,
                "static_sigmas": STATIC_SIGMAS, "static_spread": STATIC_SPREAD, "residual_quantile": RESIDUAL_QUANTILE,
                "geometry_weight_mean": float(self.confidence.mean()), "network_trust": self.network_trust,
                "gamma": "static-fit residual in normalised image units (px / focal), fused with the network's γ "
                         "where a track is seen in few frames; the static set below static_sigmas × noise_px / focal; "
                         "the static state: residual below still_threshold_px (the larger of static_sigmas × noise_px "
                         "and static_spread × the clip's 25th-percentile residual)"}


def motion_auc(gamma: np.ndarray, dynamic: np.ndarray) -> float:
    """How well motion levels rank moving tracks above static ones: the area under the ROC curve (Mann–Whitney U,
    tied values sharing their mean rank). gamma (P,) · dynamic (P,) bool → 1 = every mover above every static track,
    0.5 = a coin; NaN without both kinds."""
    dynamic = np.asarray(dynamic, dtype=bool)
    n1, n0 = int(dynamic.sum()), int((~dynamic).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    _, inverse, counts = np.unique(np.asarray(gamma), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]          # 1-based mean rank of each value
    return float((ranks[dynamic].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

def static_fit(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, rotation_only: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """Every track placed as static: → (points (P, 3), NaN where unplaced — unit directions when ``rotation_only`` —,
    errors (N, P) px, NaN where the track is not visible, inf behind a camera)."""
    tracks = tracks.astype(np.float64)
    if rotation_only:
        placed = mean_directions(tracks, visible, cameras.world_to_camera, cameras.intrinsics)
        errors = direction_errors(placed, tracks, cameras.world_to_camera, cameras.intrinsics)
    else:
        placed = triangulate_robust(tracks, visible, cameras.world_to_camera, cameras.intrinsics)
        errors = reprojection_errors(placed, tracks, cameras.world_to_camera, cameras.intrinsics, visible)
    return placed, np.where(visible, errors, np.nan)


def track_residuals(errors: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(N, P) errors → (P,) the ``RESIDUAL_QUANTILE`` over visible frames (nearest rank; inf for a track seen in
    fewer than two frames)."""
    ordered = np.sort(np.where(visible, np.minimum(np.nan_to_num(errors, nan=1e6), 1e6), np.inf), axis=0)
    count = visible.sum(0)
    rank = np.clip(np.round(RESIDUAL_QUANTILE * (count - 1)).astype(int), 0, None)
    out = ordered[rank, np.arange(errors.shape[1])]
    out[count < 2] = np.inf
    return out


def _noise_level(errors: np.ndarray, residual: np.ndarray) -> float:
    """Robust spread (1.4826 × median absolute error) of the entries of the better-fitting half of the tracks — at
    most ``NOISE_SPREAD`` × that of the best-fitting quarter: where a close mover holds most of the tracks, its tracks
    fill the better half (65 % of the tracks on a mover took the level from 0.5 to 6 px)."""
    finite = np.isfinite(residual)
    if not finite.any():
        return MIN_NOISE_PX
    spreads = []
    for share in (0.5, 0.25):
        entries = errors[:, finite & (residual <= np.quantile(residual[finite], share))]
        entries = entries[np.isfinite(entries)]
        spreads.append(float(1.4826 * np.median(entries)) if entries.size else MIN_NOISE_PX)
    return max(min(spreads[0], NOISE_SPREAD * spreads[1]), MIN_NOISE_PX)


def _rank_matched(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``values`` (P,) replaced by the ``reference`` quantile of their rank (keeps their order, takes its scale)."""
    ranks = np.argsort(np.argsort(values)) / max(len(values) - 1, 1)
    return np.quantile(reference, ranks)


def motion_levels(errors: np.ndarray, visible: np.ndarray, focal_px: float,
                  network_gamma: np.ndarray | None = None, static_gamma: float | None = None) -> MotionLevels:
    """γ of every track from its static-fit errors (:func:`static_fit`) (module docstring).

    errors (N, P) px · visible (N, P) bool · focal_px: the clip's focal · network_gamma (P,) or None ·
    static_gamma: tracks with γ below this are static (None: the clip's threshold, module docstring, / focal)."""
    residual = track_residuals(errors, visible)
    noise = _noise_level(errors, residual)
    threshold_px = STATIC_SIGMAS * noise if static_gamma is None else static_gamma * focal_px
    finite_residuals = residual[np.isfinite(residual)]
    spread = STATIC_SPREAD * float(np.percentile(finite_residuals, 25)) if finite_residuals.size else 0.0
    still_px = max(threshold_px, spread) if static_gamma is None else threshold_px
    confidence = np.clip((visible.sum(0) - 1) / (CONFIDENT_FRAMES - 1), 0.0, 1.0)
    confidence[~np.isfinite(residual)] = 0.0
    finite = np.isfinite(residual)
    fallback = float(np.max(residual[finite])) if finite.any() else noise
    geometric = np.maximum(np.where(finite, residual, fallback), 1e-3 * noise) / focal_px
    gamma, trust = geometric, 0.0
    if network_gamma is not None:
        network_gamma = np.asarray(network_gamma, dtype=np.float64)
        trust = _agreement(network_gamma, geometric >= threshold_px / focal_px, confidence == 1.0)
        learned = _rank_matched(network_gamma, geometric)
        weight = 1 - (1 - confidence) * trust                       # geometry's weight; the network's is the rest
        gamma = np.exp(weight * np.log(geometric) + (1 - weight) * np.log(learned))
        confidence = weight
    static = gamma < threshold_px / focal_px
    return MotionLevels(gamma, residual, noise, static, confidence, trust, still_px)


def motion_states(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, levels: MotionLevels,
                  image_size: tuple[int, int], placed: np.ndarray | None = None) -> np.ndarray:
    """The three-way decision (module docstring): (P,) int8, ``STATIC`` / ``MOVING`` / ``UNRELIABLE``.

    tracks (N, P, 2) px · visible (N, P) · cameras: the solved ones · levels: residuals and thresholds ·
    image_size (W, H) · placed (P, 3): the static fit (:func:`static_fit`; None without parallax). Still tracks (the
    static set, and residual below ``levels.still_px``) are static — unless, outside the static set, their static
    fit lies where no static point around them is (:func:`_implausible_depth`: a mover sliding along its epipolar
    lines fits a static point, at a wrong depth).
    A track's *departure* in a frame is where it is minus where its mean viewing direction projects under the
    cameras' rotations (defined for every track, moving or not; a static point's parallax is part of it, and is
    shared by its neighbours). Two tracks within ``NEIGHBOUR_RADIUS`` of the image diagonal depart alike when the
    median over shared frames of the difference of their departures is below a fraction of their typical departure.
    A track that is not still is moving when at least ``COHERENT_NEIGHBOURS`` other such tracks depart like it
    (fraction ``COHERENCE``) and fewer than ``STILL_LIKENESS`` of its still neighbours do (fraction
    ``STILL_COHERENCE``): a region whose tracks all miss the static fit by a little, as they do where the cameras
    are a little off, moves like the static scene around it, not like an object."""
    still = levels.static | levels.still
    radius = NEIGHBOUR_RADIUS * float(np.hypot(*image_size))
    band = np.flatnonzero(still & ~levels.static)
    if placed is not None and band.size:
        still[band[_implausible_depth(tracks, visible, cameras, placed, band, levels.static, radius)]] = False
    state = np.where(still, STATIC, UNRELIABLE).astype(np.int8)
    candidates = np.flatnonzero(~still)
    if candidates.size < 2:
        return state
    directions = mean_directions(tracks.astype(np.float64), visible, cameras.world_to_camera, cameras.intrinsics)
    departure = (tracks - _projected_directions(directions, cameras)).astype(np.float32)
    seen = visible & np.isfinite(departure).all(-1)
    departure = np.where(seen[..., None], departure, np.nan)
    position = np.where(seen[..., None], tracks, np.nan).astype(np.float32)
    with_movers, _ = _alike(departure, position, seen, candidates, candidates, radius, COHERENCE)
    with_still, near_still = _alike(departure, position, seen, candidates, np.flatnonzero(still), radius,
                                    STILL_COHERENCE)
    like_scene = with_still >= STILL_LIKENESS * np.maximum(near_still, 1)
    state[candidates[(with_movers >= COHERENT_NEIGHBOURS) & ~(like_scene & (near_still > 0))]] = MOVING
    return state


def _implausible_depth(tracks: np.ndarray, visible: np.ndarray, cameras: Cameras, placed: np.ndarray,
                       rows: np.ndarray, static: np.ndarray, radius: float) -> np.ndarray:
    """(R,) bool: tracks ``rows`` whose static fit ``placed`` (P, 3) is behind a camera, or in the median frame
    that sees them nearer than ``DEPTH_MARGIN`` × the nearest or farther than the farthest ÷ it of the ``static``
    set's tracks within ``radius`` px in that frame (a static point lies among the surfaces around it)."""
    z = transform_points(cameras.world_to_camera, np.nan_to_num(placed[rows]))[..., 2]          # (N, R)
    reference = np.flatnonzero(static & np.isfinite(placed).all(1))
    z_ref = transform_points(cameras.world_to_camera, placed[reference])[..., 2]                 # (N, S)
    seen_ref = visible[:, reference]
    first_ref, last_ref = spans(seen_ref)
    out = np.zeros(rows.size, bool)
    for i, p in enumerate(rows):
        frames = np.flatnonzero(visible[:, p])
        if not frames.size:
            continue
        frames = frames[spread_frames(0, frames.size)]
        if not np.isfinite(placed[p]).all() or (z[frames, i] <= 0).any():
            out[i] = np.isfinite(placed[p]).all()
            continue
        s = np.flatnonzero((first_ref <= frames[-1]) & (last_ref >= frames[0]))    # references alive meanwhile
        near = seen_ref[np.ix_(frames, s)] & (
            np.linalg.norm(tracks[np.ix_(frames, reference[s])] - tracks[frames, p][:, None], axis=-1) < radius)
        enough = near.sum(1) >= MIN_DEPTH_NEIGHBOURS
        if not enough.any():
            continue
        lo = np.where(near, z_ref[np.ix_(frames, s)], np.inf).min(1)[enough]
        hi = np.where(near, z_ref[np.ix_(frames, s)], -np.inf).max(1)[enough]
        own = z[frames, i][enough]
        ratio = np.where(own < lo, own / lo, np.maximum(own / hi, 1.0))        # 1 inside the surfaces' range
        out[i] = not DEPTH_MARGIN <= float(np.median(ratio)) <= 1.0 / DEPTH_MARGIN
    return out


def _alike(departure: np.ndarray, position: np.ndarray, seen: np.ndarray, rows: np.ndarray, cols: np.ndarray,
           radius: float, coherence: float) -> tuple[np.ndarray, np.ndarray]:
    """For each track of ``rows``: how many tracks of ``cols`` (itself excluded) within ``radius`` px depart alike
    (difference below ``coherence`` × their typical departure), and how many are within ``radius`` at all. →
    ((R,), (R,)) int. departure, position (N, P, 2) NaN where unseen · seen (N, P). Rows are taken in chunks compact
    in time (``TIME_BUCKET`` frames of their middle frame) and space, each compared, over (a bounded sample of) the
    frames its rows are seen in, with the columns seen then whose mean position is near it (cost ∝ neighbours, not
    P², and not frames × P)."""
    alike, near = np.zeros(rows.size, int), np.zeros(rows.size, int)
    if cols.size == 0:
        return alike, near
    size = np.linalg.norm(departure, axis=-1)                                            # (N, P)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                                    # unseen tracks
        mean = np.nanmean(position, axis=0)                                                # (P, 2)
    first, last = spans(seen)
    bucket = (first + last) // 2 // TIME_BUCKET
    order = np.lexsort((mean[rows, 0], np.floor(mean[rows, 1] / radius), bucket[rows]))  # time, rows of cells, x
    for chunk in np.array_split(order, max(1, rows.size // 32)):
        r = rows[chunk]
        lo, hi = np.nanmin(mean[r], 0) - 3 * radius, np.nanmax(mean[r], 0) + 3 * radius
        start, stop = int(first[r].min()), int(last[r].max()) + 1
        f = spread_frames(start, stop)
        c = cols[np.all((mean[cols] >= lo) & (mean[cols] <= hi), axis=1)
                 & (first[cols] < stop) & (last[cols] >= start)]
        if c.size == 0:
            continue
        s_f, p_f, d_f, z_f = seen[f], position[f], departure[f], size[f]
        shared = s_f[:, r, None] & s_f[:, None, c]                                         # (F, r, C)
        enough = shared.sum(0) * ((stop - start) / len(f)) >= MIN_SHARED_FRAMES
        distance = nan_median(np.linalg.norm(p_f[:, r, None] - p_f[:, None, c], axis=-1))
        gap = nan_median(np.linalg.norm(d_f[:, r, None] - d_f[:, None, c], axis=-1))
        typical = 0.5 * (nan_median(np.where(shared, z_f[:, r, None], np.nan))
                         + nan_median(np.where(shared, z_f[:, None, c], np.nan)))
        close = enough & (distance < radius) & (r[:, None] != c[None])
        alike[chunk] = (close & (gap < coherence * typical)).sum(1)
        near[chunk] = close.sum(1)
    return alike, near


def _projected_directions(directions: np.ndarray, cameras: Cameras) -> np.ndarray:
    """(N, P, 2) pixels of world directions (P, 3) under every camera's rotation (NaN behind)."""
    cam = np.einsum("nij,pj->npi", cameras.world_to_camera[:, :3, :3], directions)
    pix = np.einsum("nij,npj->npi", cameras.intrinsics, cam)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cam[..., 2:] > 1e-6, pix[..., :2] / pix[..., 2:], np.nan)


def _agreement(network_gamma: np.ndarray, moving: np.ndarray, sure: np.ndarray) -> float:
    """How far the network's γ can be trusted where geometry says little: how well it ranks the tracks geometry is
    sure of — moving (``moving``) above static — as 2·AUC − 1, clipped at 0 (measured: the shipped small network's γ
    ranks movers *below* static tracks on generated clips, AUC 0.08–0.53, so it must not fill in blindly); 0 with
    fewer than ``MIN_AGREEMENT_TRACKS`` sure tracks of either kind."""
    if min((sure & moving).sum(), (sure & ~moving).sum()) < MIN_AGREEMENT_TRACKS:
        return 0.0
    return float(max(2 * motion_auc(network_gamma[sure], moving[sure]) - 1, 0.0))
