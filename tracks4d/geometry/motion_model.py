"""Which motion the camera makes — general (it translates: parallax) or rotation-only (a tripod, a fixed camera) —
per clip and per segment, by model selection between frame pairs.

As in ORB-SLAM's H-vs-F test, two models compete on each pair of frames ``PAIR_GAP`` apart: a rotation (the
homography of a camera that only rotates, H = K_b R K_a⁻¹, 3 dof, fitted by RANSAC on viewing rays) and a fundamental
matrix (7 dof, RANSAC). With the intrinsics known, constraining H to a rotation makes the test sharp: translation
leaves most tracks unexplained by any rotation while F explains them (measured on generated clips: orbit and walk
pairs 0.00–0.06 of F's inliers explained, fixed cameras 0.73–1.00). A pair votes rotation-only when the rotation
explains ≥ ``ROTATION_SHARE`` of the tracks F explains; each frame takes the vote of the pairs that span it; runs
shorter than ``MIN_SEGMENT`` frames join their neighbour. A pair whose tracks moved less than ``MIN_MOTION_PX`` (a
slow take: 20 frames of a 600-frame orbit show no parallax a rotation would not explain) is widened — twice the
gap, while the frames still share enough tracks — and the widest pair votes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from .triangulation import bearings

__all__ = ["Segment", "MotionModel", "select_motion_model", "rotation_share", "fit_rotation", "rotation_focal"]

PAIR_GAP = 20          # frames between the two frames of a tested pair
PAIR_STEP = 5          # first frames of tested pairs
MIN_SHARED = 30        # tracks a pair must share to vote
ROTATION_PX = 1.5      # a track the rotation explains: transfer error below this (2D)
EPIPOLAR_PX = 1.2      # a track F explains: distance to its epipolar line below this (1D: χ² 3.84 vs 5.99)
ROTATION_SHARE = 0.7   # the rotation explains ≥ this share of what F explains: the pair shows no translation
MIN_SEGMENT = 10       # shorter runs of one kind join their neighbour
MIN_MOTION_PX = 20.0   # a pair voting rotation whose tracks moved less than this (median) is widened
RANSAC_ITERATIONS = 64


@dataclass
class Segment:
    """Frames [start, end) of one kind: "general" or "rotation"."""

    start: int
    end: int
    kind: str


@dataclass
class MotionModel:
    """The clip's motion: ``kind`` "general", "rotation" (only rotates or stands still) or "mixed" (segments of
    both) · segments in frame order · pairs: (first frame, second frame, rotation share) of every voting pair."""

    kind: str
    segments: list[Segment]
    pairs: list[tuple[int, int, float]] = dataclasses.field(default_factory=list)

    def rotation_frames(self) -> np.ndarray:
        """(N,) bool: frames in rotation-only segments."""
        out = np.zeros(self.segments[-1].end, bool)
        for s in self.segments:
            out[s.start:s.end] = s.kind == "rotation"
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "segments": [dataclasses.asdict(s) for s in self.segments],
                "pairs": [[a, b, round(r, 3)] for a, b, r in self.pairs]}


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(..., M, 3) rays → (..., 3, 3) rotations R with dst ≈ R src."""
    u, _, vt = np.linalg.svd(np.swapaxes(dst, -1, -2) @ src)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones(u.shape[:-2] + (3,))
    fix[..., 2] = d
    return (u * fix[..., None, :]) @ vt


def _transfer_errors(rotations: np.ndarray, rays_a: np.ndarray, pix_b: np.ndarray, k_b: np.ndarray) -> np.ndarray:
    """rotations (R, 3, 3) · rays_a (M, 3) · pix_b (M, 2) → (R, M) px between frame b's tracks and frame a's rays
    rotated into b (inf behind the camera)."""
    cam = np.einsum("rij,mj->rmi", rotations, rays_a) @ k_b.T
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.linalg.norm(cam[..., :2] / cam[..., 2:] - pix_b, axis=-1)
    return np.where(cam[..., 2] > 0, err, np.inf)


def fit_rotation(pix_a: np.ndarray, pix_b: np.ndarray, k_a: np.ndarray, k_b: np.ndarray,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The rotation R (3, 3) that maps frame a's viewing rays onto frame b's (rays_b ≈ R rays_a), by RANSAC over
    two-ray samples and a refit on the inliers, and its (M,) bool inliers within ``ROTATION_PX``.
    pix_a, pix_b: (M, 2) px of the same tracks."""
    rays_a = bearings(pix_a[None], k_a[None])[0]
    rays_b = bearings(pix_b[None], k_b[None])[0]
    rng = np.random.default_rng(seed)
    samples = np.stack([rng.choice(len(pix_a), 2, replace=False) for _ in range(RANSAC_ITERATIONS)])
    candidates = _kabsch(rays_a[samples], rays_b[samples])                   # (R, 3, 3)
    inliers = _transfer_errors(candidates, rays_a, pix_b, k_b) < ROTATION_PX
    index = int(inliers.sum(1).argmax())
    rotation, best = candidates[index], inliers[index]
    if best.sum() >= 3:
        refit = _kabsch(rays_a[best], rays_b[best])
        refit_inliers = _transfer_errors(refit[None], rays_a, pix_b, k_b)[0] < ROTATION_PX
        if refit_inliers.sum() >= best.sum():
            rotation, best = refit, refit_inliers
    return rotation, best


FOCAL_RANGE = (0.6, 1.7)    # rotation_focal searches this range × the guess …
FOCAL_STEPS = 41            # … on this many log-spaced focals
FOCAL_GAIN = 0.8            # … and keeps the guess unless the best focal's error is below this × the guess's
FOCAL_CAP_PX = 3.0          # transfer errors are capped here (a moving track costs no more than this)
FOCAL_INLIER_PX = 5.0       # a pair's tracks that count: those its rotation under the guess explains within this


def rotation_focal(pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], guess: np.ndarray) -> float | None:
    """The focal (px) under which a camera that only rotates explains its tracks best, or None when the tracks do
    not tell it (a tripod or a small rotation: the error hardly changes with the focal).

    A rotation's homography K R K⁻¹ bends the image by an amount the focal sets; a wrong guess leaves every pair's
    best rotation with errors growing towards the image's edges. Each pair keeps the tracks its rotation under the
    guess explains within ``FOCAL_INLIER_PX`` (at least ``MIN_SHARED``); for each focal on a log grid over
    ``FOCAL_RANGE`` × the guess, each pair's rotation is refitted (Kabsch on its rays) and the mean transfer error,
    capped at ``FOCAL_CAP_PX``, summed; the minimum is refined by a parabola through its neighbours.
    pairs: (pix_a (M, 2), pix_b (M, 2), rotation (3, 3) from a to b under the guess) of the same tracks in two
    frames · guess (3, 3): the intrinsics guessed (principal point kept)."""
    kept = []
    for pix_a, pix_b, rotation in pairs:
        rays_a = bearings(pix_a[None], guess[None])[0]
        inliers = _transfer_errors(rotation[None], rays_a, pix_b, guess)[0] < FOCAL_INLIER_PX
        if inliers.sum() >= MIN_SHARED:
            kept.append((pix_a[inliers], pix_b[inliers]))
    if not kept:
        return None
    f0 = float(np.mean(guess[[0, 1], [0, 1]]))
    focals = f0 * np.geomspace(*FOCAL_RANGE, FOCAL_STEPS)
    cost = np.zeros(FOCAL_STEPS)
    for i, f in enumerate(focals):
        k = guess.copy()
        k[0, 0] = k[1, 1] = f
        for pix_a, pix_b in kept:
            rays_a, rays_b = bearings(pix_a[None], k[None])[0], bearings(pix_b[None], k[None])[0]
            rotation = _kabsch(rays_a, rays_b)
            cost[i] += np.minimum(_transfer_errors(rotation[None], rays_a, pix_b, k)[0], FOCAL_CAP_PX).mean()
    at_guess = float(np.interp(np.log(f0), np.log(focals), cost))
    best = int(np.argmin(cost))
    if best in (0, FOCAL_STEPS - 1) or not cost[best] < FOCAL_GAIN * at_guess:
        return None
    a, b, c = cost[best - 1: best + 2]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c > 0 else 0.0
    step = np.log(focals[1] / focals[0])
    return float(focals[best] * np.exp(np.clip(shift, -0.5, 0.5) * step))


def rotation_share(pix_a: np.ndarray, pix_b: np.ndarray, k_a: np.ndarray, k_b: np.ndarray,
                   seed: int = 0) -> float:
    """Tracks a best rotation explains within ``ROTATION_PX`` over those a fundamental matrix explains within
    ``EPIPOLAR_PX`` (≈ 1 without translation, ≈ 0 with clear parallax). pix_a, pix_b: (M, 2) px of the same tracks."""
    f, _ = cv2.findFundamentalMat(pix_a, pix_b, cv2.FM_RANSAC, EPIPOLAR_PX, 0.999)
    if f is None or f.shape != (3, 3):
        return 1.0  # no fundamental matrix fits: nothing shows a translation
    ha, hb = np.c_[pix_a, np.ones(len(pix_a))], np.c_[pix_b, np.ones(len(pix_b))]
    lines = ha @ f.T
    epipolar = np.abs((hb * lines).sum(1)) / np.maximum(np.hypot(lines[:, 0], lines[:, 1]), 1e-12)
    n_f = max(int((epipolar < EPIPOLAR_PX).sum()), 1)
    _, best = fit_rotation(pix_a, pix_b, k_a, k_b, seed)
    return float(min(best.sum() / n_f, 1.0))


def _segments(labels: np.ndarray) -> list[Segment]:
    """(N,) bool rotation labels → runs, those shorter than ``MIN_SEGMENT`` joined to their neighbour."""
    runs: list[list] = []
    for t, rot in enumerate(labels):
        if runs and runs[-1][2] == bool(rot):
            runs[-1][1] = t + 1
        else:
            runs.append([t, t + 1, bool(rot)])
    while len(runs) > 1:
        short = min(range(len(runs)), key=lambda i: runs[i][1] - runs[i][0])
        if runs[short][1] - runs[short][0] >= MIN_SEGMENT:
            break
        neighbour = short - 1 if short > 0 else short + 1
        lo, hi = sorted((short, neighbour))
        runs[lo:hi + 1] = [[runs[lo][0], runs[hi][1], runs[neighbour][2]]]
        merged = []                                                           # join equal neighbours again
        for run in runs:
            if merged and merged[-1][2] == run[2]:
                merged[-1][1] = run[1]
            else:
                merged.append(run)
        runs = merged
    return [Segment(a, b, "rotation" if rot else "general") for a, b, rot in runs]


def _moved(tracks: np.ndarray, both: np.ndarray, a: int, b: int) -> float:
    """Median image motion (px) of the tracks ``both`` (P,) bool between frames a and b."""
    return float(np.median(np.linalg.norm(tracks[b, both] - tracks[a, both], axis=-1)))


def select_motion_model(tracks: np.ndarray, visible: np.ndarray, intrinsics: np.ndarray) -> MotionModel:
    """The camera's motion model per clip and segment (module docstring).

    tracks (N, P, 2) px · visible (N, P) bool · intrinsics (N, 3, 3). Frames no voting pair spans take the nearest
    voted frame's kind; a clip with no voting pair at all is "general" (nothing shows it only rotates)."""
    n = tracks.shape[0]
    gap = min(PAIR_GAP, n - 1)
    votes, counts, pairs = np.zeros(n), np.zeros(n), []
    for a in range(0, max(n - gap, 1), PAIR_STEP):
        b = min(a + gap, n - 1)
        both = visible[a] & visible[b]
        if both.sum() < MIN_SHARED:
            continue
        share = rotation_share(tracks[a, both].astype(np.float64), tracks[b, both].astype(np.float64),
                               intrinsics[a], intrinsics[b], seed=a)
        while share >= ROTATION_SHARE and b - a < n - 1 and _moved(tracks, both, a, b) < MIN_MOTION_PX:
            wide = b - a                      # too little motion to tell: the pair twice as wide (later, or else
            lo, hi = (a, min(b + wide, n - 1)) if b < n - 1 else (max(0, a - wide), b)   # earlier), sharing enough
            shared = visible[lo] & visible[hi]
            if (lo, hi) == (a, b) or shared.sum() < MIN_SHARED:
                break
            a, b, both = lo, hi, shared
            share = rotation_share(tracks[a, both].astype(np.float64), tracks[b, both].astype(np.float64),
                                   intrinsics[a], intrinsics[b], seed=a)
        pairs.append((a, b, share))
        votes[a:b + 1] += share >= ROTATION_SHARE
        counts[a:b + 1] += 1
    if not pairs:
        return MotionModel("general", [Segment(0, n, "general")], pairs)
    voted = np.flatnonzero(counts)
    nearest = voted[np.abs(np.arange(n)[:, None] - voted[None]).argmin(1)]
    labels = votes[nearest] / counts[nearest] >= 0.5
    segments = _segments(labels)
    kinds = {s.kind for s in segments}
    return MotionModel(kinds.pop() if len(kinds) == 1 else "mixed", segments, pairs)
