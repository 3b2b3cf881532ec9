"""`tracks4d track`, the overlay pictures, and the CoTracker adapter (against a stand-in with its signature)."""

import sys

import av
import numpy as np
import pytest
import torch

from tracks4d.cli import main
from tracks4d.contracts import TrackSet
from tracks4d.tracking.cotracker import CoTrackerUnavailable, load_cotracker, track_frames_cotracker
from tracks4d.io.overlay import draw_tracks
from tracks4d.tracking import TrackerConfig
from helpers import shifted_clip, write_mp4





def test_track_command_writes_tracks_and_overlay(tmp_path, capsys):
    write_mp4(tmp_path / "clip.mp4", shifted_clip(n=24, h=240, w=320))
    out = tmp_path / "tracks.npz"
    assert main(["track", str(tmp_path / "clip.mp4"), "-o", str(out), "--grid", "8", "--no-progress"]) == 0
    ts = TrackSet.load(out)
    assert ts.n_frames == 24 and ts.n_points > 20 and ts.query_frame is not None
    assert (tmp_path / "tracks.overlay.png").stat().st_size > 10_000
    with av.open(str(tmp_path / "tracks.overlay.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 24
    printed = capsys.readouterr().out
    assert "24 frames" in printed and "visible" in printed and "track" in printed


@pytest.mark.parametrize("argv, words", [
    (["track", "missing.mp4", "-o", "t.npz"], "no such file"),
    (["track", "{tmp}/notes.txt", "-o", "t.npz"], "unsupported input type"),
    (["track", "{tmp}/clip.mp4", "-o", "{tmp}/t.json"], "must be a .npz"),
    (["track", "{tmp}/clip.mp4", "-o", "{tmp}/t.npz", "--tracker", "cotracker"], "--tracker-checkpoint"),
    (["track", "{tmp}/clip.mp4", "-o", "{tmp}/t.npz", "--stride", "0"], "stride"),
])
def test_track_command_bad_input(tmp_path, capsys, argv, words):
    write_mp4(tmp_path / "clip.mp4", shifted_clip(n=12))
    (tmp_path / "notes.txt").write_text("x")
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and err.startswith("tracks4d: error:")


def test_overlay_draws_visible_points_only():
    frames = np.zeros((3, 40, 40, 3), np.uint8)
    tracks = np.array([[[10, 10], [30, 30]]] * 3, np.float32)
    visible = np.array([[True, False]] * 3)
    drawn = draw_tracks(frames, tracks, visible)
    assert drawn[:, 10, 10].any() and not drawn[:, 30, 30].any()


class StandInCoTracker:
    """CoTracker's offline predictor call signature and output shapes; tracks move right by 1 px per frame and a
    quarter of the points are hidden after frame 15."""

    def __init__(self):
        self.calls = []

    def __call__(self, video, queries, backward_tracking=False):
        self.calls.append((tuple(video.shape), tuple(queries.shape), backward_tracking))
        t = video.shape[1]
        q = queries[0]
        steps = torch.arange(t, dtype=torch.float32)[:, None] - q[None, :, 0]
        tracks = torch.stack((q[None, :, 1] + steps, q[None, :, 2].expand(t, -1)), -1)[None]
        vis = torch.ones(1, t, q.shape[0], dtype=torch.bool)
        vis[0, 16:, : q.shape[0] // 4] = False
        return tracks, vis


def test_cotracker_adapter_contract():
    frames = shifted_clip(n=30, h=60, w=80)
    predictor = StandInCoTracker()
    ts = track_frames_cotracker(frames, predictor, TrackerConfig(grid=5, query_every=20))
    video_shape, query_shape, backward = predictor.calls[0]
    assert video_shape == (1, 30, 3, 60, 80) and query_shape == (1, 3 * 25, 3) and backward
    assert ts.n_frames == 30 and set(np.unique(ts.query_frame)) == {0, 20, 29}
    p = np.arange(ts.n_points)
    np.testing.assert_allclose(ts.tracks[ts.query_frame, p, 0] + 5 - ts.query_frame, ts.tracks[5, p, 0])
    assert ts.image_size.tolist() == [80, 60]

    def wrong_shape(video, queries, backward_tracking=False):
        return torch.zeros(1, 2, 3, 2), torch.zeros(1, 2, 3)

    with pytest.raises(ValueError, match="expected"):
        track_frames_cotracker(frames, wrong_shape)


def test_cotracker_missing_gives_install_steps(tmp_path, monkeypatch):
    with pytest.raises(CoTrackerUnavailable, match="--tracker-checkpoint"):
        load_cotracker(None)
    with pytest.raises(CoTrackerUnavailable, match="not found"):
        load_cotracker(tmp_path / "absent.pth")
    ckpt = tmp_path / "scaled_offline.pth"
    ckpt.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "cotracker", None)  # as if not installed
    with pytest.raises(CoTrackerUnavailable, match="not installed.*pip install -e"):
        load_cotracker(ckpt)
