"""The built-in LK tracker: query schedule, accuracy on known motion, lost points, output contract."""

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tracks4d.tracking import TrackerConfig, grid_points, query_frames, track_frames, track_video
from helpers import shifted_clip, texture

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"






def test_query_schedule_and_grid():
    np.testing.assert_array_equal(query_frames(50), [0, 20, 40, 49])
    np.testing.assert_array_equal(query_frames(40), [0, 20, 39])
    np.testing.assert_array_equal(query_frames(21), [0, 20])
    g = grid_points(300, 150, 3)
    np.testing.assert_allclose(g[:3], [[49.5, 24.5], [149.5, 24.5], [249.5, 24.5]])
    assert g.shape == (9, 2)


def test_tracks_follow_known_motion():
    v = np.array([0.7, -0.4])
    frames = shifted_clip(velocity=v)
    ts = track_frames(frames, TrackerConfig(grid=8, query_every=10))
    assert set(np.unique(ts.query_frame)) <= {0, 10, 20, 29}
    n = ts.n_frames
    q = ts.query_frame
    start = ts.tracks[q, np.arange(ts.n_points)]
    expected = start[None] + (np.arange(n)[:, None] - q[None])[..., None] * v
    err = np.linalg.norm(ts.tracks - expected, axis=-1)[ts.visible]
    assert np.median(err) < 0.1 and np.percentile(err, 95) < 0.5
    assert ts.visible.mean() > 0.6
    assert (ts.visible.sum(0) > 10).all()
    assert ts.image_size.tolist() == [160, 120]


def test_occluded_points_are_lost_and_stay_lost():
    frames = shifted_clip(n=30, velocity=(0.0, 0.0))
    frames[15:, :, :80] = np.random.default_rng(5).integers(0, 255, (15, 120, 80, 3))  # left half replaced
    ts = track_frames(frames, TrackerConfig(grid=8, query_every=100))  # queries at frames 0 and 29 only
    left0 = (ts.query_frame == 0) & (ts.tracks[0, :, 0] < 70)
    assert left0.any()
    assert not ts.visible[16:, left0].any()  # lost at the cut, never found again
    right0 = (ts.query_frame == 0) & (ts.tracks[0, :, 0] > 90)
    assert ts.visible[:, right0].all()


def test_a_track_whose_content_changes_is_cut_into_two():
    """A region cross-fades to another texture while the camera pans: LK follows it step by step, but the content is
    no longer what the track started on. Its track ends there and a new one starts (never one track over both)."""
    n, v = 40, np.array([0.5, 0.0])
    frames = shifted_clip(n=n, velocity=v).astype(np.float32)
    other = cv2.GaussianBlur(np.random.default_rng(9).uniform(0, 255, (120, 160)).astype(np.float32), (0, 0), 1.5)
    for t in range(n):
        a = np.clip((t - 12) / 10, 0, 1)                    # frames 12–22: the middle fades to the other texture
        frames[t, 30:90, 50:110] = (1 - a) * frames[t, 30:90, 50:110] + a * other[30:90, 50:110, None]
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    ts = track_frames(frames, TrackerConfig(grid=10, query_every=100))
    p = np.arange(ts.n_points)
    start = ts.tracks[ts.query_frame, p]
    inside = (start[:, 0] > 62) & (start[:, 0] < 95) & (start[:, 1] > 42) & (start[:, 1] < 78)
    assert inside.sum() >= 8 and (ts.visible[5][inside] & ts.visible[35][inside]).mean() < 0.2  # few span it
    cut = ~np.isin(ts.query_frame, [0, n - 1])
    assert cut.any() and (ts.query_frame[cut] >= 10).all() and (ts.query_frame[cut] <= 30).all()  # cut in the fade
    outside = (ts.query_frame == 0) & (start[:, 1] < 20) & (start[:, 0] < 130)          # far from it
    assert outside.any() and ts.visible[:, outside].mean() > 0.95                # the rest are not cut
    conf = ts.confidence
    assert conf.shape == ts.visible.shape and conf.dtype == np.float32
    assert (conf[~ts.visible] == 0).all() and np.median(conf[:, outside][ts.visible[:, outside]]) > 0.8


def test_exposure_drift_is_not_motion():
    """A brightness ramp of ±30 % over the clip: the normalised frames keep every track, all trusted."""
    frames = shifted_clip(n=30, velocity=(0.5, 0.2)).astype(np.float32)
    gain = np.linspace(0.7, 1.3, 30)[:, None, None, None]
    ts = track_frames(np.clip(frames * gain, 0, 255).astype(np.uint8), TrackerConfig(grid=8, query_every=100))
    assert ts.visible.mean() > 0.9 and np.median(ts.confidence[ts.visible]) > 0.8


def test_flat_regions_are_not_seeded_and_bad_input():
    frames = shifted_clip(n=25)
    frames[:, :, 80:] = 128  # flat right half
    ts = track_frames(frames, TrackerConfig(grid=10))
    assert (ts.tracks[ts.query_frame, np.arange(ts.n_points), 0] < 85).all()
    with pytest.raises(ValueError, match="uint8"):
        track_frames(frames.astype(np.float32))
    with pytest.raises(ValueError, match="no track"):
        track_frames(np.full((25, 60, 80, 3), 100, np.uint8))


def test_track_video_returns_input_pixels(tmp_path):
    frames = shifted_clip(n=24, h=240, w=320, velocity=(1.0, 0.5))
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = {"crf": "10"} if stream.name == "libx264" else {}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    ts = track_video(path, long_side=160)
    assert ts.image_size.tolist() == [320, 240]
    q = ts.query_frame
    start = ts.tracks[q, np.arange(ts.n_points)]
    expected = start[None] + (np.arange(24)[:, None] - q[None])[..., None] * np.array([1.0, 0.5])
    err = np.linalg.norm(ts.tracks - expected, axis=-1)[ts.visible]
    assert np.median(err) < 0.5  # motion measured at half resolution, reported in input pixels


@pytest.mark.realdata
def test_real_clip_tracks():
    path = REAL / "tapip3d_demo_videos" / "sheep.mp4"
    if not path.exists():
        pytest.skip("../shared/data/real is absent")
    ts = track_video(path, max_frames=40)
    assert ts.n_points > 300 and ts.visible.mean() > 0.7
    assert ts.image_size.tolist() == [724, 406]


def test_queries_fill_the_cells_the_schedule_leaves_empty():
    """The left half shows a steady texture only in frames 12–27 (noise before and after): the schedule's queries
    (frames 0 and 39) find nothing to follow there; the fill queries halfway (frame 19) do, and only there."""
    frames = shifted_clip(n=40, velocity=(0.0, 0.0))
    noise = np.random.default_rng(6).integers(0, 255, (40, 120, 80, 3), dtype=np.uint8)
    frames[:12, :, :80], frames[28:, :, :80] = noise[:12], noise[28:]
    without = track_frames(frames, TrackerConfig(grid=8, query_every=100, fill=False))
    assert not (without.visible[19] & (without.tracks[19, :, 0] < 70)).any()
    ts = track_frames(frames, TrackerConfig(grid=8, query_every=100))
    filled = ts.query_frame == 19
    assert filled.sum() >= 10 and (ts.tracks[19, filled, 0] < 80).mean() > 0.9   # the left half's empty cells
    left = filled & (ts.tracks[19, :, 0] < 80)
    assert ts.visible[13:27, left].mean() > 0.9 and not ts.visible[:10, left].any()   # followed while it shows
    np.testing.assert_allclose(ts.tracks[19, left], ts.tracks[24, left], atol=0.5)    # still: they stay put


def test_query_frames_add_tracks_only_where_the_view_has_few():
    """A long take of a still view: the later query frames find every cell holding its tracks and add none, so the
    tracks per frame do not pile up with length. A view that pans on: new content (and cells the old tracks left)
    gets queries at the query frames, and tracks that leave the image end there."""
    still = shifted_clip(n=120, velocity=(0.0, 0.0))
    ts = track_frames(still, TrackerConfig(grid=8, query_every=20, per_cell=1, dense_frames=0, fill=False))
    assert (ts.query_frame == 0).sum() >= 60 and (ts.query_frame > 0).sum() <= 3
    assert ts.visible.sum(1).max() <= 64 + 3
    capped = track_frames(still, TrackerConfig(grid=8, query_every=20, per_cell=2, dense_frames=0, fill=False))
    assert 1.8 * (ts.query_frame == 0).sum() <= capped.visible.sum(1).max() <= 2 * 64 + 3   # one more per cell
    with pytest.raises(ValueError, match="per_cell"):
        TrackerConfig(per_cell=0)

    wide = texture(120, 160 + 160, seed=3)                    # the view slides right over it by 1.5 px a frame
    pan = np.stack([np.repeat(cv2.warpAffine(wide, np.float32([[1, 0, -1.5 * t], [0, 1, 0]]), (160, 120),
                                             flags=cv2.INTER_CUBIC).astype(np.uint8)[..., None], 3, -1)
                    for t in range(90)])
    ts = track_frames(pan, TrackerConfig(grid=8, query_every=20, per_cell=2, dense_frames=0, fill=False))
    for q in (20, 40, 60):                                    # (80: seen ahead for 9 frames only)
        new = ts.query_frame == q
        xs = ts.tracks[q, new, 0]
        assert (xs > 120).sum() >= 8 * 2 - 2                     # the two columns of cells the view brought in
    assert ts.visible.sum(1).max() <= 2 * 64       # tracks that left ended; the count stays bounded
    leaving = ts.visible[0] & (ts.tracks[0, :, 0] < 40)   # out of the image by frame 27
    assert leaving.any() and not ts.visible[28:, leaving].any()


def test_converging_tracks_do_not_pile_up():
    """A zoom out (the view's content shrinks towards the centre, so tracks converge): no grid cell ever holds more
    than ``per_cell`` tracks — the youngest end — unless the clip is within ``dense_frames``."""
    big = texture(240, 320, seed=5)
    frames = np.stack([np.repeat(cv2.warpAffine(big, cv2.getRotationMatrix2D((159.5, 119.5), 0, 1 - 0.5 * t / 59),
                                                (320, 240), flags=cv2.INTER_CUBIC)[..., None], 3, -1)
                       for t in range(60)]).astype(np.uint8)
    capped = track_frames(frames, TrackerConfig(grid=8, query_every=20, per_cell=2, dense_frames=0, fill=False))
    for t in range(60):
        seen = capped.tracks[t, capped.visible[t]]
        cells = (np.clip(seen[:, 1] * 8 / 240, 0, 7).astype(int) * 8 + np.clip(seen[:, 0] * 8 / 320, 0, 7).astype(int))
        assert np.bincount(cells).max() <= 2
    assert capped.visible[-1].sum() <= 2 * 64 < 2 * capped.visible[0].sum()
    free = track_frames(frames, TrackerConfig(grid=8, query_every=20, per_cell=1000, fill=False))
    assert free.visible[-1].sum() > 1.5 * capped.visible[-1].sum()
    short = track_frames(frames, TrackerConfig(grid=8, query_every=20, per_cell=2, dense_frames=60, fill=False))
    assert short.visible[-1].sum() > 1.3 * capped.visible[-1].sum()   # within dense_frames converging tracks go on


def test_texture_is_kept_in_one_byte_a_pixel_as_far_as_confidence_reads_it():
    from tracks4d.tracking.lk import _Texture, _texture_at, normalised_grey
    greys = [normalised_grey(f) for f in shifted_clip(n=3)]
    config = TrackerConfig()
    texture = _Texture(greys, config)
    assert all(m.dtype == np.uint8 and m.shape == greys[0].shape for m in texture.coded)
    points = np.random.default_rng(0).uniform(0, [159, 119], (500, 2)).astype(np.float32)
    exact = np.minimum(_texture_at(texture.exact(1), points), 4 * config.min_texture)
    np.testing.assert_allclose(texture.for_confidence(1, points), exact, atol=4 * config.min_texture / 510 + 1e-12)
