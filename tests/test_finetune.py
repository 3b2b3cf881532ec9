"""Per-sequence fine-tuning lowers this clip's loss, keeps the best weights and never touches the original."""

import hashlib

import numpy as np
import pytest
import torch

from tracks4d.network.checkpoint import load_model, save_checkpoint
from tracks4d.network.finetune import finetune
from tracks4d.network.inference import network_inputs
from tracks4d.network.losses import tracks4d_loss
from tracks4d.network.model import ModelConfig, TracksTo4D
from training.synthetic import SceneConfig, generate_scene


def clip():
    ts = generate_scene(21, SceneConfig(n_frames=22)).tracks
    return ts.subset(points=np.arange(min(80, ts.n_points)))


def loss_of(model, ts):
    x = network_inputs(ts)[None]
    with torch.no_grad():
        return tracks4d_loss(model(x), x[..., :2], torch.from_numpy(ts.visible)[None]).total.item()


def test_finetune_lowers_loss_and_keeps_best(tmp_path):
    torch.manual_seed(0)
    model = TracksTo4D(ModelConfig.preset("small"))
    model.place_cameras((0.0, 0.0, -15.0))
    save_checkpoint(tmp_path / "shipped.pt", model)
    digest = hashlib.sha256((tmp_path / "shipped.pt").read_bytes()).hexdigest()
    shipped, _ = load_model(tmp_path / "shipped.pt")
    before = {k: v.clone() for k, v in shipped.state_dict().items()}
    ts = clip()
    tuned, report = finetune(shipped, ts, 30, progress=False)
    assert report.best_loss < 0.7 * report.initial_loss
    assert abs(loss_of(tuned, ts) - report.best_loss) < 1e-3 * max(1.0, abs(report.best_loss))
    assert report.best_step > 0 and report.seconds > 0
    for k, v in shipped.state_dict().items():  # the loaded model is untouched
        assert torch.equal(v, before[k])
    assert hashlib.sha256((tmp_path / "shipped.pt").read_bytes()).hexdigest() == digest
    assert not tuned.training


def test_finetune_rejects_bad_steps():
    with pytest.raises(ValueError, match="steps"):
        finetune(TracksTo4D(ModelConfig.preset("small")), clip(), 0, progress=False)
