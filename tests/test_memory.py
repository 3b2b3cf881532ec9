"""--max-memory (issue 22): the estimate, the stride it chooses, and a run that reads every k-th frame."""

import pytest

from tracks4d.cli import main
from tracks4d.contracts import Reconstruction
from tracks4d.memory import MIN_FRAMES, estimate_peak_gb, plan_stride
from tracks4d.io.video import probe_video
from helpers import shifted_clip, write_mp4



def test_the_estimate_grows_with_frames_and_pixels():
    assert estimate_peak_gb(600, 640, 480) > 2 * estimate_peak_gb(150, 640, 480) - 1.0
    assert estimate_peak_gb(600, 640, 480) > estimate_peak_gb(600, 320, 240)


def test_the_stride_is_the_smallest_that_fits():
    limit = estimate_peak_gb(300, 640, 480) + 1e-6
    assert plan_stride(300, 640, 480, limit).stride == 1 and plan_stride(300, 640, 480, limit).sentence() is None
    plan = plan_stride(1800, 640, 480, limit)
    assert plan.stride == 6 and plan.fits and plan.estimated_after_gb <= limit < plan.estimated_gb
    assert "every 6th frame was read (300 of 1800" in plan.sentence()
    tight = plan_stride(1800, 640, 480, 0.5)           # not even a network window's frames fit: said, not hidden
    assert -(-1800 // tight.stride) >= MIN_FRAMES > -(-1800 // (tight.stride + 1)) and not tight.fits
    assert not plan_stride(MIN_FRAMES, 640, 480, 0.5).fits
    assert "an estimated" in plan_stride(MIN_FRAMES, 640, 480, 0.5).sentence()
    with pytest.raises(ValueError, match="positive"):
        plan_stride(100, 640, 480, 0.0)


def test_reconstruct_reads_every_kth_frame_under_max_memory(tmp_path, checkpoint):  # noqa: F811
    write_mp4(tmp_path / "clip.mp4", shifted_clip(n=120, h=240, w=320))
    limit = estimate_peak_gb(60, 320, 240) + 1e-3                  # 60 frames fit, 120 do not
    out = tmp_path / "out"
    assert main(["reconstruct", str(tmp_path / "clip.mp4"), "-o", str(out), "--checkpoint", str(checkpoint),
                 "--grid", "8", "--fov-deg", "60", "--no-progress", "--max-memory", f"{limit:.4f}"]) == 0
    rec = Reconstruction.load(out / "reconstruction.npz")
    assert rec.n_frames == 60
    meta = rec.meta
    assert meta["memory"]["stride"] == 2 and meta["memory"]["frames"] == 120 and meta["memory"]["fits"]
    source_fps = probe_video(tmp_path / "clip.mp4").fps
    assert meta["video"]["fps"] == pytest.approx(source_fps / 2)
    assert meta["video"]["timestamps"][-1] == pytest.approx(118 / source_fps, abs=1e-3)     # frames 0, 2, …, 118
    assert any("every 2nd frame was read (60 of 120" in line for line in meta["verdict"])
