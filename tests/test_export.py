"""Outputs of a reconstruction: npz, PLY, cameras.json, summary PNG and the track video."""

import json

import av
import numpy as np
import torch

from tracks4d.contracts import Reconstruction
from tracks4d.io.export import write_outputs
from tracks4d.network.inference import run_network
from tracks4d.network.model import ModelConfig, TracksTo4D
from training.synthetic import SceneConfig, generate_scene


def test_write_outputs(tmp_path):
    torch.manual_seed(0)
    ts = generate_scene(4, SceneConfig(n_frames=22)).tracks
    rec = run_network(TracksTo4D(ModelConfig.preset("small")), ts)
    paths = write_outputs(rec, tmp_path / "out", fps=8)
    back = Reconstruction.load(paths["reconstruction"])
    np.testing.assert_allclose(back.camera_to_world, rec.camera_to_world)
    raw = paths["points"].read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    count = int(header.split(b"element vertex ")[1].split(b"\n")[0])
    assert count == int(rec.visible.sum()) and len(body) == count * 15
    cams = json.loads(paths["cameras"].read_text())
    assert len(cams["frames"]) == 22 and "arbitrary" in cams["units"]
    np.testing.assert_allclose(cams["frames"][5]["camera_to_world"], rec.camera_to_world[5])
    assert cams["frames"][0]["fx"] == rec.intrinsics[0, 0, 0]
    assert paths["summary"].stat().st_size > 20_000 and paths["trajectories"].stat().st_size > 20_000
    with av.open(str(paths["tracks_video"])) as c:
        assert sum(1 for _ in c.decode(video=0)) == 22
