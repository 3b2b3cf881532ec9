"""The built-in point tracker: the paper's query schedule with OpenCV pyramidal Lucas–Kanade, and a confidence for
every entry.

A G×G grid of queries at frames 0, q, 2q, … and the last frame — and, halfway between them, a query in every grid
cell that no track then occupies; every query is tracked forwards and backwards over
the whole clip, one frame at a time, on photometrically normalised frames (each frame's grey levels scaled to a
fixed mean and spread, so exposure drift does not look like motion to LK), with a forward–backward consistency check
at every step. A point that fails a check (or leaves the image, or loses texture) is lost for good in that direction.

Each entry carries a confidence in [0, 1] (:func:`entry_confidence`): how well the patch around it matches the
track's own template (normalised cross-correlation with the patch at its query), its forward–backward error and the
texture under it (the structure tensor's smaller eigenvalue). A track whose patch stops matching its template for
``cut_frames`` steps in a row has jumped to something else: it is *cut* — it ends before those frames, and a new
track starts there with a template of its own (one broken track would glue two surfaces together). The confidence
is kept beside the visibility (users and later stages weigh it); tracks visible in too few frames are dropped
(:func:`tracks4d.contracts.min_visible_frames`).
"""

from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm

from ..contracts import TrackSet, hold_nearest, min_visible_frames
from .config import TrackerConfig, grid_points, query_frames

__all__ = ["normalised_grey", "entry_confidence", "track_frames"]


def normalised_grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W) uint8 grey with mean 128 and standard deviation 48 (a global gain and offset:
    exposure drift removed, local contrast kept)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.clip((grey - grey.mean()) * (48.0 / (grey.std() + 1e-6)) + 128.0, 0, 255).astype(np.uint8)


def _texture_at(eig: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(M,) smaller structure-tensor eigenvalue of map ``eig`` (H, W) at points (M, 2)."""
    xi = np.clip(np.round(points[:, 0]).astype(int), 0, eig.shape[1] - 1)
    yi = np.clip(np.round(points[:, 1]).astype(int), 0, eig.shape[0] - 1)
    return eig[yi, xi]


def _patches(grey: np.ndarray, points: np.ndarray, side: int) -> np.ndarray:
    """(M, side²) float32 bilinear patches of ``grey`` centred on points (M, 2), mean removed, unit norm (one
    ``cv2.remap`` for all of them; outside the image the border is replicated)."""
    if len(points) == 0:
        return np.zeros((0, side * side), np.float32)
    offsets = np.arange(side, dtype=np.float32) - (side - 1) / 2
    map_x = (points[:, 0, None, None] + offsets[None, None, :]).astype(np.float32)
    map_y = (points[:, 1, None, None] + offsets[None, :, None]).astype(np.float32)
    map_x, map_y = (np.broadcast_to(m, (len(points), side, side)).reshape(-1, side) for m in (map_x, map_y))
    out = cv2.remap(grey, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE).astype(np.float32).reshape(len(points), side * side)
    out -= out.mean(1, keepdims=True)
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-6
    return out


def entry_confidence(ncc: np.ndarray, fb_error: np.ndarray, texture: np.ndarray, config: TrackerConfig
                     ) -> np.ndarray:
    """(M,) confidence in [0, 1] of tracked entries from their template correlation ``ncc``, forward–backward error
    (px) and texture (structure-tensor eigenvalue): the template term rises linearly from ``cut_ncc`` to 0.9, the
    forward–backward term falls from 1 at 0 px to 0.5 at ``fb_threshold``, the texture term from 1 at 4 ×
    ``min_texture`` to 0 at none."""
    match = np.clip((ncc - config.cut_ncc) / (0.9 - config.cut_ncc), 0.0, 1.0)
    consistency = 1.0 / (1.0 + (fb_error / config.fb_threshold) ** 2)
    textured = np.clip(texture / (4 * config.min_texture), 0.0, 1.0)
    return (match * consistency * textured).astype(np.float32)


class _Texture:
    """Each frame's texture (the smaller structure-tensor eigenvalue, ``cv2.cornerMinEigenVal``): exact where queries
    are placed (recomputed: a few frames), and for the entries' confidence only as far as :func:`entry_confidence`
    reads it (up to 4 × ``min_texture``), kept in one byte a pixel — a 600-frame clip's maps take 184 MB, not 737."""

    def __init__(self, greys: list[np.ndarray], config: TrackerConfig):
        self.greys, self.block, self.top = greys, config.window // 2 | 1, 4 * config.min_texture
        self.coded = [np.round(np.clip(self.exact(t) / self.top, 0.0, 1.0) * 255).astype(np.uint8)
                      for t in range(len(greys))]

    def exact(self, t: int) -> np.ndarray:
        """(H, W) float32 eigenvalue map of frame t."""
        return cv2.cornerMinEigenVal(self.greys[t], blockSize=self.block, ksize=3)

    def for_confidence(self, t: int, points: np.ndarray) -> np.ndarray:
        """(M,) texture at points (M, 2) of frame t, exact to 1/255 of 4 × ``min_texture`` and capped there."""
        return _texture_at(self.coded[t], points).astype(np.float32) * (self.top / 255)


class _Tracks:
    """Growable (N, P) track arrays (capacity doubles, so appending is linear in the tracks): a new query or a cut
    appends a track."""

    def __init__(self, n: int):
        self.n, self.size = n, 0
        self._tracks = np.zeros((n, 64, 2), np.float32)
        self._visible = np.zeros((n, 64), bool)
        self._confidence = np.zeros((n, 64), np.float32)
        self._query_frame = np.zeros(64, np.int64)
        self._origin = np.zeros(64, np.int64)
        self.origin = 0                       # what the tracks added now are (:meth:`order`)

    def add(self, frame: int, points: np.ndarray) -> np.ndarray:
        """New tracks starting at ``frame`` at points (M, 2), visible there: their indices (M,)."""
        m = len(points)
        if self.size + m > self._query_frame.size:
            grow = max(self.size + m, 2 * self._query_frame.size) - self._query_frame.size
            self._tracks = np.concatenate([self._tracks, np.zeros((self.n, grow, 2), np.float32)], 1)
            self._visible = np.concatenate([self._visible, np.zeros((self.n, grow), bool)], 1)
            self._confidence = np.concatenate([self._confidence, np.zeros((self.n, grow), np.float32)], 1)
            self._query_frame = np.concatenate([self._query_frame, np.zeros(grow, np.int64)])
            self._origin = np.concatenate([self._origin, np.zeros(grow, np.int64)])
        index = np.arange(self.size, self.size + m)
        self.size += m
        self._query_frame[index], self._origin[index] = frame, self.origin
        self.set(frame, index, points, 1.0)
        return index

    def set(self, frame: int, index: np.ndarray, points: np.ndarray, confidence: np.ndarray | float) -> None:
        self._tracks[frame, index], self._visible[frame, index] = points, True
        self._confidence[frame, index] = confidence

    def order(self) -> np.ndarray:
        """(P,) the output order: by origin (a pass's queries, then the tracks its forward and its backward cuts
        started; the fill's after), in the order they were added within each."""
        return np.argsort(self._origin[:self.size], kind="stable")

    @property
    def tracks(self) -> np.ndarray:
        return self._tracks[:, :self.size]

    @property
    def visible(self) -> np.ndarray:
        return self._visible[:, :self.size]

    @property
    def confidence(self) -> np.ndarray:
        return self._confidence[:, :self.size]

    @property
    def query_frame(self) -> np.ndarray:
        return self._query_frame[:self.size]


def _cells(points: np.ndarray, grid: int, image_size: tuple[int, int]) -> np.ndarray:
    """(M,) row-major index of the grid×grid cell each point (M, 2) lies in."""
    w, h = image_size
    return (np.clip((points[:, 1] * grid / h).astype(int), 0, grid - 1) * grid
            + np.clip((points[:, 0] * grid / w).astype(int), 0, grid - 1))


def track_frames(frames: np.ndarray, config: TrackerConfig = TrackerConfig(), progress: bool = False) -> TrackSet:
    """Track the paper's query grid through ``frames``.

    frames: (N, H, W, 3) uint8 RGB, N ≥ 2 → TrackSet with tracks (N, P, 2) in the frames' pixels, visible (N, P),
    confidence (N, P), query_frame (P,) (a cut track's second part starts at the cut), image_size (W, H). Invisible
    entries hold the nearest visible position.

    Queries are placed at the query frames (:func:`query_frames`), on the textured cells of the grid that hold fewer
    than :func:`_cap` of the tracks followed there, and going back a track ends at a full cell; from frame
    ``config.dense_frames`` on, converging tracks do not pile up either (the youngest end): new content gets tracks and
    a long, slow take keeps about a short clip's tracks per frame. Then the fill queries (:func:`_sparse_queries`).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (N>=2, H, W, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
    n, h, w = frames.shape[:3]
    greys = [normalised_grey(f) for f in frames]
    texture = _Texture(greys, config)
    grid = grid_points(w, h, config.grid)
    scheduled = set(query_frames(n, config.query_every).tolist())

    def queries_at(t: int, followed: np.ndarray) -> np.ndarray:
        if t not in scheduled:
            return np.zeros((0, 2), np.float32)
        count = np.bincount(_cells(followed, config.grid, (w, h)), minlength=len(grid))
        return grid[(count < _cap(t, config)) & (_texture_at(texture.exact(t), grid) > config.min_texture)]

    bar = tqdm(total=2 * (n - 1), desc="tracking (LK)", disable=not progress, leave=False)
    out = _Tracks(n)
    _track_queries(greys, texture, out, queries_at, config, bar)
    if config.fill:
        fill = _sparse_queries(out, grid, texture, sorted(scheduled), config, (w, h))
        if fill:
            bar.total += 2 * (n - 1)
            _track_queries(greys, texture, out, lambda t, followed: fill.get(t, np.zeros((0, 2), np.float32)),
                           config, bar, first=3)
    bar.close()
    order = out.order()
    keep = order[out.visible.sum(0)[order] > min_visible_frames(n)]
    if not keep.size:
        raise ValueError(f"no track stays visible in more than {min_visible_frames(n)} of {n} frames "
                         f"(untextured or too short a clip?)")
    visible = out.visible[:, keep]
    return TrackSet(hold_nearest(out.tracks[:, keep], visible), visible, image_size=np.array([w, h]),
                    query_frame=out.query_frame[keep], confidence=np.where(visible, out.confidence[:, keep], 0))


def _track_queries(greys, texture, out: _Tracks, queries_at, config: TrackerConfig, bar, first: int = 0) -> None:
    """Track the queries ``queries_at(t, followed)`` places at frame t (given the points (M, 2) the forward sweep
    follows there) forwards, then each of them backwards from its frame (:func:`_sweep`); the tracks go to ``out``,
    the queries with origin ``first``, the tracks the two sweeps' cuts start with the next two."""
    starts = {}                               # frame → (track indices, points, templates) placed there

    def place(t: int, followed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        points = np.asarray(queries_at(t, followed), np.float32).reshape(-1, 2)
        out.origin = first
        starts[t] = out.add(t, points), points, _patches(greys[t], points, config.template)
        out.origin = first + 1                # what this sweep's cuts start
        return starts[t]

    _sweep(greys, texture, place, out, 1, config, bar)
    out.origin = first + 2                    # the backward sweep takes each query back from its frame
    _sweep(greys, texture, lambda t, followed: starts[t], out, -1, config, bar)


def _sparse_queries(out: "_Tracks", grid: np.ndarray, texture: "_Texture", queries: list[int], config: TrackerConfig,
                    image_size: tuple[int, int]) -> dict[int, np.ndarray]:
    """Queries where the schedule's tracks are sparse: at the frame halfway between two query frames, the textured
    grid cells (of ``grid`` (G², 2) cell centres) that no visible track lies in → {frame: points (M, 2)}.
    Where a close mover fills much of the frame, the scene's tracks around it are short-lived (16 frames on median on
    a generated clip) and few; the camera stage needs them."""
    fill = {}
    for a, b in zip(queries[:-1], queries[1:]):
        if b - a < 4:
            continue
        f = (a + b) // 2
        empty = np.ones(len(grid), bool)
        empty[_cells(out.tracks[f, out.visible[f]], config.grid, image_size)] = False
        keep = empty & (_texture_at(texture.exact(f), grid) > config.min_texture)
        if keep.any():
            fill[f] = grid[keep].astype(np.float32)
    return fill


def _cap(t: int, config: TrackerConfig) -> int:
    """The tracks a grid cell takes at frame t: ``per_cell``, twice that before ``dense_frames``."""
    return config.per_cell * (2 if t < config.dense_frames else 1)


def _eldest(index: np.ndarray, cells: np.ndarray, ok: np.ndarray, per_cell: int) -> np.ndarray:
    """(M,) bool: which of the points followed on (``ok``) are among the ``per_cell`` eldest (smallest track
    ``index``) in their cell — tracks that converge (a surface turning away, a zoom out) do not pile up."""
    keep = ok.copy()
    chosen = np.flatnonzero(ok)
    order = chosen[np.lexsort((index[chosen], cells[chosen]))]
    group = cells[order]
    first = np.searchsorted(group, group)                 # where each point's cell starts in the sorted order
    keep[order[np.arange(order.size) - first >= per_cell]] = False
    return keep


def _sweep(greys, texture: "_Texture", starting, out: _Tracks, step: int, config: TrackerConfig, bar) -> None:
    """One direction (``step`` ±1) of tracking: at each frame t, the tracks ``starting(t, followed)`` gives (index
    (M,), points (M, 2), templates (M, T²)) join the points followed, and every point is followed on, cut where its
    template stops matching. Fills ``out`` (cut tracks' second parts are appended to it)."""
    n = len(greys)
    h, w = greys[0].shape
    lk = dict(winSize=(config.window, config.window), maxLevel=config.levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    index = np.zeros(0, np.int64)             # the track each active point writes to
    pos = np.zeros((0, 2), np.float32)
    tmpl = np.zeros((0, config.template ** 2), np.float32)
    low = np.zeros(0, np.int64)               # consecutive steps below cut_ncc
    frames = range(n) if step == 1 else range(n - 1, -1, -1)
    for t in frames:
        new, points, templates = starting(t, pos)
        if len(new):
            out.set(t, new, points, 1.0)
            index, pos = np.concatenate([index, new]), np.concatenate([pos, points])
            tmpl, low = np.concatenate([tmpl, templates]), np.concatenate([low, np.zeros(len(new), np.int64)])
        if t + step < 0 or t + step >= n:
            break
        bar.update(1)
        if index.size == 0:
            continue
        nxt = greys[t + step]
        fwd, st1, err = cv2.calcOpticalFlowPyrLK(greys[t], nxt, pos, None, **lk)
        back, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, greys[t], fwd, None, **lk)
        fb = np.linalg.norm(back - pos, axis=1)
        ok = ((st1[:, 0] == 1) & (st2[:, 0] == 1) & (err[:, 0] < config.max_error) & (fb < config.fb_threshold)
              & (fwd[:, 0] >= 0) & (fwd[:, 0] <= w - 1) & (fwd[:, 1] >= 0) & (fwd[:, 1] <= h - 1))
        if step == -1:                                          # going back, a track ends at a full cell
            held = out.tracks[t + step, out.visible[t + step]]
            count = np.bincount(_cells(held, config.grid, (w, h)), minlength=config.grid ** 2)
            ok &= count[_cells(fwd, config.grid, (w, h))] < _cap(t + step, config)
        elif t + step >= config.dense_frames:                   # going on, the youngest end where a cell holds too many
            ok &= _eldest(index, _cells(fwd, config.grid, (w, h)), ok, config.per_cell)
        index, tmpl, low, fwd, fb = index[ok], tmpl[ok], low[ok], fwd[ok], fb[ok]
        patches = _patches(nxt, fwd, config.template)
        ncc = np.einsum("md,md->m", patches, tmpl)
        low = np.where(ncc < config.cut_ncc, low + 1, 0)
        confidence = entry_confidence(ncc, fb, texture.for_confidence(t + step, fwd), config)
        out.set(t + step, index, fwd, confidence)
        cut = np.flatnonzero(low >= config.cut_frames)
        if cut.size:   # the jumped part leaves its track and starts one of its own, templated here
            first = t + step - step * (config.cut_frames - 1)
            span = slice(min(first, t + step), max(first, t + step) + 1)
            out.visible[span, index[cut]] = False
            out.confidence[span, index[cut]] = 0.0
            fresh = out.add(first, out.tracks[first, index[cut]])
            for f in range(span.start, span.stop):
                out.set(f, fresh, out.tracks[f, index[cut]], 1.0)
            index[cut] = fresh
            tmpl[cut], low[cut] = patches[cut], 0
        pos = fwd
