"""A long clip's cameras in pieces: overlapping spans of frames, each solved as a short clip, then joined one after
another by the similarity their shared frames tell.

One solve grown over hundreds of frames from one initial pair can break where the chain of shared tracks runs thin:
a 300-frame orbit came out as two consistent halves 2.3× apart in scale (ATE 6.9 % of the path), and the bundle
adjustment cannot repair it — the tracks that span the break reproject beyond its gate. Its 100-frame pieces each
solved to 0.1–0.25 %; pieces are now 50 frames, the network's windows. A piece is joined by the rotation its overlap
frames' orientations agree on, the scale of its static points' depths against the clip's in those frames, and the
translation that then puts its overlap cameras on the clip's.
"""

from __future__ import annotations

import numpy as np

from .transforms import Sim3, invert_rigid

__all__ = ["PIECE_FRAMES", "PIECE_OVERLAP", "piece_spans", "joining_similarity"]

PIECE_FRAMES = 50      # frames of a piece: a short clip's (held-out orbit 600: 100-frame pieces, ATE the same, the
                       # camera stage a third slower — each piece grows up to nine seeds over all its frames)
PIECE_OVERLAP = 13     # frames a piece shares with the one before it (at least)
MIN_DEPTH_PAIRS = 20   # (track, frame) depths seen in both a piece and the clip that tell the scale


def piece_spans(n_frames: int) -> list[tuple[int, int]]:
    """[start, end) of the pieces covering ``n_frames``: ``PIECE_FRAMES`` long, each starting ``PIECE_FRAMES −
    PIECE_OVERLAP`` after the one before; the last ends at the clip's end (overlapping its neighbour more)."""
    spans, start = [], 0
    while True:
        end = min(start + PIECE_FRAMES, n_frames)
        spans.append((max(0, end - PIECE_FRAMES), end))
        if end == n_frames:
            return spans
        start += PIECE_FRAMES - PIECE_OVERLAP


def _mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """(M, 3, 3) → the rotation nearest their mean (chordal L2)."""
    u, _, vt = np.linalg.svd(rotations.sum(0))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ sign @ vt


def joining_similarity(clip_w2c: np.ndarray, piece_w2c: np.ndarray, clip_depth: np.ndarray,
                       piece_depth: np.ndarray, fallback_scale: float) -> tuple[Sim3, int]:
    """The similarity that puts a piece's overlap cameras on the clip's → (similarity, depth pairs that told the
    scale).

    clip_w2c, piece_w2c (M, 4, 4): the overlap frames' cameras in the clip's and the piece's world · clip_depth,
    piece_depth (M, Q): depths of static points both placed, NaN where a frame does not see one. Rotation: the mean of
    the orientations' differences. Scale: the median depth ratio over the pairs where both are positive, or
    ``fallback_scale`` with fewer than ``MIN_DEPTH_PAIRS`` (a piece or a neighbour that only rotates). Translation:
    the median, per axis, of what moves each scaled and rotated piece centre onto the clip's."""
    clip_c2w, piece_c2w = invert_rigid(clip_w2c), invert_rigid(piece_w2c)
    rotation = _mean_rotation(clip_c2w[:, :3, :3] @ np.swapaxes(piece_c2w[:, :3, :3], 1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        pairs = (clip_depth > 0) & (piece_depth > 0)
        ratios = clip_depth[pairs] / piece_depth[pairs]
    scale = float(np.median(ratios)) if ratios.size >= MIN_DEPTH_PAIRS else fallback_scale
    translation = np.median(clip_c2w[:, :3, 3] - scale * piece_c2w[:, :3, 3] @ rotation.T, axis=0)
    return Sim3(scale, rotation, translation), int(ratios.size)
