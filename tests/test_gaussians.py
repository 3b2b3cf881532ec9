"""Gaussian refinement (issue 15): motion bases, seeding from a reconstruction, the fit to a rendered clip and its
outputs, at tiny sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tracks4d.evaluation.render import ground_truth_reconstruction, render_scene
from tracks4d.gaussians import RefineConfig, refine_gaussians, seed_scene, working_inputs, write_refine_outputs
from tracks4d.gaussians.motion import (init_bases, matrix_to_quaternion, matrix_to_rot6d, procrustes,
                                       rot6d_to_matrix)
from tracks4d.gaussians.seed import fit_tracks
from tracks4d.splat import quaternion_to_matrix

N_FRAMES, SIZE = 12, (96, 72)


def random_rotations(count: int, seed: int = 0) -> torch.Tensor:
    return quaternion_to_matrix(torch.randn(count, 4, generator=torch.Generator().manual_seed(seed)))


def test_rotation_conversions_round_trip():
    r = random_rotations(20)
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(r)), r, atol=1e-5)
    assert torch.allclose(quaternion_to_matrix(matrix_to_quaternion(r)), r, atol=1e-5)


def test_procrustes_recovers_a_rigid_motion():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(30, 3))
    rot = random_rotations(1, 3)[0].numpy().astype(np.float64)
    r, t = procrustes(source, source @ rot.T + [1.0, -2.0, 0.5])
    assert np.allclose(r, rot, atol=1e-9) and np.allclose(t, [1.0, -2.0, 0.5], atol=1e-9)


def two_rigid_bodies(n: int = 10, m: int = 40, seed: int = 0):
    """(N, M, 3) points of two bodies turning and sliding differently, and each point's body."""
    rng = np.random.default_rng(seed)
    local = rng.normal(size=(m, 3)) * 0.3
    body = np.arange(m) % 2
    points = np.zeros((n, m, 3))
    for t in range(n):
        for b, (spin, shift) in enumerate(((0.05, [0.1, 0, 0]), (-0.08, [0, 0.05, 0.02]))):
            a = spin * t
            rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
            points[t, body == b] = (local[body == b] + [3 * b, 0, 5]) @ rot.T + np.asarray(shift) * t
    return points, body


def test_motion_bases_from_two_rigid_bodies_reproduce_them():
    points, body = two_rigid_bodies()
    visible = np.ones(points.shape[:2], bool)
    rot, trans, labels = init_bases(points, visible, canonical=0, count=2)
    assert len(set(zip(labels, body))) == 2                      # k-means on velocities splits the bodies
    moved = np.einsum("mnij,mj->nmi", rot[labels], points[0]) + trans[labels].transpose(1, 0, 2)
    assert np.abs(moved - points).max() < 1e-6
    means, logits, motion = fit_tracks(points, visible, 0, rot, trans, labels, steps=50)
    with torch.no_grad():
        r, t = motion.blend_all(torch.softmax(torch.as_tensor(logits), -1))
        fitted = (r @ torch.as_tensor(means, dtype=torch.float32)[:, None, :, None]).squeeze(-1) + t
    assert (fitted.numpy().transpose(1, 0, 2) - points).__abs__().mean() < 0.02


@pytest.fixture(scope="module")
def rendered():
    scene = render_scene(3, N_FRAMES, SIZE)
    ys, xs = np.mgrid[4:SIZE[1]:8, 4:SIZE[0]:8]
    queries = np.concatenate([np.c_[np.full(xs.size, t), xs.ravel(), ys.ravel()] for t in (1, 6)]).astype(float)
    return scene, ground_truth_reconstruction(scene, queries)


def test_ground_truth_reconstruction_is_consistent(rendered):
    scene, rec = rendered
    static = np.asarray(rec.meta["static_mask"])
    assert static.any() and (~static).any()
    w2c = rec.world_to_camera
    cam = np.einsum("nij,npj->npi", w2c[:, :3, :3], rec.points) + w2c[:, None, :3, 3]
    pix = cam[..., :2] / cam[..., 2:] * rec.intrinsics[0, [0, 1], [0, 1]] + rec.intrinsics[0, :2, 2]
    assert np.abs(pix - rec.tracks)[rec.visible].max() < 1e-3                # points are stored in float32


def test_seeded_scene_holds_every_track_and_splits_static_from_moving(rendered):
    scene, rec = rendered
    config = RefineConfig(long_side=64, max_gaussians=3000)
    data = working_inputs(rec, scene.frames, config)
    assert data.size == (64, 48) and not data.train[0] and not data.train[8] and data.train[1]
    gs = seed_scene(rec, data.frames, data.intrinsics, data.tracks, data.train, bases=3, stride=4,
                    max_gaussians=config.max_gaussians)
    assert gs.count <= config.max_gaussians
    static = np.asarray(rec.meta["static_mask"])
    ids = gs.track.numpy()
    seen = rec.visible & data.train[:, None]
    assert set(ids[ids >= 0]) == set(np.flatnonzero(seen.any(0) & (static | (seen.sum(0) >= 2))))
    assert np.array_equal(gs.moving.numpy()[ids >= 0], ~static[ids[ids >= 0]])
    # static track Gaussians sit on their static points; moving ones follow their tracks at the canonical frame
    index = np.flatnonzero((ids >= 0) & ~gs.moving.numpy())
    assert np.allclose(gs.means.detach().numpy()[index], rec.static_points[ids[index]], atol=1e-5)
    with torch.no_grad():
        means = gs.at(gs.canonical)[0].numpy()
    moving = np.flatnonzero((ids >= 0) & gs.moving.numpy())
    moving = moving[rec.visible[gs.canonical, ids[moving]]]
    error = np.linalg.norm(means[moving] - rec.points[gs.canonical, ids[moving]], axis=1)
    assert np.median(error) < 0.05 * np.median(rec.depth[rec.visible])


def test_refinement_fits_the_video_and_writes_its_outputs(rendered, tmp_path):
    scene, rec = rendered
    config = RefineConfig(long_side=64, steps=60, minutes=5, bases=3, stride=2, max_gaussians=4000,
                          densify_every=20, eval_every_s=1e9)
    result = refine_gaussians(rec, scene.frames, config, progress=False)
    m = result.metrics
    start, end = m["history"][0]["held_out_psnr"], m["held_out"]["psnr"]
    assert m["held_out"]["frames"] == [0, 8] and m["steps"] == 60
    assert end > start + 1.0 and end > 18.0, (start, end)
    paths = write_refine_outputs(tmp_path / "refine", result.scene, result.data, m)
    for key in ("render", "novel_fixed", "novel_orbit", "ply", "trajectories", "contact_sheet", "metrics"):
        assert paths[key].exists() and paths[key].stat().st_size > 0, key
    header = paths["ply"].read_bytes().split(b"end_header\n")[0].decode()
    assert f"element vertex {result.scene.count}" in header and "property float f_dc_0" in header
    assert header.count("property float") == 17
    saved = np.load(paths["trajectories"])
    assert saved["moving_means"].shape == (N_FRAMES, int(saved["moving"].sum()), 3)
    assert json.loads(paths["metrics"].read_text())["held_out"]["psnr"] == pytest.approx(end)


def test_hierarchical_motion_starts_as_its_parents_and_refines(rendered):
    from tracks4d.gaussians import hierarchical_motion
    from tracks4d.gaussians.hierarchical import CHILDREN

    scene, rec = rendered
    config = RefineConfig(long_side=64, max_gaussians=3000, bases=3)
    data = working_inputs(rec, scene.frames, config)
    gs = seed_scene(rec, data.frames, data.intrinsics, data.tracks, data.train, bases=3, stride=4,
                    max_gaussians=config.max_gaussians)
    motion = hierarchical_motion(gs)
    assert motion.level == 1
    with torch.no_grad():
        _, parent_rot, parent_trans = motion._node_transforms(5)
        motion.advance(1.0)
        assert motion.level == 2
        children, child_rot, child_trans = motion._node_transforms(5)
        moved = motion.transforms(gs.means[gs.moving], gs.coefficient_logits[gs.moving], 5)
    # children start as their parents (residual bases at identity, up to the symmetry-breaking noise)
    assert children.shape[0] == CHILDREN * parent_rot.shape[0]
    assert (child_rot - parent_rot[motion.parent]).abs().max() < 0.01
    assert (child_trans - parent_trans[motion.parent]).abs().max() < 0.01 * float(gs.means.detach().abs().max())
    assert torch.isfinite(moved[0]).all() and torch.isfinite(moved[1]).all()
    result = refine_gaussians(rec, scene.frames, RefineConfig(long_side=64, steps=40, bases=3, stride=2,
                                                              max_gaussians=4000, motion="hierarchical",
                                                              eval_every_s=1e9), progress=False)
    assert result.scene.motion.level == 2
    assert result.metrics["held_out"]["psnr"] > result.metrics["history"][0]["held_out_psnr"] + 1.0


def test_frames_must_match_the_reconstruction(rendered):
    scene, rec = rendered
    with pytest.raises(ValueError, match="one per reconstructed frame"):
        working_inputs(rec, scene.frames[:-1], RefineConfig())


def test_cli_reconstructs_and_refines_a_video_then_refines_again(rendered, tmp_path, capsys):
    from tracks4d.cli import main
    from tracks4d.io.overlay import save_video

    scene, _ = rendered
    video = save_video(scene.frames, tmp_path / "clip.mp4", fps=10)
    out = tmp_path / "out"
    assert main(["reconstruct", str(video), "-o", str(out), "--refine", "--refine-steps", "5",
                 "--refine-long-side", "48", "--no-progress"]) == 0
    assert (out / "refine" / "metrics.json").exists() and (out / "refine" / "render_input_cameras.mp4").exists()
    assert "held-out PSNR" in capsys.readouterr().out
    # again from the saved reconstruction: the video it recorded, another folder
    assert main(["refine", str(out), "-o", str(tmp_path / "again"), "--refine-steps", "3",
                 "--refine-long-side", "48", "--no-progress"]) == 0
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["steps"] == 3


def test_cli_refine_says_what_is_missing(rendered, tmp_path, capsys):
    from tracks4d.cli import main

    scene, rec = rendered
    rec.save(tmp_path / "reconstruction.npz")
    assert main(["refine", str(tmp_path)]) == 2
    assert "give --video" in capsys.readouterr().err
    assert main(["refine", str(tmp_path), "--refine-minutes", "0"]) == 2
    assert "must be positive" in capsys.readouterr().err
