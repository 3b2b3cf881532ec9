"""Training data sources: ground truth in synthetic windows, the held-out mover kind, real videos, mixing."""

import numpy as np
import pytest
import torch

from tracks4d.contracts import TrackSet
from training.datasets import (DatasetError, MixedDataset, SyntheticDataset, collate, parse_mix,
                               training_scene_config)
from training.synthetic import MOVER_KINDS, generate_scene
from training.trainer import main
from training.videos import VideoDataset, find_videos
from helpers import FAST, shifted_clip, write_mp4



def test_synthetic_windows_carry_consistent_ground_truth():
    rng = np.random.default_rng(5)
    w = SyntheticDataset().sample(rng, 22, 40)
    assert w.gt_points.shape == (*w.inputs.shape[:2], 3) and w.gt_camera_to_world.shape == (22, 4, 4)
    # the true camera-frame points project onto the (noisy) normalised tracks where visible
    xy = w.gt_points[..., :2] / w.gt_points[..., 2:]
    err = (xy - w.inputs[..., :2]).norm(dim=-1)[w.visible]
    assert (w.gt_points[..., 2] > 0).float().mean() > 0.95 and err.median() < 0.01
    b = collate([w, w])
    assert b.has_gt.all() and torch.equal(b.gt_points[0], w.gt_points)


def test_held_out_mover_never_drawn():
    config = training_scene_config("sheet")
    kinds = set()
    for seed in range(40):
        kinds.update(generate_scene(seed, config.__class__(**{**config.__dict__, "n_frames": 12, "grid": 4})
                                    ).mover_kinds)
    assert "sheet" not in kinds and len(kinds) >= 2
    assert training_scene_config(None).mover_weights[MOVER_KINDS.index("sheet")] > 0
    with pytest.raises(DatasetError, match="not one of"):
        training_scene_config("dragon")


def test_parse_mix_and_mixed_sampling():
    assert parse_mix("synthetic:3,videos:1") == [("synthetic", 3.0), ("videos", 1.0)]
    assert parse_mix("synthetic") == [("synthetic", 1.0)]
    for bad, words in [("nope:1", "unknown dataset"), ("synthetic:x", "not a number"),
                       ("synthetic:-1", "positive")]:
        with pytest.raises(DatasetError, match=words):
            parse_mix(bad)

    class Constant:
        def __init__(self, value):
            self.value = value

        def sample(self, rng, n_frames, n_tracks):
            return self.value

    mixed = MixedDataset([Constant("a"), Constant("b")], [3.0, 1.0])
    draws = [mixed.sample(np.random.default_rng(i), 10, 10) for i in range(400)]
    assert 0.65 < draws.count("a") / 400 < 0.85


def test_video_dataset_tracks_once_and_excludes(tmp_path, capsys):
    root = tmp_path / "videos"
    root.mkdir()
    write_mp4(root / "walk.mp4", shifted_clip(n=24, h=240, w=320))
    write_mp4(root / "pstudio.mp4", shifted_clip(n=24, h=240, w=320))
    (root / "notes.txt").write_text("not a video")
    assert [p.name for p in find_videos(root)] == ["walk.mp4"]
    cache = tmp_path / "cache"
    ds = VideoDataset(root, cache, progress=False)
    assert ds.names == ["walk.mp4"] and len(list(cache.glob("*.npz"))) == 1
    cached = TrackSet.load(next(cache.glob("*.npz")))
    assert cached.n_frames == 24 and cached.n_points > 20
    w = ds.sample(np.random.default_rng(0), 20, 30)
    assert w.inputs.shape[0] == 20 and w.gt_points is None
    again = VideoDataset(root, cache, progress=False)       # read back from the cache, same tracks
    assert np.array_equal(again.clips[0].tracks, ds.clips[0].tracks)
    with pytest.raises(DatasetError, match="no video"):
        VideoDataset(tmp_path / "cache", cache, progress=False)


def test_train_on_a_mix_of_synthetic_and_videos(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    write_mp4(root / "walk.mp4", shifted_clip(n=24, h=240, w=320))
    assert main(["--data", "synthetic:1,videos:1", "--video-root", str(root), "--cache", str(tmp_path / "c"),
                 "--steps", "3", "--out", str(tmp_path / "r"), *FAST]) == 0
