"""The network's backends: eager torch or ONNX Runtime (:mod:`.onnx_backend`), loaded from a ``.pt`` checkpoint or
an ``.onnx`` export, both run by :func:`~tracks4d.network.inference.run_network`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_model
from .inference import Network
from .onnx_backend import OnnxNetwork, cached_export

__all__ = ["BACKENDS", "load_backend"]

BACKENDS = ("torch", "onnx")


def load_backend(source: str | Path, backend: str = "torch", device: str | torch.device = "cpu",
                 cache_dir: str | Path | None = None) -> tuple[Network, dict[str, Any]]:
    """The network for ``run_network`` from a ``.pt`` checkpoint or an ``.onnx`` export, like ``load_model``.

    backend "torch": (model, checkpoint payload); "onnx": (:class:`OnnxNetwork`, {"config", "step"}), a checkpoint
    being exported once to ``cache_dir`` (:func:`cached_export`). An ``.onnx`` file needs backend "onnx".
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    source = Path(source)
    if backend == "torch":
        if source.suffix == ".onnx":
            raise ValueError(f"{source}: an ONNX model runs only with backend 'onnx' (--backend onnx)")
        return load_model(source, device)
    net = OnnxNetwork(source if source.suffix == ".onnx" else cached_export(source, cache_dir), device)
    return net, {"config": net.config.to_dict(), "step": net.step}
