"""Fixtures shared by the test modules: a real service on loopback, a small untrained checkpoint."""

from __future__ import annotations

import pytest
import torch

from helpers import LIMITS
from service_server import Server
from tracks4d.network.checkpoint import save_checkpoint
from tracks4d.network.model import ModelConfig, TracksTo4D


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("service") / "data", **LIMITS)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = TracksTo4D(ModelConfig.preset("small"))
    model.place_cameras((0.0, 0.0, -15.0))
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, model, step=7)
    return path
