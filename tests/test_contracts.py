"""TrackSet / Reconstruction validation and .npz round trips (README, *Files*)."""

import json

import numpy as np
import pytest

from tracks4d.contracts import ContractError, GroundTruth, Reconstruction, TrackSet, load_any
from tracks4d.geometry import invert_rigid

K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])


def make_tracks(n=12, p=7, seed=0):
    rng = np.random.default_rng(seed)
    tracks = rng.uniform(0, 600, (n, p, 2)).astype(np.float32)
    visible = rng.random((n, p)) > 0.2
    return TrackSet(tracks, visible, K, np.array([640, 480]), rng.integers(0, n, p))


def test_trackset_round_trip(tmp_path):
    ts = make_tracks()
    ts.save(tmp_path / "t.npz")
    back = TrackSet.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.tracks, ts.tracks)
    np.testing.assert_array_equal(back.visible, ts.visible)
    np.testing.assert_array_equal(back.query_frame, ts.query_frame)
    np.testing.assert_allclose(back.intrinsics, K)
    assert back.tracks.dtype == np.float32 and back.visible.dtype == bool
    with np.load(tmp_path / "t.npz") as npz:
        assert set(npz.files) == {"tracks", "visible", "intrinsics", "image_size", "query_frame"}


def test_ground_truth_round_trip(tmp_path):
    ts = make_tracks()
    n, p = ts.n_frames, ts.n_points
    w2c = np.tile(np.eye(4), (n, 1, 1))
    gt = GroundTruth(w2c, np.ones((n, p)), np.zeros((n, p), bool))
    TrackSet(ts.tracks, ts.visible, ts.intrinsics, ground_truth=gt).save(tmp_path / "g.npz")
    back = TrackSet.load(tmp_path / "g.npz")
    np.testing.assert_allclose(back.ground_truth.world_to_camera, w2c)
    assert back.ground_truth.dynamic.dtype == bool


@pytest.mark.parametrize(
    "change, field, words",
    [
        (dict(tracks=np.zeros((5, 3))), "tracks", "expected shape"),
        (dict(tracks=np.full((5, 3, 2), np.nan)), "tracks", "NaN"),
        (dict(tracks=np.zeros((1, 3, 2))), "tracks", "at least 2 frames"),
        (dict(tracks=np.zeros((5, 0, 2)), visible=np.zeros((5, 0), bool)), "tracks", "no tracks"),
        (dict(visible=np.zeros((5, 4), bool)), "visible", "expected shape"),
        (dict(visible=np.zeros((5, 3), bool)), "visible", "no entry is visible"),
        (dict(visible=np.full((5, 3), 2)), "visible", "booleans"),
        (dict(intrinsics=np.eye(2)), "intrinsics", "expected shape"),
        (dict(intrinsics=np.diag([-1.0, 1, 1])), "intrinsics", "positive"),
        (dict(intrinsics=np.ones((3, 3))), "intrinsics", "last row"),
        (dict(query_frame=np.array([0, 9, 1])), "query_frame", "[0, 4]"),
        (dict(image_size=np.array([0, 10])), "image_size", "positive"),
        (dict(tracks=np.array([["a", "b"]] * 15).reshape(5, 3, 2)), "tracks", "float"),
    ],
)
def test_trackset_rejects_bad_input(change, field, words):
    base = dict(tracks=np.zeros((5, 3, 2), np.float32), visible=np.ones((5, 3), bool))
    base.update(change)
    with pytest.raises(ContractError) as err:
        TrackSet(**base)
    message = str(err.value)
    assert f"'{field}'" in message and words in message and "\n" not in message


def test_official_layout(tmp_path):
    rng = np.random.default_rng(1)
    t, p = 30, 20
    ks = np.tile(K, (t, 1, 1))
    ms = np.tile(np.eye(4)[:3], (t, 1, 1))
    np.savez(tmp_path / "official.npz", pred_tracks=rng.uniform(0, 400, (1, t, p, 2)),
             pred_visibility=rng.random((1, t, p)) > 0.3, started_at=rng.integers(0, t, (1, 1, p)), Ks_all=ks,
             Ms_all=ms, GT_depth_tracks_all=rng.uniform(1, 3, (1, t, p)),
             GT_mask_tracks_all=(rng.random((1, t, p)) > 0.5).astype(np.float32))
    ts = TrackSet.load(tmp_path / "official.npz")
    assert (ts.n_frames, ts.n_points) == (t, p)
    assert ts.intrinsics.shape == (t, 3, 3) and ts.query_frame.shape == (p,)
    assert ts.ground_truth.world_to_camera.shape == (t, 4, 4)
    np.testing.assert_allclose(ts.ground_truth.world_to_camera[:, 3], np.tile([0, 0, 0, 1.0], (t, 1)))
    assert ts.ground_truth.depth.shape == (t, p) and ts.ground_truth.dynamic.dtype == bool


def test_bad_files_give_one_clear_error(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ContractError, match="not a readable .npz"):
        TrackSet.load(tmp_path / "junk.npz")
    with pytest.raises(ContractError, match="no such file"):
        TrackSet.load(tmp_path / "absent.npz")
    np.savez(tmp_path / "nofield.npz", tracks=np.zeros((4, 2, 2)))
    with pytest.raises(ContractError, match="'visible': missing"):
        TrackSet.load(tmp_path / "nofield.npz")
    np.savez(tmp_path / "official_bad.npz", pred_tracks=np.zeros((1, 4, 3, 2)), pred_visibility=np.ones((1, 4, 2)))
    with pytest.raises(ContractError, match="'pred_visibility': expected shape"):
        TrackSet.load(tmp_path / "official_bad.npz")
    np.savez(tmp_path / "pickled.npz", tracks=np.array([object()], dtype=object))
    with pytest.raises(ContractError, match="pickle"):
        TrackSet.load(tmp_path / "pickled.npz")


def test_subset_rebases_query_frames():
    ts = make_tracks(n=12, p=7)
    sub = ts.subset(frames=slice(4, 10), points=np.array([0, 2]))
    assert sub.tracks.shape == (6, 2, 2)
    np.testing.assert_array_equal(sub.tracks, ts.tracks[4:10][:, [0, 2]])
    assert ((sub.query_frame >= 0) & (sub.query_frame < 6)).all()


def make_reconstruction(n=6, p=5, k=3):
    rng = np.random.default_rng(2)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, 3] = rng.normal(size=(n, 3))
    return Reconstruction(
        camera_to_world=c2w, world_to_camera=invert_rigid(c2w), intrinsics=np.tile(K, (n, 1, 1)),
        points=rng.normal(size=(n, p, 3)), static_points=rng.normal(size=(p, 3)),
        motion_level=rng.uniform(0.1, 1, p), depth=rng.uniform(1, 2, (n, p)), bases=rng.normal(size=(k, p, 3)),
        coefficients=rng.normal(size=(n, k)), tracks=rng.uniform(0, 100, (n, p, 2)),
        visible=np.ones((n, p), bool), meta={"timings": {"network_s": 0.1}})


def test_reconstruction_round_trip(tmp_path):
    rec = make_reconstruction()
    rec.save(tmp_path / "reconstruction.npz")
    back = load_any(tmp_path / "reconstruction.npz")
    assert isinstance(back, Reconstruction)
    np.testing.assert_allclose(back.camera_to_world, rec.camera_to_world)
    np.testing.assert_allclose(back.points, rec.points)
    assert back.meta == rec.meta
    with np.load(tmp_path / "reconstruction.npz") as npz:
        assert json.loads(str(npz["meta"]))["timings"]["network_s"] == 0.1
        assert npz["camera_to_world"].dtype == np.float64


def test_reconstruction_rejects_inconsistent_cameras():
    rec = make_reconstruction()
    fields = {k: getattr(rec, k) for k in rec.__dataclass_fields__ if k != "source"}
    fields["world_to_camera"] = rec.camera_to_world
    fields["world_to_camera"] = fields["world_to_camera"].copy()
    fields["world_to_camera"][:, :3, 3] += 1
    with pytest.raises(ContractError, match="inverse"):
        Reconstruction(**fields)
    fields = {k: getattr(rec, k) for k in rec.__dataclass_fields__ if k != "source"}
    fields["motion_level"] = -fields["motion_level"]
    with pytest.raises(ContractError, match="'motion_level'"):
        Reconstruction(**fields)


def test_save_never_corrupts_previous_result(tmp_path, monkeypatch):
    rec = make_reconstruction()
    path = tmp_path / "reconstruction.npz"
    rec.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        rec.save(path)
    assert path.read_bytes() == before


def test_core_never_imports_service_or_training_and_serve_is_a_registered_command():
    import subprocess
    import sys

    code = ("import sys, tracks4d, tracks4d.pipeline, tracks4d.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'training')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    out = subprocess.run([sys.executable, "-m", "tracks4d.cli", "serve", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--data-dir" in out.stdout


def test_track_confidence_round_trips_and_is_checked(tmp_path):
    rng = np.random.default_rng(0)
    visible = rng.random((12, 5)) > 0.2
    conf = np.where(visible, rng.uniform(0, 1, (12, 5)), 0).astype(np.float32)
    ts = TrackSet(rng.uniform(0, 100, (12, 5, 2)), visible, confidence=conf)
    ts.save(tmp_path / "t.npz")
    back = TrackSet.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.confidence, conf)
    np.testing.assert_array_equal(back.subset(points=[1, 3]).confidence, conf[:, [1, 3]])
    assert (TrackSet(ts.tracks, visible).entry_confidence() == visible).all()      # absent: every visible entry is 1
    with pytest.raises(ContractError, match="confidence.*\\[0, 1\\]"):
        TrackSet(ts.tracks, visible, confidence=conf + 1)
    with pytest.raises(ContractError, match="confidence.*shape"):
        TrackSet(ts.tracks, visible, confidence=conf[:, :4])
