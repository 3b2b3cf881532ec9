"""Video input: files decoded with PyAV, frame folders, stride / max frames / working resolution, bad input;
real-video conventions (display rotation, variable frame rate)."""

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tracks4d.io.video import Clip, VideoError, probe_video, read_video, upright

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def frame(i, w=320, h=240):
    """A frame whose top-left pixel block encodes its index (robust to compression)."""
    img = np.full((h, w, 3), 40, np.uint8)
    img[:40, :40] = min(255, 10 * i)
    img[100:140, (5 * i) % (w - 40):(5 * i) % (w - 40) + 40] = 220
    return img


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(20):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_probe_and_read_file(mp4):
    info = probe_video(mp4)
    assert (info.n_frames, info.width, info.height) == (20, 320, 240) and abs(info.fps - 24) < 1e-6
    clip = read_video(mp4, long_side=None)
    assert clip.frames.shape == (20, 240, 320, 3) and clip.frames.dtype == np.uint8
    assert abs(int(clip.frames[7, 5:35, 5:35].mean()) - 70) <= 6  # frame order kept


def test_stride_max_frames_and_resolution(mp4):
    clip = read_video(mp4, stride=3, max_frames=4, long_side=160)
    assert clip.frames.shape == (4, 120, 160, 3)
    np.testing.assert_array_equal(clip.frame_indices, [0, 3, 6, 9])
    assert abs(clip.fps - 8.0) < 1e-6 and clip.source_size == (320, 240) and clip.scale == (0.5, 0.5)
    assert abs(int(clip.frames[2, 3:17, 3:17].mean()) - 60) <= 6  # source frame 6
    assert read_video(mp4, long_side=4000).size == (320, 240)  # never upscaled


def test_released_frames_are_read_again(mp4, tmp_path):
    """A released clip holds no frames and keeps its geometry; ``decoded()`` gives the same frames back, and says
    so when the input changed since."""
    clip = read_video(mp4, stride=2, max_frames=6, long_side=160)
    released = clip.released()
    assert released.frames is None and released.size == clip.size == (160, 120) and released.scale == clip.scale
    again = released.decoded()
    np.testing.assert_array_equal(again.frames, clip.frames)
    np.testing.assert_array_equal(again.frame_indices, clip.frame_indices)
    assert clip.decoded() is clip
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame(i))
    short = read_video(folder, long_side=None).released()
    (folder / "004.png").unlink()
    with pytest.raises(VideoError, match="changed since it was read"):
        short.decoded()


def test_pixel_and_intrinsics_scaling(mp4):
    clip = read_video(mp4, long_side=160)
    k = np.array([[300.0, 0, 159.5], [0, 300, 119.5], [0, 0, 1]])
    kw = clip.intrinsics_to_working(k)
    np.testing.assert_allclose(kw, [[150, 0, 79.5], [0, 150, 59.5], [0, 0, 1]])
    # a 3D point projects to p with K and to the working-resolution pixel with K_w; mapping back gives p
    x = np.array([0.1, -0.2])
    p_src = k[:2, :2] @ x + k[:2, 2]
    p_work = kw[:2, :2] @ x + kw[:2, 2]
    np.testing.assert_allclose(clip.to_source_pixels(p_work), p_src)


def test_frame_folder(tmp_path):
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), cv2.cvtColor(frame(i), cv2.COLOR_RGB2BGR))
    info = probe_video(tmp_path)
    assert (info.n_frames, info.fps, info.width) == (12, None, 320)
    clip = read_video(tmp_path, stride=5, long_side=None)
    np.testing.assert_array_equal(clip.frame_indices, [0, 5, 10])
    assert int(clip.frames[2, 0, 0, 0]) == 100  # natural order: f10 after f9, not after f1
    assert clip.timestamps is None and (clip.rotation_deg, clip.variable_frame_rate) == (0, False)
    assert clip.to_meta() == {"rotation_deg": 0, "mirrored": False, "rotated": None, "variable_frame_rate": False,
                              "fps": None, "timestamps": None}


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "absent.mp4", "no such file"),
    (lambda d: (d / "notes.txt").write_text("hi") and d / "notes.txt", "unsupported input type"),
    (lambda d: (d / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(5000)) and d / "broken.mp4",
     "cannot"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "holds no frames"),
    (lambda d: (d / "zero.mp4").write_bytes(b"") or d / "zero.mp4", "cannot"),
])
def test_bad_input_is_one_clear_error(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(VideoError) as err:
        read_video(path)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_mixed_frame_sizes_and_bad_options(tmp_path, mp4):
    cv2.imwrite(str(tmp_path / "0.png"), frame(0))
    cv2.imwrite(str(tmp_path / "1.png"), frame(1, w=200))
    with pytest.raises(VideoError, match="frame 1 is 200x240"):
        read_video(tmp_path)
    with pytest.raises(VideoError, match="stride"):
        read_video(mp4, stride=0)
    with pytest.raises(VideoError, match="max_frames"):
        read_video(mp4, max_frames=0)


@pytest.mark.realdata
@pytest.mark.parametrize("name, frames, size", [
    ("cotracker_demo_videos/cat.mp4", 87, (368, 480)),
    ("cotracker_demo_videos/bear.mp4", 82, (854, 480)),
    ("tapip3d_demo_videos/pstudio.mp4", 150, (640, 360)),
    ("davis_lady_running/frames", 65, (854, 480)),
])
def test_real_videos(name, frames, size):
    path = REAL / name
    if not path.exists():
        pytest.skip("../shared/data/real is absent")
    info = probe_video(path)
    assert info.n_frames == frames and (info.width, info.height) == size
    clip = read_video(path, max_frames=10)
    assert clip.frames.shape[0] == 10 and max(clip.size) == min(640, max(size))


CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_mp4(path, images, *, rate=24, pts_ms=None, rotation_ccw=None, matrix=None):
    """Encode (H, W, 3) images; pts_ms: per-frame times in ms (time base 1/1000) for a variable rate;
    rotation_ccw / matrix: the display matrix the container carries (PyAV's counter-clockwise angle, or raw)."""
    h, w = images[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(CODEC, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if (rotation_ccw is not None or matrix is not None) and not hasattr(stream, "set_display_matrix"):
            pytest.skip(f"PyAV {av.__version__} cannot write a display matrix (reading one needs no such API)")
        if rotation_ccw is not None:
            stream.set_display_rotation(rotation_ccw)
        if matrix is not None:
            stream.set_display_matrix(matrix)
        for i, img in enumerate(images):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if pts_ms is not None:
                f.pts, f.time_base = pts_ms[i], Fraction(1, 1000)
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def portrait(h=96, w=64):
    """An upright portrait image, asymmetric: a bright square top-left, a mid-grey bar along the bottom."""
    img = np.full((h, w, 3), 30, np.uint8)
    img[:24, :24] = 240
    img[-16:, :] = 130
    return img


def assert_looks_like(decoded, expected):
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 6


@pytest.mark.parametrize("rotation_deg", [90, 180, 270])
def test_rotated_file_reads_upright(tmp_path, rotation_deg):
    up = portrait()
    stored = np.rot90(up, k=rotation_deg // 90)  # what a player turns `rotation_deg` clockwise to show `up`
    path = write_mp4(tmp_path / "phone.mp4", [stored] * 6, rotation_ccw=-rotation_deg)
    with av.open(str(path)) as c:  # the display matrix round-trips through the mp4 (FFmpeg's angle: ccw)
        assert next(c.decode(video=0)).rotation % 360 == -rotation_deg % 360
    info = probe_video(path)
    assert (info.width, info.height, info.rotation_deg, info.mirrored) == (64, 96, rotation_deg, False)
    clip = read_video(path, long_side=None)
    assert clip.source_size == (64, 96) and clip.frames.shape == (6, 96, 64, 3)
    assert_looks_like(clip.frames[0], up)
    assert clip.frames[0, :20, :20].mean() > 200 and clip.frames[0, -20:, -20:].mean() < 200
    small = read_video(path, long_side=48)
    assert small.size == (32, 48) and small.source_size == (64, 96)
    meta = json.loads(json.dumps(clip.to_meta()))
    assert meta["rotation_deg"] == rotation_deg and f"{rotation_deg}°" in meta["rotated"]


def test_phone_display_matrix(tmp_path):
    """The matrix a phone writes for a portrait clip recorded on a landscape sensor: (x, y) shown at (H − y, x)."""
    up = portrait()
    stored = np.rot90(up)  # (64, 96): the sensor's landscape frame
    one, h = 1 << 16, stored.shape[0]
    path = write_mp4(tmp_path / "iphone.mp4", [stored] * 4, matrix=[0, one, 0, -one, 0, 0, h * one, 0, 1 << 30])
    assert (probe_video(path).width, probe_video(path).height) == (64, 96)
    clip = read_video(path, long_side=None)
    assert clip.rotation_deg == 90 and not clip.mirrored
    assert_looks_like(clip.frames[2], up)


@pytest.mark.parametrize("abcd, expected", [
    ((-1, 0, 0, 1), lambda s: s[:, ::-1]),  # shown at (W − x, y): mirrored left-right
    ((0, 1, 1, 0), lambda s: s.transpose(1, 0, 2)),  # shown at (y, x): transposed
])
def test_mirroring_display_matrix(tmp_path, abcd, expected):
    stored = np.rot90(portrait())
    a, b, c, d = (v << 16 for v in abcd)
    path = write_mp4(tmp_path / "mirror.mp4", [stored] * 4, matrix=[a, b, 0, c, d, 0, 0, 0, 1 << 30])
    clip = read_video(path, long_side=None)
    assert clip.mirrored and clip.to_meta()["rotated"].startswith("decoded frames mirrored")
    assert_looks_like(clip.frames[0], expected(stored))


def test_odd_rotation_is_one_clear_error(tmp_path):
    path = write_mp4(tmp_path / "tilted.mp4", [portrait()] * 3, rotation_ccw=45)
    with pytest.raises(VideoError, match="multiples of 90"):
        read_video(path)
    with pytest.raises(VideoError, match="multiple of 90"):
        upright(portrait(), 45)


def test_upright_turns_clockwise():
    img = np.arange(6).reshape(2, 3)  # [[0 1 2], [3 4 5]]
    np.testing.assert_array_equal(upright(img, 90), [[3, 0], [4, 1], [5, 2]])
    np.testing.assert_array_equal(upright(img, -270), upright(img, 90))
    np.testing.assert_array_equal(upright(img, 180), img[::-1, ::-1])
    np.testing.assert_array_equal(upright(img, 0, mirrored=True), img[:, ::-1])
    assert upright(img, 360) is img


def test_variable_frame_rate_timestamps(tmp_path):
    pts_ms = [0, 40, 80, 200, 240, 400, 440, 480, 520, 560]
    path = write_mp4(tmp_path / "vfr.mp4", [frame(i) for i in range(10)], pts_ms=pts_ms)
    clip = read_video(path, long_side=None)
    np.testing.assert_allclose(clip.timestamps, np.array(pts_ms) / 1000, atol=1e-3)
    assert clip.timestamps.dtype == np.float64 and clip.variable_frame_rate
    meta = json.loads(json.dumps(clip.to_meta()))
    assert meta["variable_frame_rate"] and meta["timestamps"][3] == 0.2 and meta["rotated"] is None
    strided = read_video(path, stride=2, max_frames=3, long_side=None)
    np.testing.assert_allclose(strided.timestamps, [0.0, 0.08, 0.24], atol=1e-3)


def test_constant_frame_rate_timestamps(mp4):
    clip = read_video(mp4, long_side=None)
    np.testing.assert_allclose(clip.timestamps, np.arange(20) / 24, atol=1e-3)
    assert not clip.variable_frame_rate and clip.to_meta()["fps"] == 24.0
    # a 30 fps clip in a millisecond time base (33, 33, 34 ms) is still constant
    ms = Clip(clip.frames[:7], np.arange(7), 30.0, (320, 240), np.array([0, 33, 67, 100, 133, 167, 200]) / 1000)
    assert not ms.variable_frame_rate
    old_style = Clip(clip.frames[:2], np.arange(2), 24.0, (320, 240))  # constructors without the new fields
    assert old_style.timestamps is None and old_style.to_meta()["timestamps"] is None


def test_a_portrait_phone_clip_is_tracked_upright(tmp_path):
    """A portrait clip stored sideways (display matrix 90°): tracks come in the upright image's pixels."""
    from tracks4d.tracking import track_video

    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (200, 140)).astype(np.float32), (0, 0), 2.0)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    up = [np.repeat(big[20 + t:180 + t, 20:116, None], 3, -1) for t in range(24)]       # (160, 96) upright
    path = write_mp4(tmp_path / "portrait.mp4", [np.rot90(f, k=1) for f in up], rotation_ccw=-90)
    ts = track_video(path, long_side=None)
    assert ts.image_size.tolist() == [96, 160]
    seen = ts.tracks[ts.visible]
    assert seen[:, 0].max() <= 95.5 and seen[:, 1].max() <= 159.5 and seen[:, 1].max() > 100
    moved = np.diff(ts.tracks, axis=0)[ts.visible[1:] & ts.visible[:-1]]      # content moves up the upright image
    assert np.median(moved[:, 1]) < -0.5 and abs(np.median(moved[:, 0])) < 0.2
