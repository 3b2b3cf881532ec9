"""COLMAP text export: read back with pycolmap, poses, points, projections, static selection, CLI, atomic writes."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest

from tracks4d.contracts import Reconstruction
from tracks4d.io.colmap import DEFAULT_STATIC_GAMMA, rotation_to_quaternion, write_colmap_text
from tracks4d.io.export import write_outputs

pycolmap = pytest.importorskip("pycolmap")

W, H = 640, 480
N_FRAMES, N_POINTS = 6, 50


def _look_at(centre: np.ndarray) -> np.ndarray:
    """(4, 4) OpenCV camera_to_world at ``centre`` looking at the origin, y pointing down."""
    z = -centre / np.linalg.norm(centre)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = centre
    return c2w


def _scene(per_frame_k: bool = False, seed: int = 0, **meta) -> Reconstruction:
    """6 cameras on an arc of radius 5 around 50 random points; tracks 0–9 move (γ 0.5), the rest are static
    (γ 0.001); about 10 % of the observations are invisible."""
    rng = np.random.default_rng(seed)
    angles = np.linspace(-0.6, 0.6, N_FRAMES)
    c2w = np.stack([_look_at(np.array([5 * np.sin(a), -0.5, -5 * np.cos(a)])) for a in angles])
    w2c = np.linalg.inv(c2w)
    k = np.tile(np.array([[500.0, 0, (W - 1) / 2], [0, 510.0, (H - 1) / 2], [0, 0, 1]]), (N_FRAMES, 1, 1))
    if per_frame_k:
        k[:, 0, 0] += 10 * np.arange(N_FRAMES)
    static = rng.normal(scale=0.7, size=(N_POINTS, 3)).astype(np.float32)
    points = np.repeat(static[None], N_FRAMES, axis=0)
    points[:, :10] += rng.normal(scale=0.2, size=(N_FRAMES, 10, 3)).astype(np.float32)  # moving tracks
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], points.astype(np.float64)) + w2c[:, None, :3, 3]
    tracks = np.einsum("nij,npj->npi", k, cam / cam[..., 2:])[..., :2]
    visible = rng.random((N_FRAMES, N_POINTS)) > 0.1
    visible[:, 10] = True
    motion = np.where(np.arange(N_POINTS) < 10, 0.5, 0.001)
    return Reconstruction(
        camera_to_world=c2w, world_to_camera=w2c, intrinsics=k, points=points, static_points=static,
        motion_level=motion, depth=cam[..., 2], bases=np.zeros((1, N_POINTS, 3)), coefficients=np.zeros((N_FRAMES, 1)),
        tracks=tracks, visible=visible, meta=meta)


def _check_model(model, rec: Reconstruction, static: np.ndarray) -> None:
    """Poses, points, 2D observations and projections of a read-back model against ``rec``."""
    assert model.num_images() == rec.n_frames
    for t in range(rec.n_frames):
        image = model.images[t + 1]
        np.testing.assert_allclose(image.cam_from_world().matrix(), rec.world_to_camera[t, :3], atol=1e-9, rtol=0)
        seen = np.flatnonzero(rec.visible[t])
        assert image.num_points2D() == len(seen)
        xy = np.array([p.xy for p in image.points2D])
        np.testing.assert_allclose(xy, rec.tracks[t, seen] + 0.5, atol=1e-6)
        ids = [p.point3D_id if p.has_point3D() else -1 for p in image.points2D]
        assert ids == [int(p) + 1 if static[p] else -1 for p in seen]
    assert set(model.points3D) == {int(p) + 1 for p in np.flatnonzero(static)}
    for point_id, point in model.points3D.items():
        p = point_id - 1
        np.testing.assert_allclose(point.xyz, rec.static_points[p], rtol=0, atol=1e-7)
        assert point.color.tolist() == [128, 128, 128] and 0 <= point.error < 1e-3
        frames = sorted(e.image_id - 1 for e in point.track.elements)
        assert frames == np.flatnonzero(rec.visible[:, p]).tolist()
        for element in point.track.elements:
            image = model.images[element.image_id]
            assert image.points2D[element.point2D_idx].point3D_id == point_id
            camera = model.cameras[image.camera_id]
            projected = camera.img_from_cam(image.cam_from_world() * point.xyz)
            np.testing.assert_allclose(projected, rec.tracks[element.image_id - 1, p] + 0.5, atol=1e-3)


def test_shared_camera_round_trip(tmp_path):
    rec = _scene()
    out = write_colmap_text(rec, tmp_path / "model", image_size=(W, H))
    model = pycolmap.Reconstruction(out)
    assert model.num_cameras() == 1
    camera = model.cameras[1]
    assert (camera.model_name, camera.width, camera.height) == ("PINHOLE", W, H)
    np.testing.assert_allclose(camera.params, [500.0, 510.0, W / 2, H / 2], rtol=0, atol=1e-12)
    assert [model.images[t + 1].name for t in range(N_FRAMES)] == [f"frame_{t:05d}.png" for t in range(N_FRAMES)]
    static = rec.motion_level < DEFAULT_STATIC_GAMMA
    assert model.num_points3D() == static.sum() == N_POINTS - 10
    _check_model(model, rec, static)


def test_per_frame_cameras_and_size_from_principal_point(tmp_path):
    rec = _scene(per_frame_k=True)
    names = [f"img{t}.jpg" for t in range(N_FRAMES)]
    model = pycolmap.Reconstruction(write_colmap_text(rec, tmp_path / "model", image_names=names))
    assert model.num_cameras() == N_FRAMES
    for t in range(N_FRAMES):
        image = model.images[t + 1]
        camera = model.cameras[image.camera_id]
        assert image.name == names[t] and image.camera_id == t + 1
        assert (camera.width, camera.height) == (W, H)  # ceil(2·c) with c = (W − 1) / 2 + 0.5
        np.testing.assert_allclose(camera.params, [500.0 + 10 * t, 510.0, W / 2, H / 2], rtol=0, atol=1e-12)
    _check_model(model, rec, rec.motion_level < DEFAULT_STATIC_GAMMA)


def test_static_mask_sources(tmp_path):
    mask = np.zeros(N_POINTS, bool)
    mask[[0, 3, 20]] = True  # a moving track may be chosen too: the mask decides
    given = pycolmap.Reconstruction(write_colmap_text(_scene(), tmp_path / "a", (W, H), static_mask=mask))
    assert sorted(given.points3D) == [1, 4, 21]
    from_meta = _scene(static_mask=mask.tolist(), image_size=[320, 240])
    model = pycolmap.Reconstruction(write_colmap_text(from_meta, tmp_path / "b"))
    assert sorted(model.points3D) == [1, 4, 21] and model.cameras[1].width == 320
    colours = np.arange(3 * N_POINTS, dtype=np.uint8).reshape(N_POINTS, 3)
    model = pycolmap.Reconstruction(write_colmap_text(_scene(), tmp_path / "c", (W, H), colours=colours))
    assert model.points3D[40].color.tolist() == colours[39].tolist()


def test_quaternions_match_pycolmap():
    rng = np.random.default_rng(1)
    quats = rng.normal(size=(500, 4))
    quats[:4] = np.eye(4)  # identity and the half turns about x, y, z
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    rotations = np.stack([pycolmap.Rotation3d(np.r_[q[1:], q[0]]).matrix() for q in quats])
    ours = rotation_to_quaternion(rotations)
    assert (ours[:, 0] >= 0).all()
    np.testing.assert_allclose(np.abs((ours * quats).sum(axis=1)), 1.0, atol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_names": ["a.png"]}, "expected 6 names"),
    ({"image_names": [f"frame {t}.png" for t in range(N_FRAMES)]}, "whitespace"),
    ({"image_names": ["a.png"] * N_FRAMES}, "unique"),
    ({"static_mask": np.ones(3, bool)}, "expected 50 booleans"),
    ({"image_size": (640, 0)}, "two positive integers"),
    ({"colours": np.zeros((N_POINTS, 3), np.float32)}, "integers in 0–255"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_colmap_text(_scene(), tmp_path / "model", **kwargs)
    assert not (tmp_path / "model").exists()


def test_bad_folders_and_rotations(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        write_colmap_text(_scene(), tmp_path / "file")
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "cameras.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="binary COLMAP model"):
        write_colmap_text(_scene(), tmp_path / "binary")
    rec = _scene()
    mirrored = rec.world_to_camera.copy()
    mirrored[2, 0] *= -1  # det −1: a reflection, not a rotation
    rec = dataclasses.replace(rec, world_to_camera=mirrored, camera_to_world=np.linalg.inv(mirrored))
    with pytest.raises(ValueError, match="frame 2 does not hold a rotation"):
        write_colmap_text(rec, tmp_path / "model")


def test_failed_write_keeps_the_earlier_model(tmp_path, monkeypatch):
    out = write_colmap_text(_scene(), tmp_path / "model", (W, H))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fdopen, calls = os.fdopen, []

    def fail_on_second(fd, *args, **kwargs):
        calls.append(fd)
        if len(calls) == 2:
            os.close(fd)
            raise OSError("no space left on device")
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fail_on_second)
    with pytest.raises(OSError, match="no space"):
        write_colmap_text(_scene(seed=5), out, (W, H))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_write_outputs_takes_the_size_of_the_frames(tmp_path):
    rec = _scene(per_frame_k=False)
    frames = np.zeros((N_FRAMES, 300, 400, 3), np.uint8)
    paths = write_outputs(rec, tmp_path / "out", frames)
    camera = pycolmap.Reconstruction(paths["colmap"]).cameras[1]
    assert paths["colmap"] == tmp_path / "out" / "colmap" and (camera.width, camera.height) == (400, 300)


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tracks4d.cli", "export-colmap", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_cli(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _scene(image_size=[W, H]).save(out / "reconstruction.npz")
    done = _cli(out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        f"wrote {out / 'colmap'}/: COLMAP text model, 1 camera, 6 images, 40 static points"]
    assert pycolmap.Reconstruction(out / "colmap").num_points3D() == 40
    done = _cli(out / "reconstruction.npz", "--output", tmp_path / "elsewhere")
    assert done.returncode == 0 and pycolmap.Reconstruction(tmp_path / "elsewhere").num_images() == N_FRAMES
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    for bad in (tmp_path / "missing", tmp_path / "bad.npz"):
        done = _cli(bad)
        assert done.returncode == 2 and done.stdout == ""
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("tracks4d: error: ")
