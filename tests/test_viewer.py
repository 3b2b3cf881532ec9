"""The viser viewer: serves HTML on loopback, builds one frustum per frame, the slider swaps the point cloud."""

from __future__ import annotations

import socket
import urllib.request

import numpy as np
import pytest

viser = pytest.importorskip("viser")

from tracks4d.contracts import Reconstruction  # noqa: E402
from tracks4d.io.viewer import build_scene, frustum_fov_aspect, load_dense, serve  # noqa: E402

N, P = 4, 30


def _reconstruction() -> Reconstruction:
    """N cameras sliding along x, looking down +z at P points, some moving; a few points hidden per frame."""
    rng = np.random.default_rng(0)
    c2w = np.tile(np.eye(4), (N, 1, 1))
    c2w[:, 0, 3] = np.linspace(0.0, 1.0, N)
    w2c = np.linalg.inv(c2w)
    static = rng.uniform([-2, -2, 4], [2, 2, 8], (P, 3))
    gamma = np.where(np.arange(P) < 10, 0.5, 0.001)
    points = static[None] + (gamma[None, :, None] > 0.1) * np.arange(N)[:, None, None] * [0.0, 0.3, 0.0]
    k = np.array([[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]])
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    tracks = (cam[..., :2] / cam[..., 2:]) * 100.0 + [64, 48]
    visible = rng.random((N, P)) > 0.2
    visible[:, 0] = True
    bases = np.stack([static, np.zeros_like(static)])
    return Reconstruction(c2w, w2c, np.tile(k, (N, 1, 1)), points, static, gamma, cam[..., 2], bases,
                          np.ones((N, 2)), tracks, visible, {"test": True})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    srv = viser.ViserServer(host="127.0.0.1", port=_free_port(), verbose=False)
    yield srv
    srv.stop()


def test_serve_folder_answers_html_on_loopback(tmp_path, capsys):
    _reconstruction().save(tmp_path / "reconstruction.npz")
    srv = serve(tmp_path, host="127.0.0.1", port=_free_port(), block=False)
    try:
        assert srv.get_host() == "127.0.0.1"
        url = f"http://127.0.0.1:{srv.get_port()}/"
        assert url in capsys.readouterr().out
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200
            assert b"<html" in reply.read().lower()
        assert srv.request_share_url() is None  # no public tunnel, whatever a browser asks
    finally:
        srv.stop()


def test_build_scene_handles_and_slider(server):
    rec = _reconstruction()
    scene = build_scene(server, rec, frame=0)
    assert len(scene.frustums) == N and scene.path is not None
    assert scene.slider.max == N - 1 and scene.slider.value == 0
    np.testing.assert_array_equal(scene.cloud.points, rec.points[0][rec.visible[0]])
    scene.slider.value = 2  # runs the slider's callback, as a browser would
    np.testing.assert_array_equal(scene.cloud.points, rec.points[2][rec.visible[2]])
    assert scene.cloud.colors.shape == (rec.visible[2].sum(), 3)
    assert tuple(scene.frustums[2].color) != tuple(scene.frustums[0].color)
    scene.point_size.value = scene.point_size.max
    assert scene.cloud.point_size == pytest.approx(scene.point_size.max)
    scene.show_static.value = False
    assert not scene.static.visible


def test_refined_gaussians_follow_the_slider(server, tmp_path):
    rec = _reconstruction()
    moving = np.r_[np.zeros(5, bool), np.ones(3, bool)]
    trajectories = np.arange(N * 3 * 3, dtype=np.float32).reshape(N, 3, 3)
    np.savez(tmp_path / "refined.npz", means=np.ones((8, 3)), moving=moving, moving_means=trajectories,
             colours=np.full((8, 3), 0.5), track=np.full(8, -1))
    dense = load_dense(tmp_path / "refined.npz", N)
    assert dense.static.shape == (5, 3) and dense.moving_colours.shape == (3, 3)
    scene = build_scene(server, rec, frame=0, dense=dense)
    scene.slider.value = 3
    np.testing.assert_array_equal(scene.dense[1].points, trajectories[3])
    scene.show_dense.value = False
    assert not scene.dense[0].visible and not scene.dense[1].visible
    with pytest.raises(ValueError, match="frames"):
        load_dense(tmp_path / "refined.npz", N + 1)


def test_frustum_pose_and_fov(server):
    rec = _reconstruction()
    scene = build_scene(server, rec)
    np.testing.assert_allclose(scene.frustums[3].position, rec.camera_to_world[3, :3, 3])
    np.testing.assert_allclose(scene.frustums[3].wxyz, [1, 0, 0, 0], atol=1e-9)
    fov, aspect = frustum_fov_aspect(rec.intrinsics[0])
    assert fov == pytest.approx(2 * np.arctan(48 / 100)) and aspect == pytest.approx(64 / 48)


def test_bad_path_names_it(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        serve(tmp_path / "nowhere", block=False)
    with pytest.raises(ValueError, match="reconstruction.npz"):
        serve(tmp_path, block=False)  # a folder without reconstruction.npz
