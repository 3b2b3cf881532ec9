"""One network pass on a TrackSet → Reconstruction, and the tracks4d command line."""

import subprocess
import sys

import numpy as np
import torch

from tracks4d.network.checkpoint import save_checkpoint
from tracks4d.cli import main
from tracks4d.contracts import Reconstruction, TrackSet
from tracks4d.geometry import normalized_to_pixels
from tracks4d.network.inference import guess_intrinsics, run_network
from tracks4d.network.model import ModelConfig, TracksTo4D
from training.synthetic import SceneConfig, generate_scene


def small_model():
    torch.manual_seed(0)
    return TracksTo4D(ModelConfig.preset("small")).eval()


def test_run_network_is_a_consistent_reconstruction():
    ts = generate_scene(5, SceneConfig(n_frames=24)).tracks
    rec = run_network(small_model(), ts)
    assert (rec.n_frames, rec.n_points) == (ts.n_frames, ts.n_points)
    np.testing.assert_array_equal(rec.tracks, ts.tracks)  # every input track, in input order
    homog = np.concatenate([rec.points, np.ones(rec.points.shape[:2] + (1,))], -1)
    cam = np.einsum("nij,npj->npi", rec.world_to_camera, homog)
    np.testing.assert_allclose(cam[..., 2], rec.depth, atol=1e-3)
    np.testing.assert_allclose(rec.points[:, :, :], rec.static_points[None] +
                               np.einsum("nk,kpc->npc", rec.coefficients[:, 1:], rec.bases[1:]), atol=1e-4)
    assert rec.meta["timings"]["network_s"] > 0 and not rec.meta["intrinsics_guessed"]


def test_guessed_intrinsics_without_k():
    ts = TrackSet(np.full((12, 3, 2), 50, np.float32), np.ones((12, 3), bool), image_size=np.array([640, 480]))
    k = guess_intrinsics(ts)
    np.testing.assert_allclose(k, [[560, 0, 319.5], [0, 560, 239.5], [0, 0, 1]])
    rec = run_network(small_model(), ts)
    assert rec.meta["intrinsics_guessed"] and rec.meta["few_observation_tracks"] == []
    few = np.ones((12, 3), bool)
    few[:9, 1] = False  # visible in 3 of 12 frames: too few (more than 6 needed)
    short = TrackSet(np.full((12, 3, 2), 50, np.float32), few, image_size=np.array([640, 480]))
    assert run_network(small_model(), short).meta["few_observation_tracks"] == [1]


def test_normalisation_matches_intrinsics():
    ts = generate_scene(6, SceneConfig(n_frames=24, noise=False)).tracks
    from tracks4d.network.inference import network_inputs

    x = network_inputs(ts).numpy()
    back = normalized_to_pixels(x[..., :2].astype(np.float64), ts.intrinsics)
    np.testing.assert_allclose(back[ts.visible], ts.tracks[ts.visible], atol=1e-2)


def test_cli_check_predict_and_errors(tmp_path, capsys):
    ts = generate_scene(8, SceneConfig(n_frames=24)).tracks
    ts.save(tmp_path / "tracks.npz")
    assert main(["check", str(tmp_path / "tracks.npz")]) == 0
    assert "track set, 24 frames" in capsys.readouterr().out
    save_checkpoint(tmp_path / "m.pt", small_model())
    assert main(["predict", str(tmp_path / "tracks.npz"), "-o", str(tmp_path / "rec.npz"),
                 "--checkpoint", str(tmp_path / "m.pt")]) == 0
    assert isinstance(Reconstruction.load(tmp_path / "rec.npz"), Reconstruction)
    assert main(["check", str(tmp_path / "rec.npz")]) == 0
    assert "reconstruction, 24 frames" in capsys.readouterr().out
    np.savez(tmp_path / "bad.npz", tracks=np.full((4, 2, 2), np.nan), visible=np.ones((4, 2), bool))
    capsys.readouterr()
    assert main(["check", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tracks4d: error:") and "'tracks'" in err and "NaN" in err and len(err.splitlines()) == 1


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "tracks4d.cli", "info"], capture_output=True, text=True)
    assert res.returncode == 0 and "12,826,325" in res.stdout
