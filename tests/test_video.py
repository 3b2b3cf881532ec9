"""Video input: files decoded with PyAV, frame folders, stride / max frames / working resolution, bad input."""

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tracks4d.io.video import VideoError, probe_video, read_video

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
