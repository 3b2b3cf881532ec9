"""The TracksTo4D network: parameter count, equivariance, padding, chunking, any N and P."""

import pytest
import torch
import torch.nn.functional as F

from tracks4d.network.model import ModelConfig, TracksTo4D, encode_inputs


def small(**kw):
    torch.manual_seed(0)
    return TracksTo4D(ModelConfig.preset("small", **kw)).eval()


def inputs(n, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, p, 3, generator=g) * 0.5
    x[..., 2] = (torch.rand(1, n, p, generator=g) > 0.2).float()
    return x


def test_paper_preset_has_official_parameter_count():
    assert TracksTo4D(ModelConfig.preset("paper")).num_parameters() == 12_826_325


def test_small_preset_is_much_smaller():
    assert TracksTo4D(ModelConfig.preset("small")).num_parameters() < 2_000_000


def test_encoding_layout():
    enc = encode_inputs(torch.tensor([[0.5, -0.25, 1.0]]), 12)
    assert enc.shape == (1, 76)
    assert enc[0, 0] == 0.5 and enc[0, -1] == 1.0
    assert torch.isclose(enc[0, 1], torch.sin(torch.tensor(0.5 * torch.pi)))  # sin(2^0 π x)


@torch.no_grad()
def test_permuting_tracks_permutes_points_and_keeps_cameras():
    model = small()
    x = inputs(20, 30)
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(1))
    a, b = model(x), model(x[:, :, perm])
    torch.testing.assert_close(b.rotation, a.rotation, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.centre, a.centre, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.coefficients, a.coefficients, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.bases, a.bases[:, perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.motion_level, a.motion_level[:, perm], atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_padding_does_not_change_real_outputs():
    model = small()
    x1, x2 = inputs(22, 40, seed=1), inputs(31, 17, seed=2)
    batch = torch.zeros(2, 31, 40, 3)
    batch[0, :22, :40] = x1[0]
    batch[1, :31, :17] = x2[0]
    batch[0, 22:] = 7.0  # garbage in the padding must not leak
    batch[1, :, 17:] = -3.0
    frame_mask = torch.zeros(2, 31, dtype=torch.bool)
    frame_mask[0, :22] = True
    frame_mask[1] = True
    point_mask = torch.zeros(2, 40, dtype=torch.bool)
    point_mask[0] = True
    point_mask[1, :17] = True
    out = model(batch, frame_mask, point_mask)
    for i, (x, n, p) in enumerate(((x1, 22, 40), (x2, 31, 17))):
        ref = model(x)
        torch.testing.assert_close(out.rotation[i, :n], ref.rotation[0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.centre[i, :n], ref.centre[0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.coefficients[i, :n], ref.coefficients[0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.bases[i, :p], ref.bases[0], atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(out.motion_level[i, :p], ref.motion_level[0], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("n, p", [(2, 1), (3, 2), (50, 5), (64, 3)])
@torch.no_grad()
def test_any_window_size(n, p):
    out = small()(inputs(n, p))
    assert out.rotation.shape == (1, n, 3, 3) and out.bases.shape == (1, p, 12, 3)
    assert out.points().shape == (1, n, p, 3)
    assert torch.isfinite(out.points()).all() and (out.motion_level > 0).all()
    assert (out.coefficients[..., 0] == 1).all()
    rot = out.rotation[0]
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand(n, 3, 3), atol=1e-5, rtol=0)


@torch.no_grad()
def test_chunked_attention_matches_unchunked():
    model = small()
    x = inputs(20, 50)
    a = model(x)
    model.config = ModelConfig.preset("small", chunk_tokens=64)
    b = model(x)
    torch.testing.assert_close(a.bases, b.bases, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.centre, b.centre, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_camera_head_is_a_circular_conv():
    model = small()
    feat = torch.randn(2, 40, model.config.width)
    ref = F.conv1d(F.pad(feat.transpose(1, 2), (15, 15), mode="circular"), model.camera_head.weight,
                   model.camera_head.bias).transpose(1, 2)
    torch.testing.assert_close(model._circular_conv(feat, None), ref, atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter():
    model = small().train()
    out = model(inputs(21, 12))
    loss = out.points().square().mean() + out.centre.square().mean() + out.rotation.sum() + out.motion_level.mean()
    loss.backward()
    unused = {n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0}
    assert unused == set()


def test_predicted_focal_scale():
    model = small(predict_focal=True)
    with torch.no_grad():
        out = model(inputs(21, 12))
    assert not torch.allclose(out.focal_scale, torch.ones_like(out.focal_scale))
    with torch.no_grad():
        assert torch.equal(small()(inputs(21, 12)).focal_scale, torch.ones(1, 21))


def test_config_round_trip_and_unknown_preset():
    cfg = ModelConfig.preset("small")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model preset"):
        ModelConfig.preset("huge")
    with pytest.raises(ValueError, match="unknown fields"):
        ModelConfig.from_dict({"width": 3, "colour": "red"})


@pytest.mark.slow
def test_paper_forward_at_50x900_peaks_below_4gb():
    """Chunked attention keeps a paper-preset CPU forward at N=50, P=900 (with padding masks) under 4 GB."""
    import subprocess
    import sys

    code = (
        "import resource, torch\n"
        "from tracks4d.network.model import ModelConfig, TracksTo4D\n"
        "m = TracksTo4D(ModelConfig.preset('paper')).eval()\n"
        "x = torch.rand(1, 50, 900, 3)\n"
        "fm, pm = torch.ones(1, 50, dtype=torch.bool), torch.ones(1, 900, dtype=torch.bool)\n"
        "with torch.inference_mode():\n"
        "    m(x, fm, pm)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_gb = int(res.stdout.strip().splitlines()[-1]) / 2**20
    assert peak_gb < 4.0, f"peak {peak_gb:.2f} GB"


@torch.no_grad()
def test_place_cameras_is_the_pretraining_optimum():
    from tracks4d.network.losses import PRETRAIN_CENTRE, pretrain_camera_loss

    model = small()
    assert pretrain_camera_loss(model(inputs(22, 30))).item() > 1.0
    model.place_cameras(PRETRAIN_CENTRE)
    for seed in range(3):
        assert pretrain_camera_loss(model(inputs(22, 30, seed))).item() < 1e-10
