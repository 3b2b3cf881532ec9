"""Comparing tracks over shared frames at a cost linear in the clip's length (issue 22): the work the neighbourhood
tests do is counted, not timed."""

import numpy as np
import pytest

from tracks4d.geometry import ground, motion
from tracks4d.geometry.track_pairs import COMPARED_FRAMES, nan_median, spans, spread_frames


def test_helpers():
    values = np.random.default_rng(0).normal(size=(30, 7))
    values[np.random.default_rng(1).random(values.shape) < 0.4] = np.nan
    values[:, 3] = np.nan
    with pytest.warns(RuntimeWarning):
        expected = np.nanmedian(values, axis=0)
    np.testing.assert_allclose(nan_median(values), expected, equal_nan=True)
    np.testing.assert_array_equal(spread_frames(3, 20), np.arange(3, 20))
    long = spread_frames(10, 610)
    assert len(long) == COMPARED_FRAMES and long[0] == 10 and long[-1] == 609 and (np.diff(long) > 0).all()
    seen = np.zeros((8, 3), bool)
    seen[2:5, 0], seen[7, 1] = True, True
    first, last = spans(seen)
    assert first[:2].tolist() == [2, 7] and last[:2].tolist() == [4, 7]


def relay(n_frames: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A long take: every 25 frames 40 new tracks start, each seen for 50 frames, drifting slowly — the tracks per
    frame stay the same whatever the length. → tracks (N, P, 2), visible (N, P)."""
    starts = np.arange(0, n_frames - 25, 25)
    p = 40 * len(starts)
    tracks = np.zeros((n_frames, p, 2))
    visible = np.zeros((n_frames, p), bool)
    for k, s in enumerate(starts):
        cols = slice(40 * k, 40 * (k + 1))
        origin = rng.uniform(0, 640, (40, 2))
        t = np.arange(n_frames)[:, None, None]
        tracks[:, cols] = origin[None] + 0.3 * t
        visible[s:s + 50, cols] = True
    return tracks, visible


def count_work(monkeypatch, module) -> list:
    work = []
    real = module.nan_median

    def counted(values):
        work.append(values.size)
        return real(values)

    monkeypatch.setattr(module, "nan_median", counted)
    return work


def test_neighbourhood_work_grows_linearly_with_the_clip(monkeypatch):
    totals = {}
    for n in (200, 800):
        tracks, visible = relay(n, np.random.default_rng(n))
        work_g = count_work(monkeypatch, ground)
        labels = ground.group_objects(tracks, visible, np.ones(visible.shape[1], bool), 800.0)
        assert (labels >= 0).all()
        work_m = count_work(monkeypatch, motion)
        position = np.where(visible[..., None], tracks, np.nan)
        departure = np.where(visible[..., None], np.random.default_rng(1).normal(0, 1, tracks.shape), np.nan)
        every = np.arange(visible.shape[1])
        alike, near = motion._alike(departure, position, visible, every, every, 120.0, 0.7)
        assert near.sum() > 0
        totals[n] = (sum(work_g), sum(work_m))
    # 4× the frames, 4.4× the tracks: linear work is ~5× as much; all pairs over all frames would be ~80×
    assert totals[800][0] < 7 * totals[200][0]
    assert totals[800][1] < 7 * totals[200][1]


def test_triangulation_in_chunks_of_tracks_is_exact(monkeypatch):
    """Long clips triangulate and reproject their tracks ``CHUNK_TRACKS`` at a time (bounded work arrays); the
    result is the one pass's, bit for bit."""
    from tracks4d.geometry import triangulation as tri
    rng = np.random.default_rng(0)
    n, p = 12, 300
    w2c = np.tile(np.eye(4), (n, 1, 1))
    w2c[:, 0, 3] = np.linspace(0, 1, n)
    k = np.tile(np.array([[500, 0, 320], [0, 500, 240], [0, 0, 1.0]]), (n, 1, 1))
    cam = rng.uniform([-1, -1, 3], [1, 1, 6], (p, 3))[None] + w2c[:, None, :3, 3]
    pix = np.einsum("nij,npj->npi", k, cam)
    tracks = pix[..., :2] / pix[..., 2:] + rng.normal(0, 0.5, (n, p, 2))
    visible = rng.random((n, p)) > 0.3
    whole = tri.triangulate_robust(tracks, visible, w2c, k)
    monkeypatch.setattr(tri, "CHUNK_TRACKS", 64)
    chunked = tri.triangulate_robust(tracks, visible, w2c, k)
    np.testing.assert_array_equal(chunked, whole)
    errors = tri.reprojection_errors(whole, tracks, w2c, k)
    monkeypatch.setattr(tri, "CHUNK_TRACKS", 10 ** 9)
    np.testing.assert_array_equal(tri.reprojection_errors(whole, tracks, w2c, k), errors)
    np.testing.assert_array_equal(tri.triangulate_robust(tracks, visible, w2c, k), whole)
