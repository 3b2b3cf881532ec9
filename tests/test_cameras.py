"""The camera stage: motion model selection, cameras from tracks, the seed test and one bundle adjustment."""

import dataclasses

import numpy as np
import pytest

from tracks4d.contracts import Cameras
from tracks4d.evaluation.metrics import absolute_trajectory_error
from tracks4d.geometry import invert_rigid
from tracks4d.geometry.cameras import rotation_cameras, solve_cameras
from tracks4d.geometry.motion_model import select_motion_model
from tracks4d.geometry.track_sfm import cameras_from_tracks
from training.synthetic import SceneConfig, generate_scene

from test_bundle_adjust import _centre_error, make_scene


def blind(rec) -> Cameras:
    """The cameras a network that has not learned them gives: every camera the same, turned 15°."""
    turn = np.eye(4)
    turn[[0, 0, 2, 2], [0, 2, 0, 2]] = np.cos(0.26), np.sin(0.26), -np.sin(0.26), np.cos(0.26)
    return Cameras(np.broadcast_to(turn @ rec.world_to_camera[0], rec.world_to_camera.shape).copy(), rec.intrinsics)


def scene_cameras(scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = scene.tracks
    return t.tracks, t.visible, t.intrinsics_per_frame()


def _rotation_error_deg(c2w_est: np.ndarray, c2w_true: np.ndarray) -> float:
    rel = np.swapaxes(c2w_true[:, :3, :3], 1, 2) @ c2w_est[:, :3, :3]
    return float(np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1))).mean())


def test_cameras_from_tracks_recover_the_trajectory():
    rec, c2w_true, _ = make_scene(seed=5)
    (_, w2c, posed), *_ = cameras_from_tracks(rec.tracks, rec.visible, rec.intrinsics)
    assert posed.all()
    assert _centre_error(invert_rigid(w2c), c2w_true) < 0.02 * np.ptp(c2w_true[:, 0, 3])


def test_blind_network_cameras_lose_to_the_tracks_and_one_adjustment_finishes_them():
    rec, c2w_true, _ = make_scene(seed=7)
    solution = solve_cameras(rec.tracks, rec.visible, blind(rec), None, adjust=True, refine_focal=False)
    assert solution.source.startswith("tracks") and solution.model.kind == "general"
    assert solution.seeds["network"] < 0.1 * solution.seeds[solution.source]
    assert _centre_error(solution.cameras.camera_to_world, c2w_true) < 0.01 * np.ptp(c2w_true[:, 0, 3])
    assert not solution.ba.skipped and solution.ba.final_rms_px < 1.0 and solution.ba.n_frames == rec.n_frames


def test_good_network_cameras_win_ties():
    rec, c2w_true, _ = make_scene(seed=8)
    truth = Cameras(invert_rigid(c2w_true), rec.intrinsics)
    solution = solve_cameras(rec.tracks, rec.visible, truth, None, adjust=False, refine_focal=False,
                             camera_init="network")
    assert solution.source == "network" and set(solution.seeds) == {"network", "rotation"}
    np.testing.assert_array_equal(solution.cameras.world_to_camera, truth.world_to_camera)


def test_fixed_camera_gets_rotations_from_the_tracks():
    rec, c2w_true, _ = make_scene(arc=0.0, seed=3)          # a fixed camera, cameras perturbed by ~1°
    solution = solve_cameras(rec.tracks, rec.visible, Cameras(rec.world_to_camera, rec.intrinsics), None,
                             adjust=True, refine_focal=False)
    assert solution.rotation_only and solution.source == "rotation" and solution.ba is None
    cams = solution.cameras.camera_to_world
    assert _rotation_error_deg(cams, c2w_true) < 0.1 < _rotation_error_deg(rec.camera_to_world, c2w_true)
    np.testing.assert_allclose(cams[:, :3, 3], np.broadcast_to(cams[0, :3, 3], (rec.n_frames, 3)), atol=1e-9)


def test_rotation_only_segment_is_detected():
    """A tripod that pans, then walks: rotation-only for the first part, general after; an orbit is general
    throughout and a fixed camera rotation-only throughout."""
    mixed = select_motion_model(*scene_cameras(generate_scene(4_100_004, SceneConfig(camera="tripod_walk"))))
    assert mixed.kind == "mixed" and [s.kind for s in mixed.segments] == ["rotation", "general"]
    assert 15 <= mixed.segments[0].end <= 30
    assert select_motion_model(*scene_cameras(generate_scene(4_100_000, SceneConfig(camera="orbit")))).kind \
        == "general"
    assert select_motion_model(*scene_cameras(generate_scene(4_100_003, SceneConfig(camera="static")))).kind \
        == "rotation"


def test_rotation_cameras_chain_to_an_early_reference():
    scene = generate_scene(4_100_003, SceneConfig(camera="static", n_frames=50))
    tracks, visible, k = scene_cameras(scene)
    w2c = rotation_cameras(tracks, visible, k, scene.world_to_camera[0])
    assert _rotation_error_deg(invert_rigid(w2c), scene.camera_to_world) < 0.2


def test_an_essential_matrix_locked_on_a_mover_loses_the_seed_test():
    """In this clip a large moving object outvotes the background in every initial pair; the growth from the tracks
    the first essential matrix leaves out explains twice as many tracks as static, and wins."""
    scene = generate_scene(4_100_002, SceneConfig(camera="tripod_walk"))
    tracks, visible, k = scene_cameras(scene)
    solution = solve_cameras(tracks, visible, Cameras(np.tile(np.eye(4), (len(k), 1, 1)), k), None, adjust=True,
                             refine_focal=False)
    grown = {name: n for name, n in solution.seeds.items() if name.startswith("tracks")}
    assert solution.seeds[solution.source] == max(grown.values()) > 1.8 * min(grown.values())
    path = np.linalg.norm(np.diff(scene.camera_to_world[:, :3, 3], axis=0), axis=1).sum()
    assert absolute_trajectory_error(solution.cameras.camera_to_world, scene.camera_to_world) < 0.02 * path


def test_bad_camera_init():
    rec, _, _ = make_scene(n=5, n_static=10, n_dynamic=2, seed=3)
    with pytest.raises(ValueError, match="camera_init"):
        solve_cameras(rec.tracks, rec.visible, blind(rec), None, adjust=False, refine_focal=False,
                      camera_init="magic")


def test_a_long_clip_is_one_solve():
    """150 frames: the track cameras grow over the whole clip and one bundle adjustment covers every frame."""
    scene = generate_scene(3_000_006, dataclasses.replace(SceneConfig(), n_frames=150, camera="orbit",
                                                          motion_frames=50))
    tracks, visible, k = scene_cameras(scene)
    solution = solve_cameras(tracks, visible, Cameras(np.tile(np.eye(4), (150, 1, 1)), k), None, adjust=True,
                             refine_focal=False)
    assert solution.ba.n_frames == 150 and not solution.ba.skipped
    path = np.linalg.norm(np.diff(scene.camera_to_world[:, :3, 3], axis=0), axis=1).sum()
    assert absolute_trajectory_error(solution.cameras.camera_to_world, scene.camera_to_world) < 0.005 * path
