"""tracks4d reconstruct / tracks4d.reconstruct: track files, videos, long clips, intrinsics options, eval."""

import json

import numpy as np
import pytest
import torch

import tracks4d
from tracks4d.network.checkpoint import save_checkpoint
from tracks4d.cli import main
from tracks4d.contracts import Reconstruction
from tracks4d.network.model import ModelConfig, TracksTo4D
from tracks4d.pipeline import ReconstructOptions, intrinsics_from_options, run_pipeline
from training.synthetic import SceneConfig, generate_scene

from test_track_cli import write_mp4
from test_tracking import shifted_clip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = TracksTo4D(ModelConfig.preset("small"))
    model.place_cameras((0.0, 0.0, -15.0))
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, model, step=7)
    return path


def test_track_file_keeps_every_track_and_frame(tmp_path, checkpoint):
    scene = generate_scene(9, SceneConfig(n_frames=30))
    scene.tracks.save(tmp_path / "t.npz")
    rec = tracks4d.reconstruct(tmp_path / "t.npz", checkpoint, progress=False)
    assert (rec.n_frames, rec.n_points) == (30, scene.tracks.n_points)
    np.testing.assert_array_equal(rec.tracks, scene.tracks.tracks)
    assert rec.meta["checkpoint_step"] == 7 and rec.meta["intrinsics_known"]
    assert {"load_model_s", "network_s", "total_s"} <= set(rec.meta["timings"])


def test_long_clip_is_stitched(checkpoint):
    scene = generate_scene(10, SceneConfig(n_frames=90, motion_frames=90))
    seen = []
    rec = run_pipeline(scene.tracks, ReconstructOptions(checkpoint=checkpoint, progress=False, finetune_steps=2),
                       on_progress=lambda fraction, stage: seen.append((fraction, stage))).reconstruction
    assert [s for _, s in seen] == ["window 1/2", "window 2/2"] and [f for f, _ in seen] == pytest.approx([0.5, 0.7])
    assert rec.n_frames == 90 and rec.n_points == scene.tracks.n_points
    assert len(rec.meta["stitching"]["windows"]) == 2 and len(rec.meta["finetune"]) == 2
    assert np.isfinite(rec.points).all() and "finetune_s" in rec.meta["timings"]


def test_long_clip_with_bundle_adjustment_adjusts_windows_then_the_whole(checkpoint):
    """Both long-clip BA paths run (windows first, then the clip; or the stitched clip as one) and the one with more
    static tracks is kept: the trajectory comes out accurate."""
    from tracks4d.evaluation.metrics import absolute_trajectory_error

    scene = generate_scene(21, SceneConfig(n_frames=80, motion_frames=50, camera="orbit"))
    tracks = scene.tracks.subset(points=np.arange(0, scene.tracks.n_points, 3))
    rec = tracks4d.reconstruct(tracks, checkpoint, progress=False, bundle_adjust=True)
    assert len(rec.meta["stitching"]["windows"]) == 2
    choice = rec.meta["long_clip_bundle_adjustment"]
    assert choice["static_tracks"][choice["chosen"]] == max(choice["static_tracks"].values()) > 20
    whole = rec.meta["bundle_adjustment"]
    assert whole["n_frames"] == 80 and whole["final_rms_px"] < 2.0
    path = np.linalg.norm(np.diff(scene.camera_to_world[:, :3, 3], axis=0), axis=1).sum()
    assert absolute_trajectory_error(rec.camera_to_world, scene.camera_to_world) < 0.02 * path


def test_stitched_adjustment_starts_from_triangulated_static_points():
    """The windows' averaged static points can be far off (a moving point's, a badly aligned window's): the clip's
    bundle adjustment starts from the tracks triangulated under the stitched cameras instead, so it still runs on
    the static tracks and keeps the cameras accurate."""
    from dataclasses import replace

    from test_stitch import oracle_window
    from tracks4d.evaluation.metrics import absolute_trajectory_error
    from tracks4d.pipeline import _adjust_stitched
    from tracks4d.network.stitch import split_windows, stitch

    scene = generate_scene(3, SceneConfig(n_frames=90, motion_frames=90, camera="orbit"))
    keep = np.arange(0, scene.tracks.n_points, 2)
    tracks = scene.tracks.subset(points=keep)
    rng = np.random.default_rng(0)
    rec = stitch(tracks, [(span, idx, oracle_window(scene, span, keep[idx], rng, 0.01))
                          for span, idx, _ in split_windows(tracks, 50, 10)])
    spread = np.ptp(rec.static_points, axis=0)
    wrong = replace(rec, static_points=rec.static_points + rng.normal(size=rec.static_points.shape) * spread)
    adjusted = _adjust_stitched(wrong, True)
    report = adjusted.meta["bundle_adjustment"]
    assert not report["skipped"] and report["n_points"] > 0.5 * (~scene.dynamic[::2]).sum()
    path = np.linalg.norm(np.diff(scene.camera_to_world[:, :3, 3], axis=0), axis=1).sum()
    assert absolute_trajectory_error(adjusted.camera_to_world, scene.camera_to_world) < 0.002 * path


def test_reconstruct_command_on_a_video(tmp_path, checkpoint, capsys):
    write_mp4(tmp_path / "clip.mp4", shifted_clip(n=24, h=240, w=320))
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "clip.mp4"), "-o", str(out), "--checkpoint", str(checkpoint),
                 "--grid", "8", "--fov-deg", "60", "--no-progress"]) == 0
    rec = Reconstruction.load(out / "reconstruction.npz")
    assert rec.n_frames == 24
    np.testing.assert_allclose(rec.intrinsics[0, 0, 0], 160 / np.tan(np.radians(30)))
    for name in ("points.ply", "cameras.json", "summary.png", "tracks.mp4"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "cameras.json").read_text())["frames"][0]["frame"] == 0
    assert "decode" in capsys.readouterr().out


def test_eval_command(tmp_path, checkpoint, capsys):
    scene = generate_scene(11, SceneConfig(n_frames=24))
    scene.tracks.save(tmp_path / "gt.npz")
    tracks4d.reconstruct(scene.tracks, checkpoint, progress=False).save(tmp_path / "pred.npz")
    assert main(["eval", str(tmp_path / "pred.npz"), str(tmp_path / "gt.npz")]) == 0
    printed = capsys.readouterr().out
    assert "ate" in printed and "rpe_rot_deg" in printed and "depth_abs_rel" in printed
    other = generate_scene(12, SceneConfig(n_frames=30)).tracks
    other.save(tmp_path / "other.npz")
    assert main(["eval", str(tmp_path / "pred.npz"), str(tmp_path / "other.npz")]) == 2
    assert "frames" in capsys.readouterr().err


def test_intrinsics_options():
    base = dict(checkpoint="x")
    assert intrinsics_from_options(ReconstructOptions(**base), (640, 480)) is None
    k = intrinsics_from_options(ReconstructOptions(**base, fx=500.0), (640, 480))
    np.testing.assert_allclose(k, [[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="fov"):
        intrinsics_from_options(ReconstructOptions(**base, fov_deg=200.0), (640, 480))
    with pytest.raises(ValueError, match="--fx"):
        intrinsics_from_options(ReconstructOptions(**base, cx=3.0), (640, 480))


def test_bundle_adjustment_stage(checkpoint):
    scene = generate_scene(13, SceneConfig(n_frames=24))
    rec = tracks4d.reconstruct(scene.tracks, checkpoint, progress=False, bundle_adjust=True)
    report = rec.meta["bundle_adjustment"]
    assert "bundle_adjustment_s" in rec.meta["timings"]
    assert report["skipped"] or report["final_rms_px"] <= report["initial_rms_px"]
