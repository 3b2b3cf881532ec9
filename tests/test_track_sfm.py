"""Cameras from tracks alone, and the BA fallback that uses them when the network's cameras are too far off."""

import dataclasses

import numpy as np

from tracks4d.pipeline import _from_track_cameras
from tracks4d.geometry.track_sfm import cameras_from_tracks, with_track_cameras

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


def test_a_failed_start_is_replaced_by_a_better_initial_pair():
    """Frames 80–129 of this held-out orbit: growing from the clip's first frames poses under half of them (the
    network-free chain loses its way); a later initial pair poses all 50 and the trajectory comes out right."""
    from dataclasses import replace as dc_replace

    from tracks4d.geometry import invert_rigid
    from tracks4d.evaluation.metrics import absolute_trajectory_error
    from tracks4d.network.stitch import split_windows
    from training.synthetic import SceneConfig, generate_scene

    scene = generate_scene(3_000_006, dc_replace(SceneConfig(), n_frames=150, camera="orbit", motion_frames=50))
    tracks = scene.tracks.subset(points=np.sort(np.random.default_rng(3).choice(scene.tracks.n_points, 600,
                                                                                  replace=False)))
    (start, end), _, window = split_windows(tracks, 50, 10)[2]
    w2c, posed = cameras_from_tracks(window.tracks, window.visible, window.intrinsics_per_frame())
    truth = scene.camera_to_world[start:end]
    path = np.linalg.norm(np.diff(truth[:, :3, 3], axis=0), axis=1).sum()
    assert posed.all()
    assert absolute_trajectory_error(invert_rigid(w2c), truth) < 0.005 * path
