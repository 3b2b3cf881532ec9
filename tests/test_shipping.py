"""Shipping a trained run (fp16, provenance) and picking the shipped checkpoint by default."""

import pytest
import torch

from tracks4d.network import checkpoint as ckpt
from tracks4d.network.checkpoint import CheckpointError, default_checkpoint, load_checkpoint, load_model
from training.ship import MAX_FP16_DIFF, main as ship_main
from training.trainer import main as train_main
from helpers import FAST



def test_ship_a_run_as_fp16_with_provenance(tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["--data", "synthetic", "--steps", "2", "--out", str(run), *FAST]) == 0
    out = tmp_path / "shipped.pt"
    assert ship_main([str(run), "--which", "last", "-o", str(out)]) == 0
    payload = load_checkpoint(out)
    assert "optimizer" not in payload and payload["step"] == 2
    assert all(v.dtype == torch.float16 for v in payload["model"].values() if v.is_floating_point())
    record = payload["extra"]["provenance"]
    assert record["preset"] == "small" and record["data"] == "synthetic" and record["weights"] == "fp16"
    assert record["wall_time_s"] > 0 and 0 <= record["fp16_max_diff"] < MAX_FP16_DIFF
    assert out.stat().st_size < 0.6 * (run / "last.pt").stat().st_size
    model, _ = load_model(out)
    assert next(model.parameters()).dtype == torch.float32
    assert "wrote" in capsys.readouterr().out
    assert ship_main([str(tmp_path / "nothing"), "-o", str(out)]) == 2


def test_default_checkpoint_prefers_the_preset_that_suits_the_device(tmp_path, monkeypatch):
    monkeypatch.delenv("TRACKS4D_CHECKPOINT", raising=False)
    monkeypatch.setattr(ckpt, "SHIPPED_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="--checkpoint"):
        default_checkpoint("cpu")
    (tmp_path / "tracks4d-paper.pt").write_bytes(b"x")
    assert default_checkpoint("cpu").name == "tracks4d-paper.pt"   # the only one there
    (tmp_path / "tracks4d-small.pt").write_bytes(b"x")
    assert default_checkpoint("cpu").name == "tracks4d-small.pt"
    assert default_checkpoint("cuda").name == "tracks4d-paper.pt"
    monkeypatch.setenv("TRACKS4D_CHECKPOINT", str(tmp_path / "mine.pt"))
    assert default_checkpoint("cpu") == tmp_path / "mine.pt"
