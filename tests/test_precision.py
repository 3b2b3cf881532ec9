"""bf16 autocast of the torch network: close to fp32, chosen by "auto" only where the device multiplies bf16
natively, refused where it cannot apply."""

import dataclasses

import numpy as np
import pytest
import torch

from tracks4d.network.checkpoint import SHIPPED_DIR, load_model
from tracks4d.network.inference import native_bf16, network_inputs, predict
from tracks4d.pipeline import ReconstructOptions, resolve_precision, run_pipeline
from training.synthetic import SceneConfig, generate_scene

SHIPPED = SHIPPED_DIR / "tracks4d-small.pt"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="shipped checkpoint missing")


@pytest.fixture(scope="module")
def model():
    return load_model(SHIPPED)


@pytest.fixture(scope="module")
def scene():
    return generate_scene(11, dataclasses.replace(SceneConfig(), camera="orbit", n_frames=24))


def test_bf16_predictions_are_close_to_fp32(model, scene):
    inputs = network_inputs(scene.tracks)[None]
    with torch.inference_mode():
        fp32, bf16 = predict(model[0], inputs, "fp32"), predict(model[0], inputs, "bf16")
    assert all(v.dtype == np.float32 for v in bf16)
    rel = np.abs(bf16.depth - fp32.depth) / np.abs(fp32.depth)
    assert np.median(rel) < 0.01 and np.quantile(rel, 0.99) < 0.05
    rank = lambda v: np.argsort(np.argsort(v))  # noqa: E731
    assert np.corrcoef(rank(bf16.motion_level[0]), rank(fp32.motion_level[0]))[0, 1] > 0.99
    assert not np.array_equal(bf16.depth, fp32.depth)  # autocast did run


def test_precision_is_validated(model, scene):
    inputs = network_inputs(scene.tracks)[None]
    with pytest.raises(ValueError, match="precision must be"):
        predict(model[0], inputs, "fp16")
    with pytest.raises(ValueError, match="needs the torch backend"):
        predict(lambda x: None, inputs, "bf16")  # any non-torch backend (ONNX Runtime) runs fp32 only
    with pytest.raises(ValueError, match="needs the torch backend"):
        resolve_precision(ReconstructOptions(precision="bf16"), object())
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision(ReconstructOptions(precision="half"), model[0])
    assert resolve_precision(ReconstructOptions(), object()) == "fp32"


@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_pipeline_records_its_precision(model, scene, precision):
    rec = run_pipeline(scene.tracks, ReconstructOptions(checkpoint=SHIPPED, precision=precision, progress=False),
                       network=model).reconstruction
    want = "bf16" if precision == "auto" and native_bf16("cpu") else "fp32"
    assert rec.meta["precision"] == want and rec.meta["options"]["precision"] == precision
    assert np.isfinite(rec.points).all() and rec.points.shape == (scene.tracks.n_frames, scene.tracks.n_points, 3)
