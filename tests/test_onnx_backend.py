"""ONNX export and the ONNX Runtime backend: parity with eager torch at two (N, P), metadata, cache and CLI."""

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from tracks4d.network.checkpoint import SHIPPED_DIR, CheckpointError, load_model  # noqa: E402
from tracks4d.cli import main  # noqa: E402
from tracks4d.contracts import Reconstruction, TrackSet  # noqa: E402
from tracks4d.network.inference import Predictions, network_inputs, predict, run_network  # noqa: E402
from tracks4d.network.backends import load_backend  # noqa: E402
from tracks4d.network.onnx_backend import CONFIG_KEY, OnnxNetwork, cached_export, export_onnx  # noqa: E402

SHIPPED = SHIPPED_DIR / "tracks4d-small.pt"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped checkpoint missing")
ARRAYS = ("camera_to_world", "world_to_camera", "intrinsics", "points", "static_points", "motion_level", "depth",
          "bases", "coefficients")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_onnx(SHIPPED, tmp_path_factory.mktemp("onnx") / "small.onnx")


@pytest.fixture(scope="module")
def torch_model():
    return load_model(SHIPPED)


def random_tracks(n: int, p: int, seed: int) -> TrackSet:
    """Random pixel tracks in a 640×480 image, about 80% visible (every track in at least one frame)."""
    rng = np.random.default_rng(seed)
    visible = rng.random((n, p)) < 0.8
    visible[0] = True
    tracks = rng.uniform(0, [640, 480], (n, p, 2)).astype(np.float32)
    return TrackSet(tracks, visible, image_size=np.array([640, 480]))


def test_export_is_valid_with_dynamic_axes_and_config(exported, torch_model):
    model, payload = torch_model
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto)
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, "N", "P", 3]
    assert [o.name for o in proto.graph.output] == list(Predictions._fields)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)
    net = OnnxNetwork(exported)
    assert net.config == model.config and net.step == payload["step"] == 600
    assert net.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("n, p, seed", [(9, 23, 0), (40, 150, 1)])
def test_onnx_matches_torch(exported, torch_model, n, p, seed):
    model, _ = torch_model
    net = OnnxNetwork(exported)
    tracks = random_tracks(n, p, seed)
    inputs = network_inputs(tracks)[None]
    with torch.inference_mode():
        want, got = predict(model, inputs), predict(net, inputs)
    for name, a, b in zip(Predictions._fields, want, got):
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32, name
        assert np.abs(a - b).max() < 1e-4, name
    ref, rec = run_network(model, tracks), run_network(net, tracks)
    for name in ARRAYS:
        a, b = getattr(ref, name), getattr(rec, name)
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-4, name
    assert rec.meta["model"] == ref.meta["model"]


def test_load_backend_exports_once_and_rejects_mismatches(tmp_path, exported):
    net, info = load_backend(SHIPPED, "onnx", cache_dir=tmp_path)
    assert isinstance(net, OnnxNetwork) and info == {"config": net.config.to_dict(), "step": 600}
    cached = cached_export(SHIPPED, tmp_path)
    assert net.path == cached and list(tmp_path.iterdir()) == [cached]
    stamp = cached.stat().st_mtime_ns
    load_backend(SHIPPED, "onnx", cache_dir=tmp_path)
    assert cached.stat().st_mtime_ns == stamp
    assert isinstance(load_backend(exported, "onnx")[0], OnnxNetwork)
    with pytest.raises(ValueError, match="backend 'onnx'"):
        load_backend(exported, "torch")
    with pytest.raises(ValueError, match="unknown backend"):
        load_backend(SHIPPED, "tensorrt")
    foreign = onnx.load(str(exported))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(CheckpointError, match=CONFIG_KEY):
        OnnxNetwork(tmp_path / "foreign.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        OnnxNetwork(tmp_path / "junk.onnx")


def test_cli_export_and_predict_with_onnx(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export-onnx", str(SHIPPED), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.is_file()
    random_tracks(12, 30, 2).save(tmp_path / "tracks.npz")
    recs = {}
    for backend, checkpoint in (("torch", SHIPPED), ("onnx", out)):
        recs[backend] = tmp_path / f"{backend}.npz"
        assert main(["predict", str(tmp_path / "tracks.npz"), "-o", str(recs[backend]), "--device", "cpu",
                     "--backend", backend, "--checkpoint", str(checkpoint)]) == 0
    ref, rec = (Reconstruction.load(recs[b]) for b in ("torch", "onnx"))
    assert np.abs(ref.points - rec.points).max() < 1e-4
    capsys.readouterr()
    for argv in (["export-onnx", str(tmp_path / "missing.pt"), "-o", str(out)],
                 ["export-onnx", str(out), "-o", str(tmp_path / "again.onnx")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("tracks4d: error:") and len(err.splitlines()) == 1
    # fine-tuning an ONNX model (an .onnx checkpoint under backend auto, or backend onnx): one line, exit 2
    for backend, checkpoint in (("auto", out), ("onnx", SHIPPED)):
        argv = ["reconstruct", str(tmp_path / "tracks.npz"), "-o", str(tmp_path / f"ft-{backend}"), "--device", "cpu",
                "--backend", backend, "--checkpoint", str(checkpoint), "--finetune", "2", "--no-progress"]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "fine-tuning needs the torch model" in err and len(err.splitlines()) == 1, err
