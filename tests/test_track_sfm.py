"""Cameras from tracks alone, and the BA fallback that uses them when the network's cameras are too far off."""

import dataclasses

import numpy as np

from tracks4d.pipeline import _from_track_cameras
from tracks4d.track_sfm import cameras_from_tracks, with_track_cameras

from test_bundle_adjust import _centre_error, make_scene


def blind(rec):
    """The reconstruction as a network that has not learned cameras gives it: every camera the same, turned 15°."""
    turn = np.eye(4)
    turn[[0, 0, 2, 2], [0, 2, 0, 2]] = np.cos(0.26), np.sin(0.26), -np.sin(0.26), np.cos(0.26)
    w2c = np.broadcast_to(turn @ rec.world_to_camera[0], rec.world_to_camera.shape).copy()
    return dataclasses.replace(rec, world_to_camera=w2c, camera_to_world=np.linalg.inv(w2c))


def test_cameras_from_tracks_recover_the_trajectory():
    rec, c2w_true, _ = make_scene(seed=5)
    w2c, posed = cameras_from_tracks(rec.tracks, rec.visible, rec.intrinsics)
    assert posed.all()
    assert _centre_error(np.linalg.inv(w2c), c2w_true) < 0.02 * np.ptp(c2w_true[:, 0, 3])


def test_static_tracks_found_and_movers_left_out():
    rec, _, _ = make_scene(seed=6)                       # last 50 of 350 points move
    _, static = with_track_cameras(blind(rec))
    assert static[:300].mean() > 0.8 and static[300:].mean() < 0.1


def test_ba_falls_back_to_track_cameras_when_the_network_has_none():
    rec, c2w_true, _ = make_scene(seed=7)
    weak = blind(rec)
    out = _from_track_cameras(weak, known=True)
    assert out is not None and out.meta["camera_init"]["from"] == "tracks"
    assert _centre_error(out.camera_to_world, c2w_true) < 0.01 * np.ptp(c2w_true[:, 0, 3])
    assert out.meta["bundle_adjustment"]["final_rms_px"] < 1.0
