"""COP3D: annotation reading (jgz and sqlite), camera conversions, tracking cache, and a short training run.

The tree is built at test time from real frames with SYNTHETIC metadata (tests/cop3d_fixture.py)."""

import argparse
import shutil
import sqlite3

import numpy as np
import pytest

import training.cop3d as cop3d
from cop3d_fixture import FILE_OFFSET, REAL_DATA, build_cop3d_fixture
from tracks4d.contracts import TrackSet
from tracks4d.tracking import grid_points
from training.cop3d import (Cop3dDataset, Cop3dError, cache_path, ndc_to_pixel_intrinsics, pytorch3d_to_opencv,
                            read_cop3d, rescale_intrinsics, track_sequence)
from training.datasets import DATASETS, DatasetError
from training.trainer import main


def _tree(factory, source):
    if not REAL_DATA.is_dir():
        pytest.skip("../shared/data/real is absent")
    return build_cop3d_fixture(factory.mktemp(f"cop3d_{source}"), source)


@pytest.fixture(scope="module")
def jgz_tree(tmp_path_factory):
    return _tree(tmp_path_factory, "jgz")


@pytest.fixture(scope="module")
def sqlite_tree(tmp_path_factory):
    return _tree(tmp_path_factory, "sqlite")


@pytest.fixture(params=["jgz", "sqlite"])
def tree(request):
    return request.getfixturevalue(f"{request.param}_tree")


# --------------------------------------------------------------------------------------------- conversions
def test_ndc_isotropic_intrinsics_by_hand():
    # 640x480: s = min(W, H)/2 = 240; f = 2·240; c = (320 − 0.1·240, 240 + 0.2·240) − 0.5 (integer pixel centres)
    k = ndc_to_pixel_intrinsics([2.0, 2.0], [0.1, -0.2], "ndc_isotropic", (640, 480))
    np.testing.assert_allclose(k, [[480, 0, 295.5], [0, 480, 287.5], [0, 0, 1]])
    portrait = ndc_to_pixel_intrinsics([1.0, 1.0], [0.0, 0.0], "ndc_isotropic", (368, 480))
    np.testing.assert_allclose(portrait, [[184, 0, 183.5], [0, 184, 239.5], [0, 0, 1]])


def test_ndc_norm_image_bounds_intrinsics_by_hand():
    # x scaled by W/2 = 320, y by H/2 = 240
    k = ndc_to_pixel_intrinsics([2.0, 1.5], [0.1, -0.2], "ndc_norm_image_bounds", (640, 480))
    np.testing.assert_allclose(k, [[640, 0, 287.5], [0, 360, 287.5], [0, 0, 1]])
    with pytest.raises(Cop3dError, match="unknown intrinsics_format 'screen'"):
        ndc_to_pixel_intrinsics([1.0, 1.0], [0.0, 0.0], "screen", (640, 480))


def test_pytorch3d_pose_to_opencv_by_hand():
    R = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T = np.array([1.0, 2.0, 3.0])
    # PyTorch3D: X_cam = X_world @ R + T = (0, 1, 0) + (1, 2, 3) = (1, 3, 3), +X left, +Y up
    w2c = pytorch3d_to_opencv(R, T)
    np.testing.assert_allclose(w2c @ [1.0, 0.0, 0.0, 1.0], [-1.0, -3.0, 3.0, 1.0])
    np.testing.assert_allclose(w2c[:3, :3] @ w2c[:3, :3].T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("fmt", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_opencv_projection_matches_pytorch3d_screen(fmt):
    """A world point projected with PyTorch3D's NDC camera (±1 = image edges, +X left, +Y up) lands on the same
    pixel (integer centres) as with the converted OpenCV K and pose."""
    rng = np.random.default_rng(0)
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    R *= np.sign(np.linalg.det(R))  # a proper rotation
    T, focal, pp, (w, h) = np.array([0.1, -0.2, 4.0]), np.array([1.7, 1.4]), np.array([0.05, -0.03]), (368, 480)
    x_world = rng.normal(size=3) * 0.5
    view = x_world @ R + T
    ndc = focal * view[:2] / view[2] + pp
    scale = np.full(2, min(w, h) / 2) if fmt == "ndc_isotropic" else np.array([w, h]) / 2
    expected = np.array([w, h]) / 2 - ndc * scale - 0.5
    cam = (pytorch3d_to_opencv(R, T) @ np.append(x_world, 1.0))[:3]
    pix = ndc_to_pixel_intrinsics(focal, pp, fmt, (w, h)) @ cam
    np.testing.assert_allclose(pix[:2] / pix[2], expected, atol=1e-9)


def test_rescaled_intrinsics_of_a_resized_frame_match():
    """NDC intrinsics do not change when a frame is resized; the pixel K of the small frame, rescaled to the
    large size, equals the large frame's K."""
    small = ndc_to_pixel_intrinsics([2.4, 1.9], [0.0, 0.01], "ndc_norm_image_bounds", (276, 360))
    large = ndc_to_pixel_intrinsics([2.4, 1.9], [0.0, 0.01], "ndc_norm_image_bounds", (368, 480))
    np.testing.assert_allclose(rescale_intrinsics(small, (276, 360), (368, 480)), large, atol=1e-12)


# --------------------------------------------------------------------------------------------- reader
def test_reader_finds_sequences_counts_null_viewpoints_and_reports_bad_annotations(tree):
    index = read_cop3d(tree["root"])
    assert index.source == tree["source"]
    frames = {s.key: len(s.frames) for s in index.sequences}
    assert frames == {**tree["usable"], "dog/dog_broken": 24}  # images are checked when tracking
    assert index.null_viewpoints == tree["null_viewpoints"] == 1
    assert len(index.problems) == 1 and index.problems[0].startswith("cat/cat_badformat: skipped: ")
    assert tree["damaged"]["cat/cat_badformat"] in index.problems[0]


def test_frames_ordered_by_frame_number_and_found_by_image_path(jgz_tree):
    seq = {s.key: s for s in read_cop3d(jgz_tree["root"]).sequences}["cat/cat_orbit"]
    numbers = [f.frame_number for f in seq.frames]
    assert numbers == [n for n in range(28) if n != 5]  # annotations are shuffled in the file; 5 has no viewpoint
    assert [f.image.name for f in seq.frames] == [f"frame{n + FILE_OFFSET:06d}.jpg" for n in numbers]
    assert all(f.image.is_file() for f in seq.frames)


def test_sqlite_and_jgz_give_the_same_sequences(jgz_tree, sqlite_tree):
    a, b = read_cop3d(jgz_tree["root"]), read_cop3d(sqlite_tree["root"])
    assert [s.key for s in a.sequences] == [s.key for s in b.sequences]
    for sa, sb in zip(a.sequences, b.sequences):
        assert sa.null_viewpoints == sb.null_viewpoints
        for fa, fb in zip(sa.frames, sb.frames, strict=True):
            assert fa.frame_number == fb.frame_number and fa.image_size == fb.image_size
            assert fa.image.relative_to(a.root) == fb.image.relative_to(b.root)
            np.testing.assert_allclose(fa.intrinsics, fb.intrinsics, rtol=1e-12)
            np.testing.assert_allclose(fa.world_to_camera, fb.world_to_camera, rtol=1e-12, atol=1e-12)


def test_sizes_and_intrinsics_per_frame(sqlite_tree):
    seq = {s.key: s for s in read_cop3d(sqlite_tree["root"]).sequences}["cat/cat_resize"]
    assert {f.image_size for f in seq.frames[:14]} == {(368, 480)}
    assert {f.image_size for f in seq.frames[14:]} == {(276, 360)}
    np.testing.assert_allclose(seq.frames[0].intrinsics[0, 0], 2.4 * 368 / 2, rtol=1e-6)
    np.testing.assert_allclose(seq.frames[20].intrinsics[1, 1], 1.9 * 360 / 2, rtol=1e-6)


def test_set_list_and_categories_select_sequences(sqlite_tree):
    root = sqlite_tree["root"]
    train = read_cop3d(root, set_list=sqlite_tree["set_list"], split="train")
    test = read_cop3d(root, set_list=sqlite_tree["set_list"], split="test")
    assert [s.key for s in test.sequences] == sqlite_tree["test_split"]
    assert "cat/cat_resize" not in {s.key for s in train.sequences}
    assert {s.category for s in read_cop3d(root, ["dog"]).sequences} == {"dog"}
    with pytest.raises(DatasetError, match="no category horse"):
        read_cop3d(root, ["horse"])
    with pytest.raises(DatasetError, match="no split 'val'"):
        read_cop3d(root, set_list=sqlite_tree["set_list"], split="val")


def test_bad_blob_and_unreadable_jgz_are_reported(jgz_tree, sqlite_tree, tmp_path):
    db = tmp_path / "sql" / "metadata.sqlite"
    db.parent.mkdir()
    shutil.copy(sqlite_tree["root"] / "metadata.sqlite", db)
    with sqlite3.connect(db) as con:
        con.execute("UPDATE frame_annots SET _viewpoint_T = ? WHERE sequence_name = 'dog_pan' AND frame_number = 2",
                    (b"\0" * 8,))
    problems = read_cop3d(db.parent).problems
    assert any(p.startswith("dog/dog_pan: skipped: frame 2: _viewpoint_T: expected 3 packed float32 values, got 8")
               for p in problems)
    for category in ("cat", "dog"):
        (tmp_path / "jgz" / category).mkdir(parents=True)
        shutil.copy(jgz_tree["root"] / category / "frame_annotations.jgz", tmp_path / "jgz" / category)
    (tmp_path / "jgz" / "cat" / "frame_annotations.jgz").write_bytes(b"garbage")
    index = read_cop3d(tmp_path / "jgz")
    assert {s.category for s in index.sequences} == {"dog"}
    assert index.problems[0].startswith("cat: category skipped: ") and "cannot read gzipped JSON" in index.problems[0]
    with pytest.raises(DatasetError, match="no COP3D metadata"):
        read_cop3d(tmp_path / "sql" / "..")


# --------------------------------------------------------------------------------------------- tracking + cache
def test_cache_tracks_once_resumes_and_skips_damaged(jgz_tree, tmp_path, monkeypatch, capsys):
    calls = []
    real = cop3d.track_clip
    monkeypatch.setattr(cop3d, "track_clip", lambda clip, config: calls.append(1) or real(clip, config))
    cache = tmp_path / "cache"
    ds = Cop3dDataset(jgz_tree["root"], cache_dir=cache, progress=False)
    assert len(calls) == 3 and ds.cache.tracked == 3 and ds.cache.reused == 0
    err = capsys.readouterr().err
    for key, reason in jgz_tree["damaged"].items():
        assert f"warning: COP3D {key}: skipped: " in err and reason in err
    files = sorted(cache.rglob("*.npz"))
    assert [f.relative_to(cache).as_posix() for f in files] == ["cat/cat_orbit.npz", "cat/cat_resize.npz",
                                                                "dog/dog_pan.npz"]
    mtimes = [f.stat().st_mtime_ns for f in files]

    again = Cop3dDataset(jgz_tree["root"], cache_dir=cache, progress=False)
    assert len(calls) == 3 and again.cache.reused == 3
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert len(again.clips) == 3 and again.sample(np.random.default_rng(0), 20, 40).inputs.shape[0] == 20

    (cache / "cat" / "cat_resize.npz").write_bytes(b"half a file")  # damaged cache file: tracked again
    (cache / "dog" / "dog_extra.npz.tmp").write_bytes(b"interrupted write")  # never counted
    third = Cop3dDataset(jgz_tree["root"], cache_dir=cache, progress=False)
    assert len(calls) == 4 and third.cache.tracked == 1 and third.cache.reused == 2 and len(third.clips) == 3

    dog = Cop3dDataset(jgz_tree["root"], ["dog"], cache_dir=cache, progress=False)
    assert [c.source for c in dog.clips] == [str(cache / "dog" / "dog_pan.npz")]


def test_cached_track_file_contents(jgz_tree, tmp_path):
    index = read_cop3d(jgz_tree["root"], ["cat"])
    ds = Cop3dDataset(jgz_tree["root"], ["cat"], cache_dir=tmp_path, progress=False)
    for seq, clip in zip(index.sequences, ds.clips, strict=True):
        loaded = TrackSet.load(cache_path(tmp_path, seq))
        n = len(seq.frames)
        assert loaded.n_frames == n and loaded.intrinsics.shape == (n, 3, 3)
        assert tuple(loaded.image_size) == seq.frames[0].image_size
        np.testing.assert_array_equal(loaded.ground_truth.world_to_camera, [f.world_to_camera for f in seq.frames])
        w, h = seq.frames[0].image_size
        pts = loaded.tracks[loaded.visible]
        assert pts.min() >= 0 and (pts[:, 0] <= w - 1).all() and (pts[:, 1] <= h - 1).all()
        # every frame is resized to the first frame's size, so NDC-identical intrinsics become identical K
        np.testing.assert_allclose(loaded.intrinsics, np.broadcast_to(loaded.intrinsics[0], (n, 3, 3)), atol=1e-9)


def test_working_resolution_tracks_map_back_to_input_pixels(jgz_tree):
    seq = {s.key: s for s in read_cop3d(jgz_tree["root"]).sequences}["dog/dog_pan"]
    ts = track_sequence(seq, long_side=320)  # 640x360 tracked at 320x180
    assert tuple(ts.image_size) == (640, 360)
    seeds = ts.tracks[ts.query_frame, np.arange(ts.n_points)]
    grid = grid_points(640, 360, 15)  # the query grid, in input pixels
    on_grid = np.abs(seeds[:, None] - grid[None]).sum(-1).min(1) < 1e-3
    assert on_grid.mean() > 0.9                      # the rest start where a track was cut (tracks4d.tracking.lk)


def test_no_usable_sequence_is_a_dataset_error(jgz_tree, tmp_path, monkeypatch):
    def fail(clip, config):
        raise ValueError("no track stays visible")

    monkeypatch.setattr(cop3d, "track_clip", fail)
    with pytest.raises(DatasetError, match=r"no usable COP3D sequence \(5 skipped; first: cat/cat_badformat"):
        Cop3dDataset(jgz_tree["root"], cache_dir=tmp_path, progress=False)


def test_registered_builder_reads_categories(jgz_tree, tmp_path):
    assert "cop3d" in DATASETS
    args = argparse.Namespace(data="cop3d", root=str(jgz_tree["root"]), categories="dog", cache=str(tmp_path),
                              no_progress=True)
    assert len(DATASETS["cop3d"](args).clips) == 1
    with pytest.raises(DatasetError, match="needs --root"):
        DATASETS["cop3d"](argparse.Namespace(data="cop3d", root=None))


def test_short_training_run_on_cop3d(sqlite_tree, tmp_path):
    argv = ["--data", "cop3d", "--root", str(sqlite_tree["root"]), "--steps", "2", "--no-progress",
            "--batch-size", "2", "--tracks", "40", "--val-scenes", "1", "--val-frames", "24", "--val-tracks", "60",
            "--curriculum-steps", "1", "--max-frames", "24", "--val-every", "0", "--ckpt-every", "0",
            "--pretrain-max-steps", "3", "--threads", "2", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
    assert len(list((sqlite_tree["root"] / ".tracks4d_cache").rglob("*.npz"))) == 3
