"""Long clips' cameras: work that grows with the observations (track groups), and pieces solved alone and joined."""

import dataclasses

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tracks4d.contracts import Cameras
from tracks4d.evaluation.metrics import absolute_trajectory_error
from tracks4d.geometry import invert_rigid, pose_matrix
from tracks4d.geometry.cameras import _solve_in_pieces, in_pieces
from tracks4d.geometry.motion_model import select_motion_model
from tracks4d.geometry.pieces import PIECE_FRAMES, PIECE_OVERLAP, joining_similarity, piece_spans
from tracks4d.geometry.transforms import Sim3, transform_points, umeyama_sim3
from tracks4d.geometry.triangulation import _triangulate, reprojection_errors, track_groups, triangulate
from training.synthetic import SceneConfig, generate_scene


def short_tracks(n: int, per_frame: int = 40, life: int = 30, seed: int = 0):
    """A camera walking past a wall of points, each seen for ``life`` frames (new ones as it goes) → (tracks (N, P, 2),
    visible (N, P), w2c (N, 4, 4), K (N, 3, 3), points (P, 3))."""
    rng = np.random.default_rng(seed)
    born = np.repeat(np.arange(0, n, max(1, life // 4)), max(1, per_frame // 4))
    p = born.size
    centres = np.stack([0.05 * np.arange(n), np.zeros(n), np.zeros(n)], 1)
    w2c = invert_rigid(np.stack([pose_matrix(np.eye(3), c) for c in centres]))
    points = np.stack([0.05 * (born + life / 2) + rng.uniform(-1, 1, p), rng.uniform(-1, 1, p),
                       rng.uniform(3, 6, p)], 1)
    k = np.tile(np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), (n, 1, 1))
    cam = transform_points(w2c, points)
    tracks = np.einsum("nij,npj->npi", k, cam)
    tracks = tracks[..., :2] / tracks[..., 2:] + rng.normal(0, 0.3, (n, p, 2))
    frame = np.arange(n)[:, None]
    visible = (frame >= born[None]) & (frame < born[None] + life)
    return tracks, visible, w2c, k, points


@pytest.mark.parametrize("n", [60, 300])
def test_track_groups_cover_every_track_once_and_give_the_dense_results(n):
    tracks, visible, w2c, k, points = short_tracks(n)
    groups = track_groups(visible)
    covered = np.concatenate([np.arange(visible.shape[1])[c] for _, c in groups])
    assert np.array_equal(np.sort(covered), np.arange(visible.shape[1]))
    for frames, c in groups:                          # a group's frames hold every frame its tracks are seen in
        outside = np.ones(n, bool)
        outside[frames] = False
        assert not visible[outside][:, c].any()
    placed = triangulate(tracks, visible, w2c, k)
    np.testing.assert_allclose(placed, _triangulate(tracks, visible, w2c, k, None, None), rtol=1e-6)
    assert np.median(np.linalg.norm(placed - points, axis=1)) < 0.05
    dense = reprojection_errors(placed, tracks, w2c, k)
    grouped = reprojection_errors(placed, tracks, w2c, k, visible)
    np.testing.assert_allclose(grouped[visible], dense[visible], rtol=1e-9)


def test_the_work_of_track_groups_grows_with_the_observations_not_frames_times_tracks():
    """Counting work, not timing: the (frame × track) entries the groups cover, against the observations."""
    work = {}
    for n in (300, 600, 1200):
        _, visible, *_ = short_tracks(n)
        area = sum(len(range(visible.shape[0])[frames]) * len(np.arange(visible.shape[1])[c])
                   for frames, c in track_groups(visible))
        assert area <= 4 * visible.sum()
        assert area < 0.25 * visible.size                 # dense would be every (frame × track) entry
        work[n] = area
    assert work[1200] / work[300] < 4.5                    # 4× the frames, about 4× the work (dense: 16×)


def test_piece_spans_overlap_and_cover_the_clip():
    assert piece_spans(300) == [(0, 50), (37, 87), (74, 124), (111, 161), (148, 198), (185, 235), (222, 272),
                                (250, 300)]
    for n in (200, 201, 333, 1800):
        spans = piece_spans(n)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(end - start == PIECE_FRAMES for start, end in spans)
        assert all(b[0] <= a[1] - PIECE_OVERLAP for a, b in zip(spans, spans[1:]))


def test_joining_similarity_recovers_a_known_similarity():
    _, _, w2c, _, points = short_tracks(40)
    truth = Sim3(2.5, Rotation.from_euler("xyz", [10, -30, 5], degrees=True).as_matrix(),
                       np.array([1.0, -2.0, 0.5]))
    clip_w2c = truth.world_to_camera(w2c)
    clip_depth = transform_points(clip_w2c, truth.points(points))[..., 2]
    piece_depth = transform_points(w2c, points)[..., 2]
    found, pairs = joining_similarity(clip_w2c, w2c, clip_depth, piece_depth, fallback_scale=1.0)
    assert pairs == piece_depth.size
    assert found.scale == pytest.approx(2.5, rel=1e-9)
    np.testing.assert_allclose(found.rotation, truth.rotation, atol=1e-9)
    np.testing.assert_allclose(found.translation, truth.translation, atol=1e-9)
    np.testing.assert_allclose(found.world_to_camera(w2c), clip_w2c, atol=1e-9)
    few, pairs = joining_similarity(clip_w2c[:5], w2c[:5], clip_depth[:5, :3], piece_depth[:5, :3], fallback_scale=3.0)
    assert pairs < 20 and few.scale == 3.0                # too few depths: the fallback scale


def test_pieces_are_for_long_clips_whose_tracks_live_short():
    assert in_pieces(short_tracks(300)[1])                  # tracks live 30 frames: a long chain
    assert not in_pieces(short_tracks(150)[1])              # too short a clip
    assert not in_pieces(short_tracks(300, life=120)[1])    # a slow take: long-lived tracks, one growth chains them


def test_a_long_clip_is_solved_in_pieces_joined_at_one_scale():
    """240 frames: seven pieces, each solved alone, joined and adjusted once — the path within 0.5 %, and every
    50-frame stretch at the same scale as the whole (a break would show as a stretch at its own scale). (This clip's
    tracks live long — :func:`in_pieces` would solve it in one growth; the pieces are asked for directly.)"""
    scene = generate_scene(3_000_006, dataclasses.replace(SceneConfig(), n_frames=240, camera="orbit",
                                                          motion_frames=50))
    t = scene.tracks
    network = Cameras(np.tile(np.eye(4), (240, 1, 1)), t.intrinsics_per_frame())
    model = select_motion_model(t.tracks, t.visible, network.intrinsics)
    solution = _solve_in_pieces(t.tracks, t.visible, network, None, model, adjust=True, refine_focal=False,
                                camera_init="auto", static_gamma=None)
    assert solution.source == "pieces" and [p["frames"] for p in solution.pieces] == [
        [0, 50], [37, 87], [74, 124], [111, 161], [148, 198], [185, 235], [190, 240]]
    assert all(p["scale_pairs"] >= 20 for p in solution.pieces[1:])
    assert solution.ba.n_frames == 240 and not solution.ba.skipped
    truth = scene.camera_to_world
    path = np.linalg.norm(np.diff(truth[:, :3, 3], axis=0), axis=1).sum()
    assert absolute_trajectory_error(solution.cameras.camera_to_world, truth) < 0.005 * path
    scales = [umeyama_sim3(solution.cameras.centres[s:s + 50], truth[s:s + 50, :3, 3])[0] for s in (0, 95, 190)]
    assert max(scales) / min(scales) < 1.05
    assert solution.to_meta()["pieces"][0]["source"]
