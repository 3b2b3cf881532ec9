"""ONNX export of the network and an ONNX Runtime backend that :func:`tracks4d.network.inference.run_network` runs like
the torch model.

The graph maps ``inputs`` (1, N, P, 3) float32 (:func:`~tracks4d.network.inference.network_inputs`; N and P dynamic) to
the :class:`~tracks4d.network.inference.Predictions` fields, in fp32 whatever the checkpoint stores. The model config JSON
and training step ride in the metadata, so an ``.onnx`` file alone is a complete model. ``onnx`` and
``onnxruntime`` (extras ``cpu`` / ``gpu``) are imported only when used.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..geometry import transforms as geometry
from . import inference, model as model_module
from .checkpoint import CheckpointError, load_model
from .inference import Predictions
from .model import ModelConfig, TracksTo4D

__all__ = ["OnnxUnavailable", "OnnxNetwork", "export_onnx", "cached_export"]

DEFAULT_OPSET = 17
OPSETS = range(14, 21)
"""Opsets the TorchScript exporter can write this graph in (attention needs 14)."""
CONFIG_KEY = "tracks4d.config"
STEP_KEY = "tracks4d.step"
OUTPUT_NAMES = Predictions._fields
_AXES = {"inputs": ("N", "P"), "points": ("N", "P"), "depth": ("N", "P"), "camera_to_world": ("N",),
         "focal_scale": ("N",), "static_points": ("P",), "motion_level": ("P",), "bases": ("P",),
         "coefficients": ("N",)}
"""Dynamic axes of each graph input and output, from axis 1 on (axis 0 is the batch of 1)."""


class OnnxUnavailable(RuntimeError):
    """The onnx or onnxruntime package is not installed."""


def _require(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise OnnxUnavailable(f"the ONNX backend needs the {name!r} package: pip install 'tracks4d[cpu]' "
                              f"(or [gpu] for onnxruntime-gpu)") from None


class _Exported(nn.Module):
    """The traced function: inputs (1, N, P, 3) → the :class:`Predictions` tensors as a tuple."""

    def __init__(self, model: TracksTo4D):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(Predictions.from_output(self.model(inputs)))


def export_onnx(checkpoint: str | Path, out_path: str | Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write the fp32 network of ``checkpoint`` to ``out_path`` (atomically), checked by ``onnx.checker``."""
    onnx = _require("onnx")
    if opset not in OPSETS:
        raise ValueError(f"opset {opset} is not supported; choose {OPSETS.start}–{OPSETS.stop - 1}")
    model, payload = load_model(checkpoint)
    config = model.config
    model.config = replace(config, chunk_tokens=0)  # CPU slicing is a trace-time branch: trace one block call
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f"{out_path.name}.{os.getpid()}.tmp")
    example = torch.zeros(1, 5, 7, 3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings on shape-derived constants; the tests run two (N, P)
            torch.onnx.export(_Exported(model), (example,), str(tmp), input_names=["inputs"],
                              output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=False,
                              dynamic_axes={name: dict(enumerate(axes, start=1)) for name, axes in _AXES.items()})
        proto = onnx.load(str(tmp))
        for key, value in ((CONFIG_KEY, json.dumps(config.to_dict())), (STEP_KEY, str(int(payload.get("step", 0))))):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


class OnnxNetwork:
    """An exported network in an ONNX Runtime session, used by ``run_network`` like the torch model.

    ``net(inputs)``: inputs (1, N, P, 3) float32 tensor or array → numpy :class:`Predictions`. ``config`` and
    ``step`` come from the file's metadata. CUDA runs when ``device`` is not the CPU and onnxruntime-gpu offers it.
    """

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such ONNX model file")
        cuda = torch.device(device).type != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = (["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for corrupt or foreign files
            reason = (str(exc).strip().splitlines() or [""])[0]
            raise CheckpointError(f"{self.path}: not a readable ONNX model ({type(exc).__name__}: {reason})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.config = ModelConfig.from_dict(json.loads(meta[CONFIG_KEY]))
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.path}: not a tracks4d ONNX model (metadata {CONFIG_KEY!r}: {exc})") from None
        self.step = int(meta.get(STEP_KEY, 0))

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses, preferred first."""
        return self.session.get_providers()

    def __call__(self, inputs: torch.Tensor | np.ndarray) -> Predictions:
        x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
        return Predictions(*self.session.run(list(OUTPUT_NAMES), {"inputs": x.astype(np.float32, copy=False)}))


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/tracks4d/onnx, else ~/.cache/tracks4d/onnx."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tracks4d" / "onnx"


def cached_export(checkpoint: str | Path, cache_dir: str | Path | None = None, opset: int = DEFAULT_OPSET) -> Path:
    """The ONNX export of ``checkpoint``, made once: keyed by the checkpoint's bytes, the source of the modules the
    graph is traced from, the torch version and the opset."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint}: no such checkpoint file")
    digest = hashlib.sha256(checkpoint.read_bytes())
    for module in (model_module, geometry, inference):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(f"torch {torch.__version__} opset {opset}".encode())
    path = Path(cache_dir or default_cache_dir()) / f"{checkpoint.stem}-{digest.hexdigest()[:16]}.onnx"
    return path if path.is_file() else export_onnx(checkpoint, path, opset)
