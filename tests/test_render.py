"""Rendered textured scenes (tracks4d.evaluation.render): exact ground-truth tracks, occlusion, determinism; TAP-Vid metrics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tracks4d.evaluation.render import RenderedScene, ground_truth_tracks, query_bodies, render_scene
from tracks4d.evaluation.tapvid import tapvid_metrics

N_FRAMES, SIZE = 16, (320, 240)


@pytest.fixture(scope="module")
def scene() -> RenderedScene:
    return render_scene(1, N_FRAMES, SIZE)


def colours(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear colours (M, 3) float32 of image (H, W, 3) at pixels (M, 2)."""
    xy = np.nan_to_num(pixels).astype(np.float32)
    return cv2.remap(image.astype(np.float32), xy[:, :1], xy[:, 1:], cv2.INTER_LINEAR)[:, 0]


def interior_pixels(face_id: np.ndarray, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Face shown around each pixel (M, 2) of one frame's face_id (H, W): (M,) int, and (M,) bool where the pixel is
    in the image and its whole 3×3 neighbourhood shows that one face."""
    h, w = face_id.shape
    xi, yi = np.round(np.nan_to_num(pixels, nan=-10)).astype(int).T
    inside = (xi >= 1) & (xi < w - 1) & (yi >= 1) & (yi < h - 1)
    xi, yi = np.clip(xi, 1, w - 2), np.clip(yi, 1, h - 2)
    centre = face_id[yi, xi]
    uniform = inside.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            uniform &= face_id[yi + dy, xi + dx] == centre
    return centre, uniform


def random_queries(rng: np.random.Generator, count: int) -> np.ndarray:
    """(count, 3) [t, x, y] anywhere in the clip."""
    return np.column_stack([rng.integers(0, N_FRAMES, count), rng.uniform(0, SIZE[0] - 1, count),
                            rng.uniform(0, SIZE[1] - 1, count)])


def test_scene_layout(scene):
    n, (w, h) = N_FRAMES, SIZE
    assert scene.frames.shape == (n, h, w, 3) and scene.frames.dtype == np.uint8
    assert scene.depth.shape == scene.face_id.shape == (n, h, w)
    assert scene.camera_to_world.shape == (n, 4, 4) and scene.intrinsics.shape == (3, 3)
    np.testing.assert_allclose(scene.camera_to_world @ scene.world_to_camera, np.broadcast_to(np.eye(4), (n, 4, 4)),
                               atol=1e-12)
    bodies = np.array([f.body for f in scene.faces])[scene.face_id]
    assert (scene.face_id >= 0).all()                      # the room closes the view
    assert (bodies > 0).any(axis=(1, 2)).all()             # a mover is in view in every frame
    assert len(np.unique(scene.frames[0].reshape(-1, 3), axis=0)) > 10_000   # textured


def test_tracks_start_at_their_queries(scene):
    queries = random_queries(np.random.default_rng(0), 500)
    tracks, occluded = ground_truth_tracks(scene, queries)
    assert tracks.shape == (N_FRAMES, 500, 2) and occluded.shape == (N_FRAMES, 500)
    at_query = np.arange(500), queries[:, 0].astype(int)
    np.testing.assert_allclose(tracks[at_query[1], at_query[0]], queries[:, 1:], atol=1e-9)
    assert not occluded[at_query[1], at_query[0]].any()


def test_static_points_keep_their_colour(scene):
    """Re-render check: where a static surface point is visible, the frame shows the colour it had at its query."""
    queries = random_queries(np.random.default_rng(1), 1500)
    static = query_bodies(scene, queries) == 0
    queries = queries[static]
    tracks, occluded = ground_truth_tracks(scene, queries)
    frame = queries[:, 0].astype(int)
    reference = np.stack([colours(scene.frames[t], q[None, 1:])[0] for t, q in zip(frame, queries)])
    errors, shifted = [], []
    for t in range(N_FRAMES):
        seen = ~occluded[t] & (frame != t)
        errors.append(np.abs(colours(scene.frames[t], tracks[t, seen]) - reference[seen]).mean(1))
        shifted.append(np.abs(colours(scene.frames[t], tracks[t, seen] + 2.0) - reference[seen]).mean(1))
    errors, shifted = np.concatenate(errors), np.concatenate(shifted)
    assert len(errors) > 5000
    assert np.median(errors) < 1.0 and np.percentile(errors, 90) < 5.0
    assert np.median(shifted) > 5 * np.median(errors) + 2.0   # a 2 px error would be seen


def test_occlusion_matches_the_rendered_surfaces(scene):
    """Static background points are occluded exactly where the rendered frame shows another surface there
    (a mover passing in front included), and visible where it shows their own face."""
    faces_body = np.array([f.body for f in scene.faces])
    ys, xs = np.mgrid[2:SIZE[1] - 2:4, 2:SIZE[0] - 2:4]
    pixels = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)
    own_face, clean = interior_pixels(scene.face_id[0], pixels)
    keep = clean & (faces_body[own_face] == 0)
    queries = np.column_stack([np.zeros(keep.sum()), pixels[keep]])
    own_face = own_face[keep]
    tracks, occluded = ground_truth_tracks(scene, queries)
    behind_mover = 0
    for t in range(1, N_FRAMES):
        shown, clean = interior_pixels(scene.face_id[t], tracks[t])
        np.testing.assert_array_equal(occluded[t, clean], shown[clean] != own_face[clean])
        behind_mover += int((clean & (faces_body[shown] > 0)).sum())
    assert behind_mover > 50


def test_occluded_out_of_view(scene):
    queries = random_queries(np.random.default_rng(2), 500)
    tracks, occluded = ground_truth_tracks(scene, queries)
    w, h = SIZE
    outside = (tracks[..., 0] < -0.5) | (tracks[..., 0] > w - 0.5) | (tracks[..., 1] < -0.5) | \
        (tracks[..., 1] > h - 0.5) | np.isnan(tracks[..., 0])
    assert outside.any() and occluded[outside].all()


def test_determinism():
    a, b = render_scene(5, 3, (96, 64), noise_std=2.0), render_scene(5, 3, (96, 64), noise_std=2.0)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.camera_to_world, b.camera_to_world)
    assert not np.array_equal(a.frames, render_scene(6, 3, (96, 64), noise_std=2.0).frames)
    clean = render_scene(5, 3, (96, 64))
    assert 1.0 < np.abs(a.frames.astype(float) - clean.frames).mean() < 3.0


# ------------------------------------------------------------------------------------------------- TAP-Vid metrics
@pytest.fixture()
def truth():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 200, (10, 30, 2))
    occluded = rng.random((10, 30)) < 0.3
    query = rng.integers(0, 10, 30)
    occluded[query, np.arange(30)] = False
    return gt, occluded, query


def test_metrics_perfect(truth):
    gt, occluded, query = truth
    m = tapvid_metrics(gt, ~occluded, gt, occluded, query)
    assert m["delta_avg"] == m["occlusion_accuracy"] == m["average_jaccard"] == 1.0


def test_metrics_three_pixels_off(truth):
    gt, occluded, query = truth
    offset = 3.0 * np.array([np.cos(0.7), np.sin(0.7)])
    m = tapvid_metrics(gt + offset, ~occluded, gt, occluded, query)
    assert (m["delta_1"], m["delta_2"], m["delta_4"], m["delta_8"], m["delta_16"]) == (0, 0, 1, 1, 1)
    assert m["delta_avg"] == pytest.approx(0.6) and m["average_jaccard"] == pytest.approx(0.6)
    assert m["occlusion_accuracy"] == 1.0


def test_metrics_all_predicted_occluded(truth):
    gt, occluded, query = truth
    m = tapvid_metrics(gt, np.zeros_like(occluded), gt, occluded, query)
    evaluated = np.arange(10)[:, None] != query[None]
    assert m["occlusion_accuracy"] == pytest.approx(occluded[evaluated].mean())
    assert m["average_jaccard"] == 0.0 and m["delta_avg"] == 1.0   # positions are scored regardless of flags


def test_metrics_jaccard_by_hand():
    """One track queried at frame 0: TP in frame 1, FP in frame 2 (truth occluded), FN in frame 3 (predicted
    occluded), and in frame 4 a visible prediction 5 px off (FP and FN below 8 px, TP from 8 px)."""
    gt = np.zeros((5, 1, 2))
    pred = gt.copy()
    pred[0] = 100.0                      # the query frame is never scored
    pred[4, 0] = (5.0, 0.0)
    pred_visible = np.array([[True], [True], [True], [False], [True]])
    gt_occluded = np.array([[False], [False], [True], [False], [False]])
    m = tapvid_metrics(pred, pred_visible, gt, gt_occluded, np.array([0]))
    assert [m[f"jaccard_{x}"] for x in (1, 2, 4, 8, 16)] == pytest.approx([1 / 5, 1 / 5, 1 / 5, 2 / 4, 2 / 4])
    assert m["occlusion_accuracy"] == pytest.approx(2 / 4)
    assert [m[f"delta_{x}"] for x in (1, 2, 4, 8, 16)] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1, 1])
    first = tapvid_metrics(pred, pred_visible, gt, gt_occluded, np.array([2]), mode="first")
    assert first["occlusion_accuracy"] == pytest.approx(1 / 2)   # frames 3 and 4 only


def test_a_longer_take_continues_the_same_paths():
    """span 2 over 5 frames (τ = 0, ½, 1, 1½, 2): its first three frames are the 3-frame clip's, bit for bit; the
    sliding box then goes back the way it came (at τ = 1½ where it was at ½), while the orbit goes on around."""
    short, long = (render_scene(4, n, (96, 64), camera="orbit", span=s) for n, s in ((3, 1.0), (5, 2.0)))
    np.testing.assert_array_equal(long.frames[:3], short.frames)
    np.testing.assert_array_equal(long.camera_to_world[:3], short.camera_to_world)
    np.testing.assert_array_equal(long.body_to_world[3, 1], short.body_to_world[1, 1])
    centre = long.camera_to_world[:, :2, 3] - long.camera_to_world[:, :2, 3].mean(0)
    turn = np.degrees(np.unwrap(np.arctan2(centre[:, 1], centre[:, 0])))
    assert abs(turn[4] - turn[0]) > 1.6 * abs(turn[2] - turn[0])       # still turning the same way
    with pytest.raises(ValueError, match="span"):
        render_scene(4, 3, (96, 64), span=0.0)
