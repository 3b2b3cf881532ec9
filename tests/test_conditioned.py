"""The geometry-conditioned network, its inputs, its training and its place in the pipeline (issue 14)."""

import numpy as np
import pytest
import torch

from tracks4d.contracts import Cameras
from tracks4d.geometry.ground import GroundPlane
from tracks4d.network.checkpoint import CheckpointError, save_checkpoint
from tracks4d.network.conditioned import (FEATURES, ConditionedConfig, ConditionedNet, Conditioning, conditioning,
                                          load_conditioned, moving_depth)
from tracks4d.network.model import ModelConfig, TracksTo4D
from tracks4d.pipeline import REFINE_MAX_PX, ReconstructOptions, run_pipeline
from training import conditioned as train
from training.synthetic import SceneConfig, generate_scene

TINY = ConditionedConfig(width=32, layers=1, heads=2, head_dim=16, mlp_dim=64, n_freqs=2)


def test_conditioning_marks_what_geometry_knows():
    n, p = 6, 5
    k = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    cams = Cameras(np.broadcast_to(np.eye(4), (n, 4, 4)).copy(), np.broadcast_to(k, (n, 3, 3)).copy())
    tracks = np.full((n, p, 2), [320.0, 240.0])
    tracks[:, 1] = [720.0, 240.0]                                     # one pixel to the right: ray x = 1
    visible = np.ones((n, p), bool)
    visible[0, 4] = False
    static_depth = np.full((n, p), np.nan)
    static_depth[:, :2] = [[2.0, 8.0]] * n                            # two static tracks: scale = median = 5 ... 
    static_depth[:, 2] = 4.0
    contact = np.full((n, p), np.nan)
    contact[:, 3] = 10.0
    plane = GroundPlane(np.array([0.0, -1.0, 0.0]), 1.5, 50)          # camera 1.5 above a floor (y down)
    cond = conditioning(tracks, visible, cams, np.array([0, 0, 0, 2.0, 3.0]), static_depth, contact, plane)
    f = cond.features
    assert f.shape == (n, p, len(FEATURES)) and f.dtype == np.float32
    assert cond.scale == pytest.approx(4.0)
    np.testing.assert_allclose(f[:, 1, 0], 1.0)                       # ray x
    np.testing.assert_allclose(f[:, :3, 4], np.log([[0.5, 2.0, 1.0]] * n), rtol=1e-6)
    assert (f[:, :3, 5] == 1).all() and (f[:, 3:, 5] == 0).all()
    np.testing.assert_allclose(f[:, 3, 6], np.log(2.5), rtol=1e-6)
    assert (f[:, 3, 7] == 1).all() and f[:, [0, 1, 2, 4], 7].sum() == 0
    assert f[0, 4, 2] == 0 and f[1, 4, 2] == 1
    np.testing.assert_allclose(f[0, 0, 10:13], [0, -1, 0])
    np.testing.assert_allclose(f[0, 0, 13], 1.5 / 4.0)
    assert (f[..., 9] == 0).all()        # every ray here is level: none meets the floor
    tilted = tracks.copy()
    tilted[:, 0, 1] = 240.0 + 400.0 * 0.5                             # ray y = 0.5: meets the floor at depth 3
    low = conditioning(tilted, visible, cams, np.zeros(p), static_depth, contact, plane).features
    np.testing.assert_allclose(low[:, 0, 8], np.log(3.0 / 4.0), rtol=1e-5)
    assert (low[:, 0, 9] == 1).all()
    assert (f[..., 3] == np.array([0, 0, 0, 2.0, 3.0])[None]).all()
    # without enough static depth there is no scale and no ground
    few = conditioning(tracks[:, :1], visible[:, :1], cams, np.zeros(1), static_depth[:, :1], contact[:, :1], plane)
    assert few.scale == 1.0 and (few.features[..., 14] == 0).all()


def test_network_is_equivariant_over_tracks_and_ignores_padding():
    torch.manual_seed(0)
    model = ConditionedNet(TINY).eval()
    x = torch.randn(1, 7, 9, len(FEATURES))
    x[..., 2] = 1.0
    out = model(x)
    order = torch.randperm(9)
    permuted = model(x[:, :, order])
    torch.testing.assert_close(permuted.log_depth, out.log_depth[:, :, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(permuted.motion_logit, out.motion_logit[:, order], atol=1e-5, rtol=1e-5)
    padded = torch.cat([x, torch.randn(1, 7, 3, len(FEATURES))], 2)
    padded = torch.cat([padded, torch.randn(1, 2, 12, len(FEATURES))], 1)
    mask_p = torch.tensor([[True] * 9 + [False] * 3])
    mask_n = torch.tensor([[True] * 7 + [False] * 2])
    out_pad = model(padded, mask_n, mask_p)
    torch.testing.assert_close(out_pad.log_depth[:, :7, :9], out.log_depth, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_pad.motion_logit[:, :9], out.motion_logit, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="features must be"):
        model(torch.zeros(1, 2, 3, 4))


def test_checkpoints_round_trip_and_the_wrong_kind_is_refused(tmp_path):
    model = ConditionedNet(TINY)
    save_checkpoint(tmp_path / "c.pt", model, step=3, half=True)
    loaded, payload = load_conditioned(tmp_path / "c.pt")
    assert payload["step"] == 3 and loaded.config == TINY
    save_checkpoint(tmp_path / "first.pt", TracksTo4D(ModelConfig.preset("small")))
    with pytest.raises(CheckpointError, match="not a geometry-conditioned checkpoint"):
        load_conditioned(tmp_path / "first.pt")


def test_overlapping_windows_share_one_scale_and_only_needed_tracks_are_placed(monkeypatch):
    torch.manual_seed(1)
    model = ConditionedNet(TINY).eval()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(30, 6, len(FEATURES))).astype(np.float32)
    features[..., 2] = 1.0
    features[..., 5] = 0.0
    need = np.ones(6, bool)
    one = moving_depth(model, Conditioning(features, 2.0), [(0, 30)], need)
    two = moving_depth(model, Conditioning(features, 2.0), [(0, 20), (10, 30)], need)
    assert one.depth.shape == two.depth.shape == (30, 6) and np.isfinite(two.depth).all()
    first = moving_depth(model, Conditioning(features[:20], 2.0), [(0, 20)], need)
    np.testing.assert_allclose(two.depth[:10], first.depth[:10], rtol=1e-5)
    assert ((two.motion > 0) & (two.motion < 1)).all()
    # tracks with known depth are context, not answers; groups of tracks give the same answers as one pass
    features[:, 4:, 5] = 1.0
    part = moving_depth(model, Conditioning(features, 2.0), [(0, 30)], np.array([True] * 4 + [False] * 2))
    assert np.isnan(part.depth[:, 4:]).all() and np.isfinite(part.depth[:, :4]).all()
    import tracks4d.network.conditioned as conditioned_module
    monkeypatch.setattr(conditioned_module, "GROUP_TRACKS", 2)
    grouped = moving_depth(model, Conditioning(features, 2.0), [(0, 30)], np.array([True] * 4 + [False] * 2))
    assert np.isfinite(grouped.depth[:, :4]).all() and not np.allclose(grouped.depth[:, :4], part.depth[:, :4])


def test_training_windows_carry_pipeline_geometry_and_exact_targets():
    rng = np.random.default_rng(3)
    config = train.training_config()
    assert config.mover_weights[list(("pet", "rigid", "sheet", "blob", "person")).index("sheet")] == 0
    windows = train.make_windows(rng, 24, 40, config, count=2, scene_tracks=200)
    assert len(windows) == 2
    for w in windows:
        assert w.features.shape[:2] == w.target.shape == w.visible.shape == (24, 40)
        known = (w.features[..., 5] > 0.5) & w.visible
        if known.sum() >= 8:   # static depth on the same scale as the target: they agree on static tracks
            assert np.median(np.abs(w.features[..., 4][known] - w.target[known])) < 0.05
        assert w.dynamic.mean() <= 0.5 + 1e-9 or (~w.dynamic).sum() == 0


def test_training_learns_and_resumes(tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    config = train.training_config()
    batch = train.collate([w for _ in range(2) for w in train.make_windows(rng, 16, 24, config, scene_tracks=120)])
    model = ConditionedNet(TINY)
    optim = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = train.losses(model, batch)["loss"].item()
    for _ in range(40):
        optim.zero_grad()
        loss = train.losses(model, batch)["loss"]
        loss.backward()
        optim.step()
    assert loss.item() < first - 0.3
    out = tmp_path / "run"
    common = ["--every", "1", "--validation", "1", "--batch-size", "2", "--threads", "1", "--real-share", "0"]
    assert train.main(["--out", str(out), "--steps", "2", "--preset", "geo", *common]) == 0
    assert train.main(["--out", str(out), "--resume", str(out / "last.pt"), "--steps", "3", *common]) == 0
    rows = (out / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3"]
    assert float(rows[-1].split(",")[1]) > 0  # CPU-hours accumulate over the resumed run
    assert train.main(["--resume", str(out / "last.pt"), "--ship", str(tmp_path / "shipped.pt")]) == 0
    _, payload = load_conditioned(tmp_path / "shipped.pt")
    assert "optimizer" not in payload and payload["extra"]["steps"] == 3 and payload["extra"]["cpu_core_hours"] > 0


def test_pipeline_places_moving_points_with_the_conditioned_network(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "moving.pt"
    save_checkpoint(path, ConditionedNet(TINY))
    scene = generate_scene(21, SceneConfig(n_frames=24, camera="orbit"))
    rec = run_pipeline(scene.tracks, ReconstructOptions(progress=False, moving_checkpoint=path)).reconstruction
    stages = rec.meta["stages"]
    assert stages["moving"]["network"] == str(path) and stages["refine"]["tracks"] > 0
    assert np.isfinite(rec.points).all()
    # moving points stay on the rays through their tracks: a refined entry is kept only within REFINE_MAX_PX of its
    # track, every other keeps the proposal, which lies on the ray
    moving = rec.motion_state == 1
    cam = np.einsum("nij,npj->npi", rec.world_to_camera[:, :3, :3], rec.points[:, moving]) \
        + rec.world_to_camera[:, None, :3, 3]
    pix = np.einsum("nij,npj->npi", rec.intrinsics, cam)
    error = np.linalg.norm(pix[..., :2] / pix[..., 2:] - rec.tracks[:, moving], axis=-1)[rec.visible[:, moving]]
    assert moving.sum() == stages["refine"]["tracks"] and error.max() < REFINE_MAX_PX + 0.01
    assert stages["refine"]["reprojection_px"] < REFINE_MAX_PX
    off = run_pipeline(scene.tracks, ReconstructOptions(progress=False, moving_checkpoint="none",
                                                        refine_moving=False)).reconstruction
    assert off.meta["stages"]["moving"]["network"].startswith("none") and off.meta["stages"]["refine"] is None
    np.testing.assert_allclose(off.camera_to_world, rec.camera_to_world)  # cameras do not depend on this stage


def test_real_clips_teach_hidden_static_depth():
    """A real clip's window hides a third of its static tracks' depth; only those entries carry a target, it is
    their triangulated depth, and the batch trains without motion labels for it."""
    scene = generate_scene(5, SceneConfig(n_frames=30, camera="orbit"))
    t = scene.tracks
    clip = train.RealClip("generated", t.tracks, t.visible, scene.world_to_camera, t.intrinsics_per_frame(), False,
                          tuple(int(v) for v in t.image_size))
    rng = np.random.default_rng(0)
    window = train.real_window(rng, clip, 24, 60)
    assert window is not None and not window.labelled
    assert window.features.shape[:2] == (24, 60) and window.visible.any()
    rows = window.visible.any(0)
    assert (window.features[..., 5][:, rows] == 0).all()                  # hidden from the network
    assert window.visible.sum() > 20
    batch = train.collate([window, *train.make_windows(rng, 24, 60, train.training_config(), count=1,
                                                       scene_tracks=150)])
    terms = train.losses(ConditionedNet(TINY), batch)
    assert torch.isfinite(terms["loss"]) and terms["motion"] > 0
    only_real = train.losses(ConditionedNet(TINY), train.collate([window]))
    assert only_real["motion"] == 0 and torch.isfinite(only_real["loss"])


def test_hidden_static_depth_targets_are_the_triangulated_depth():
    scene = generate_scene(6, SceneConfig(n_frames=24, camera="walk", noise=False))
    t = scene.tracks
    cams = Cameras(scene.world_to_camera, t.intrinsics_per_frame())
    hide = np.random.default_rng(0).random(t.n_points) < 1 / 3
    cond, static, depth = train.window_inputs(t.tracks, t.visible, cams, False, tuple(int(v) for v in t.image_size),
                                              hide)
    known = np.isfinite(depth)
    assert known[:, hide].any() and (cond.features[:, hide, 5] == 0).all()
    error = np.abs(depth[known] / scene.depth[known] - 1)   # exact cameras: exact depth, bar a slow mover or two
    assert np.median(error) < 1e-4 and np.mean(error < 1e-2) > 0.97


def test_each_window_places_only_the_tracks_it_sees(monkeypatch):
    """A long clip's windows each take the tracks they see (the work is linear in the clip); frames of windows that
    do not see a track hold its nearest estimate, and a track's answer does not depend on windows it is not in."""
    torch.manual_seed(2)
    model = ConditionedNet(TINY).eval()
    features = np.random.default_rng(3).normal(size=(60, 6, len(FEATURES))).astype(np.float32)
    features[..., 2], features[..., 5] = 1.0, 0.0
    features[30:, :3, 2] = 0.0                                     # tracks 0–2 seen only in the first half
    import tracks4d.network.conditioned as conditioned_module
    tokens = []
    real = conditioned_module.predict_depth

    def counted(model, window, device="cpu"):
        tokens.append(window.features.shape[0] * window.features.shape[1])
        return real(model, window, device)

    monkeypatch.setattr(conditioned_module, "predict_depth", counted)
    spans = [(0, 25), (17, 42), (35, 60)]
    out = moving_depth(model, Conditioning(features, 2.0), spans, np.ones(6, bool))
    assert tokens == [25 * 6, 25 * 6, 25 * 3]                     # the last window sees tracks 3–5 only
    assert np.isfinite(out.depth).all() and np.isfinite(out.sigma).all()
    np.testing.assert_array_equal(out.depth[42:, :3], np.repeat(out.depth[41:42, :3], 18, 0))   # held
    alone = moving_depth(model, Conditioning(features, 2.0), spans[:2], np.ones(6, bool))
    np.testing.assert_allclose(out.depth[:35, :3], alone.depth[:35, :3], rtol=1e-6)
