"""Long videos: window spans and stitching windows that each live in their own Sim(3) gauge."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tracks4d.contracts import Reconstruction
from tracks4d.geometry import invert_rigid
from tracks4d.evaluation.metrics import absolute_trajectory_error
from tracks4d.geometry import umeyama_sim3
from tracks4d.geometry.transforms import Sim3
from tracks4d.network.stitch import reconstruct_long, robust_sim3, split_windows, stitch, window_spans
from training.synthetic import SceneConfig, generate_scene


def test_window_spans():
    assert window_spans(40) == [(0, 40)]
    spans = window_spans(150, 50, 10)
    assert spans[0][0] == 0 and spans[-1][1] == 150
    assert all(b[0] <= a[1] - 10 for a, b in zip(spans, spans[1:]))
    assert len(spans) == 4 and all(e - s == 45 for s, e in spans)  # the fewest windows, of one length
    for n in range(51, 400):
        spans = window_spans(n, 50, 10)
        assert spans[0][0] == 0 and spans[-1][1] == n and all(e - s <= 50 for s, e in spans)
        assert all(b[0] <= a[1] - 10 for a, b in zip(spans, spans[1:]))
        assert len(spans) == -(-(n - 10) // 40)
    with pytest.raises(ValueError):
        window_spans(100, 50, 50)


def oracle_window(scene, span, idx, rng, noise):
    """A window 'reconstruction' from ground truth, in a random Sim(3) gauge, with camera-centre noise."""
    start, end = span
    sim = Sim3(float(rng.uniform(0.3, 3.0)), Rotation.random(random_state=rng.integers(1 << 30)).as_matrix(),
               rng.normal(size=3) * 5)
    c2w = scene.camera_to_world[start:end].copy()
    c2w[:, :3, 3] += rng.normal(size=(end - start, 3)) * noise
    c2w = sim.camera_to_world(c2w)
    pts = sim.points(scene.world_points[start:end][:, idx])
    static = sim.points(scene.world_points[start, idx])
    w2c = invert_rigid(c2w)
    depth = (np.einsum("nij,npj->npi", w2c[:, :3, :3], pts) + w2c[:, None, :3, 3])[..., 2]
    gamma = np.where(scene.dynamic[idx], 1.0, 0.001)
    n = end - start
    return Reconstruction(c2w, w2c, scene.intrinsics[start:end], pts, static, gamma, depth, static[None],
                          np.ones((n, 1)), scene.tracks.tracks[start:end][:, idx],
                          scene.tracks.visible[start:end][:, idx])


@pytest.mark.parametrize("camera", ["orbit", "walk"])
def test_stitched_ate_stays_near_per_window_ate(camera):
    scene = generate_scene(3, SceneConfig(n_frames=150, motion_frames=150, camera=camera))
    rng = np.random.default_rng(0)
    noise = 0.02
    windows, per_window = [], []
    for span, idx, _ in split_windows(scene.tracks, 50, 10):
        rec = oracle_window(scene, span, idx, rng, noise)
        per_window.append(absolute_trajectory_error(rec.camera_to_world, scene.camera_to_world[span[0]:span[1]]))
        windows.append((span, idx, rec))
    out = stitch(scene.tracks, windows)
    assert out.n_frames == 150 and out.n_points == scene.tracks.n_points
    np.testing.assert_array_equal(out.tracks, scene.tracks.tracks)
    stitched = absolute_trajectory_error(out.camera_to_world, scene.camera_to_world)
    print(f"{camera}: stitched ATE {stitched:.4f}, mean per-window ATE {np.mean(per_window):.4f}")
    assert stitched <= 1.5 * np.mean(per_window)
    assert len(out.meta["stitching"]["windows"]) == len(windows)


def test_reconstruct_long_calls_each_window_once():
    scene = generate_scene(5, SceneConfig(n_frames=80, motion_frames=80))
    calls = []
    rng = np.random.default_rng(1)

    def run(sub):
        calls.append(sub.n_frames)
        span, idx, _ = split_windows(scene.tracks, 50, 10)[len(calls) - 1]
        return oracle_window(scene, span, idx, rng, 0.0)

    out = reconstruct_long(scene.tracks, run, 50, 10)
    assert calls == [45, 45]  # 80 frames: two windows of 45 sharing 10
    assert absolute_trajectory_error(out.camera_to_world, scene.camera_to_world) < 1e-6


def test_last_window_overlapping_two_earlier_ones():
    """95 frames, windows of ≤ 50 sharing ≥ 30: 0-46, 16-62, 32-78, 48-94; the last shares frames with two earlier
    windows and is aligned to the one before it as moved into the world, exactly."""
    scene = generate_scene(5, SceneConfig(n_frames=95, motion_frames=95))
    rng = np.random.default_rng(2)
    spans = split_windows(scene.tracks, 50, 30)
    assert [span for span, _, _ in spans] == [(0, 47), (16, 63), (32, 79), (48, 95)]
    out = stitch(scene.tracks, [(span, idx, oracle_window(scene, span, idx, rng, 0.0)) for span, idx, _ in spans])
    assert absolute_trajectory_error(out.camera_to_world, scene.camera_to_world) < 1e-6


def test_robust_sim3_ignores_wrong_correspondences():
    """30 % of the correspondences are wrong (like moving points placed at the network's depth): the robust fit
    recovers the similarity where the least-squares one does not."""
    rng = np.random.default_rng(0)
    rot = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    src = rng.normal(size=(200, 3))
    dst = 2.5 * src @ rot.T + np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.01, size=(200, 3))
    wrong = rng.random(200) < 0.3
    dst[wrong] *= rng.uniform(1.5, 3.0, size=(wrong.sum(), 1))  # wrong depth: pushed out along the ray
    fit = robust_sim3(src, dst)
    assert abs(fit.scale - 2.5) < 0.01
    assert np.abs(fit.rotation - rot).max() < 0.01
    assert np.abs(fit.translation - [1.0, -2.0, 0.5]).max() < 0.02
    s, r, _ = umeyama_sim3(src, dst)
    assert abs(s - 2.5) > 0.1
    with pytest.raises(ValueError, match="fewer than 3"):
        robust_sim3(src[:2], dst[:2])
