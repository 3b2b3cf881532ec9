"""Datasets, windows, batches and the tracks4d-train command (short real runs)."""

import csv

import numpy as np
import pytest
import torch

from tracks4d.network.checkpoint import CheckpointError, load_checkpoint, load_model
from tracks4d.network.losses import tracks4d_loss
from tracks4d.network.model import ModelConfig, TracksTo4D
from training.datasets import SyntheticDataset, TrackFolderDataset, collate, sample_window
from training.synthetic import SceneConfig, generate_scene
from training.trainer import main
from helpers import FAST



@pytest.fixture(scope="module")
def scene():
    return generate_scene(7, SceneConfig(n_frames=40))


def test_sample_window_follows_the_paper(scene):
    rng = np.random.default_rng(0)
    ts = scene.tracks
    for _ in range(20):
        w = sample_window(ts, rng, 22, 30)
        assert w.inputs.shape[0] == 22 and 1 <= w.inputs.shape[1] <= 30
        assert (w.visible.sum(0) >= 11).all()
        assert torch.equal(w.inputs[..., 2].bool(), w.visible)
        assert (w.inputs[..., :2][~w.visible] == 0).all()


def test_collate_pads_and_masks():
    rng = np.random.default_rng(1)
    ds = SyntheticDataset()
    windows = [ds.sample(rng, 20, 30), ds.sample(rng, 25, 50)]
    b = collate(windows)
    assert b.inputs.shape == (2, 25, max(w.inputs.shape[1] for w in windows), 3)
    assert b.frame_mask[0].sum() == 20 and b.frame_mask[1].sum() == 25
    assert not b.visible[0, 20:].any()
    assert b.point_mask[1].sum() == windows[1].inputs.shape[1]


def test_one_window_is_learnable():
    """A few Adam steps on one window lower its self-supervised loss a lot (the objective is wired right)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    b = collate([SyntheticDataset(SceneConfig(noise=False)).sample(rng, 22, 60)])
    model = TracksTo4D(ModelConfig.preset("small"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        out = model(b.inputs, b.frame_mask, b.point_mask)
        terms = tracks4d_loss(out, b.inputs[..., :2], b.visible, b.point_mask)
        opt.zero_grad()
        terms.total.backward()
        opt.step()
        losses.append(terms.reprojection.item())
    assert losses[-1] < 0.3 * losses[0]


def test_train_resume_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--data", "synthetic", "--steps", "3", "--out", str(out), *FAST]) == 0
    payload = load_checkpoint(out / "last.pt")
    assert payload["step"] == 3 and payload["extra"]["pretrain_done"]
    assert "optimizer" in payload and payload["config"]["width"] == 128
    rows = list(csv.DictReader(open(out / "log.csv")))
    phases = [r["phase"] for r in rows]
    assert phases[0] == "untrained" and "pretrain" in phases and phases[-1] == "final"
    assert float(rows[-1]["val_ate"]) > 0
    assert (out / "curves.png").stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "held-out ATE" in printed and "AbsRel" in printed
    assert main(["--data", "synthetic", "--steps", "5", "--out", str(out), "--resume", str(out / "last.pt"),
                 "--bf16", *FAST]) == 0  # bf16 autocast runs on CPU too
    assert load_checkpoint(out / "last.pt")["step"] == 5
    model, _ = load_model(out / "last.pt")
    assert isinstance(model, TracksTo4D) and not model.training


def test_train_on_track_folder(tmp_path):
    root = tmp_path / "tracks"
    root.mkdir()
    generate_scene(3, SceneConfig(n_frames=30)).tracks.save(root / "ours.npz")
    ts = generate_scene(4, SceneConfig(n_frames=30)).tracks
    np.savez(root / "official.npz", pred_tracks=ts.tracks[None], pred_visibility=ts.visible[None],
             started_at=ts.query_frame[None, None], Ks_all=ts.intrinsics)
    (root / "broken.npz").write_bytes(b"junk")
    ds = TrackFolderDataset(root)
    assert len(ds.clips) == 2 and len(ds.skipped) == 1
    assert main(["--data", "tracks", "--root", str(root), "--steps", "2", "--out", str(tmp_path / "r"), *FAST]) == 0


def test_trainer_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["--data", "tracks", "--out", str(tmp_path / "a"), *FAST]) == 2
    assert "--root" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--data", "tracks", "--root", str(tmp_path / "empty"), "--out", str(tmp_path / "b"), *FAST]) == 2
    assert "no .npz" in capsys.readouterr().err
    assert main(["--data", "nope", "--out", str(tmp_path / "c"), *FAST]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["--resume", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "d"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a readable checkpoint" in err and len(err.splitlines()) == 1


def test_checkpoint_loading_refuses_foreign_pickles(tmp_path):
    torch.save({"anything": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a tracks4d checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
