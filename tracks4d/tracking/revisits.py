"""Revisits: a camera that comes back to where it was sees the same surfaces again, but the tracks it followed there
ended long ago (a tracker follows points frame to frame, and the returning views get new tracks). Seeing the new
tracks in the old view too gives the bundle adjustment what closes the loop: one point seen at both ends of the
drift.

A frame and an earlier one at least ``REVISIT_GAP`` frames before it whose grey thumbnails correlate best (and at
least ``MIN_LIKENESS``), sharing no tracks, are a candidate revisit (every ``REVISIT_STEP``-th frame is tried). The
later frame's tracks are followed into the earlier frame by pyramidal Lucas–Kanade, checked forwards and backwards,
and those a fundamental matrix between the two frames explains (RANSAC) — at least ``MIN_LINKS`` — are seen in the
earlier frame too: one more observation each, the one that ties the two ends of the drift together. The camera
solve adjusts them (:func:`seen_again`); the later stages keep the tracker's own observations (a track seen twice,
turns apart, would widen every comparison that follows a track's span). Clips of ``REVISIT_GAP`` frames or fewer
have none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from ..contracts import TrackSet, hold_nearest
from .config import TrackerConfig

__all__ = ["Revisit", "find_revisits", "seen_again", "revisit_pairs", "thumbnails"]

REVISIT_GAP = 100      # frames between a revisit and the view it returns to (shorter: the tracks still link them)
REVISIT_STEP = 5       # every this many frames are tried as the later view
MIN_LIKENESS = 0.6     # thumbnail correlation of a candidate revisit
THUMBNAIL = (40, 30)   # (W, H) of the thumbnails compared
MAX_FB_PX = TrackerConfig.fb_threshold  # forward–backward error of a followed point: the tracker's
MIN_LINKS = 20         # links a revisit needs (after the fundamental-matrix test)
RANSAC_PX = 1.5
LK_WINDOW, LK_LEVELS = 21, 4


@dataclass(frozen=True)
class Revisit:
    """A view seen again: frames (earlier, later) · tracks (L,) int: tracks of the later frame seen in the earlier
    one too · points (L, 2) float32: where, in the tracks' pixels · confidence (L,) float32: the forward–backward
    term of :func:`~tracks4d.tracking.lk.entry_confidence`."""

    earlier: int
    later: int
    tracks: np.ndarray
    points: np.ndarray
    confidence: np.ndarray

    def to_meta(self) -> list[int]:
        """[earlier frame, later frame, tracks linked]."""
        return [self.earlier, self.later, len(self.tracks)]


def thumbnails(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, D) float32 grey thumbnails, mean removed and unit norm (their products correlate)."""
    small = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), THUMBNAIL, interpolation=cv2.INTER_AREA)
                      for f in frames]).reshape(len(frames), -1).astype(np.float32)
    small -= small.mean(1, keepdims=True)
    return small / (np.linalg.norm(small, axis=1, keepdims=True) + 1e-6)


def revisit_pairs(thumbs: np.ndarray, visible: np.ndarray) -> list[tuple[int, int]]:
    """Candidate revisits (earlier, later): thumbs (N, D) from :func:`thumbnails` · visible (N, P) bool."""
    n, pairs = len(thumbs), []
    for t in range(REVISIT_GAP, n, REVISIT_STEP):
        likeness = thumbs[:t - REVISIT_GAP + 1] @ thumbs[t]
        s = int(np.argmax(likeness))
        if likeness[s] >= MIN_LIKENESS and not (visible[s] & visible[t]).any():
            pairs.append((s, t))
    return pairs


def _followed_back(grey_s: np.ndarray, grey_t: np.ndarray, tracks: np.ndarray, visible: np.ndarray, s: int, t: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tracks seen in frame t followed into the earlier frame s (module docstring) → (tracks (L,) int, their
    points in frame s (L, 2) float32, forward–backward errors (L,) px); empty when fewer than ``MIN_LINKS``."""
    none = np.zeros(0, int), np.zeros((0, 2), np.float32), np.zeros(0, np.float32)
    at_t = np.flatnonzero(visible[t] & ~visible[s])
    if len(at_t) < MIN_LINKS:
        return none
    start = np.ascontiguousarray(tracks[t, at_t], np.float32)
    lk = dict(winSize=(LK_WINDOW, LK_WINDOW), maxLevel=LK_LEVELS)
    there, ok, _ = cv2.calcOpticalFlowPyrLK(grey_t, grey_s, start, None, **lk)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey_s, grey_t, there, None, **lk)
    fb = np.linalg.norm(back - start, axis=1)
    h, w = grey_s.shape
    inside = (there >= 0).all(1) & (there[:, 0] <= w - 1) & (there[:, 1] <= h - 1)
    good = np.flatnonzero((ok[:, 0] == 1) & (ok_back[:, 0] == 1) & (fb < MAX_FB_PX) & inside)
    if len(good) < MIN_LINKS:
        return none
    _, inliers = cv2.findFundamentalMat(there[good].astype(np.float64), start[good].astype(np.float64),
                                        cv2.FM_RANSAC, RANSAC_PX, 0.999)
    if inliers is None or inliers.sum() < MIN_LINKS:
        return none
    keep = good[inliers[:, 0] == 1]
    return at_t[keep], there[keep], fb[keep]


def find_revisits(frames: np.ndarray, tracks: TrackSet, scale: tuple[float, float] = (1.0, 1.0)) -> list[Revisit]:
    """The clip's revisits (module docstring): frames (N, H, W, 3) uint8 RGB · tracks: in pixels that ``scale``
    (sx, sy) takes to the frames' (a clip's working size over its source size, :attr:`~tracks4d.io.video.Clip.scale`).
    Empty for clips of ``REVISIT_GAP`` frames or fewer."""
    if tracks.n_frames <= REVISIT_GAP:
        return []
    pairs = revisit_pairs(thumbnails(frames), tracks.visible)
    s_xy = np.asarray(scale, np.float64)
    in_frames = ((tracks.tracks.astype(np.float64) + 0.5) * s_xy - 0.5).astype(np.float32)
    visible = tracks.visible.copy()
    revisits = []
    for s, t in pairs:
        grey_s, grey_t = (cv2.cvtColor(frames[f], cv2.COLOR_RGB2GRAY) for f in (s, t))
        linked, points, fb = _followed_back(grey_s, grey_t, in_frames, visible, s, t)
        if len(linked):
            in_frames[s, linked], visible[s, linked] = points, True
            revisits.append(Revisit(s, t, linked, ((points.astype(np.float64) + 0.5) / s_xy - 0.5).astype(np.float32),
                                    (1.0 / (1.0 + (fb / MAX_FB_PX) ** 2)).astype(np.float32)))
    return revisits


def seen_again(tracks: TrackSet, revisits: list[Revisit]) -> TrackSet:
    """``tracks`` with each revisit's tracks visible in its earlier frame too (entries seen before unchanged): what
    the camera solve adjusts, the observations that close the loop. ``tracks`` itself when there are none."""
    if not revisits:
        return tracks
    values, visible = tracks.tracks.copy(), tracks.visible.copy()
    confidence = None if tracks.confidence is None else tracks.confidence.copy()
    for revisit in revisits:
        values[revisit.earlier, revisit.tracks], visible[revisit.earlier, revisit.tracks] = revisit.points, True
        if confidence is not None:
            confidence[revisit.earlier, revisit.tracks] = revisit.confidence
    return replace(tracks, tracks=hold_nearest(values, visible), visible=visible, confidence=confidence)
