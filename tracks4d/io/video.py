"""Video input: video files (PyAV, which ships its own FFmpeg) and folders of frames, with stride, a frame cap
and a working resolution. Pixel centres are at integer coordinates in both resolutions, so a source pixel x maps
to (x + 0.5)·s − 0.5 at working scale s."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["VideoError", "VideoInfo", "Clip", "probe_video", "read_video", "VIDEO_SUFFIXES", "IMAGE_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class VideoError(ValueError):
    """A video or frame folder cannot be read (missing, unsupported, corrupt or empty)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source holds: frame count (decoded count for files whose header lacks it), fps (None for frame
    folders) and the (width, height) of its frames."""

    path: Path
    n_frames: int
    fps: float | None
    width: int
    height: int


@dataclass(frozen=True)
class Clip:
    """Decoded frames at working resolution.

    frames: (N, H, W, 3) uint8 RGB · frame_indices: (N,) source frame numbers used · fps: of the clip after stride
    (None when unknown) · source_size: (W, H) of the input · size: (W, H) of ``frames``.
    """

    frames: np.ndarray
    frame_indices: np.ndarray
    fps: float | None
    source_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): working size / source size."""
        return self.size[0] / self.source_size[0], self.size[1] / self.source_size[1]

    def to_source_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 2) working-resolution pixels → input-resolution pixels."""
        s = np.asarray(self.scale)
        return (np.asarray(pixels, dtype=np.float64) + 0.5) / s - 0.5

    def to_working_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(..., 2) input-resolution pixels → working-resolution pixels."""
        return (np.asarray(pixels, dtype=np.float64) + 0.5) * np.asarray(self.scale) - 0.5

    def intrinsics_to_working(self, intrinsics: np.ndarray) -> np.ndarray:
        """(3, 3) or (N, 3, 3) input-resolution K → the same K at working resolution."""
        sx, sy = self.scale
        k = np.array(intrinsics, dtype=np.float64)
        k[..., 0, :] *= sx
        k[..., 1, :] *= sy
        k[..., 0, 2] += 0.5 * sx - 0.5
        k[..., 1, 2] += 0.5 * sy - 0.5
        return k


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _frame_files(folder: Path) -> list[Path]:
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise VideoError(f"{folder}: folder holds no frames ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _check_source(path: Path) -> None:
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise VideoError(f"{path}: unsupported input type '{path.suffix}' (videos: {', '.join(VIDEO_SUFFIXES)}; "
                         f"or a folder of frames)")


def _read_image(path: Path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VideoError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _decode(path: Path):
    """Yield RGB frames (H, W, 3) uint8 of a video file; raise VideoError on corrupt data."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: cannot decode video ({type(exc).__name__}: {exc})") from None


def probe_video(path: str | Path, count_limit: int | None = None) -> VideoInfo:
    """Frame count, fps and size of a video file or frame folder. A file whose header has no count is counted by
    its packets (demuxed, not decoded), stopping at ``count_limit`` + 1 (then "more than the limit")."""
    path = Path(path)
    _check_source(path)
    if path.is_dir():
        files = _frame_files(path)
        h, w = _read_image(files[0]).shape[:2]
        return VideoInfo(path, len(files), None, w, h)
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            n, w, h = int(stream.frames or 0), stream.codec_context.width, stream.codec_context.height
            if n <= 0:
                for packet in container.demux(stream):
                    n += packet.size > 0
                    if count_limit is not None and n > count_limit:
                        break
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: cannot open video ({type(exc).__name__}: {exc})") from None
    if n <= 0 or not w or not h:
        raise VideoError(f"{path}: video holds no frames")
    return VideoInfo(path, n, fps, w, h)


def read_video(path: str | Path, *, stride: int = 1, max_frames: int | None = None,
               long_side: int | None = 640) -> Clip:
    """Decode every ``stride``-th frame (at most ``max_frames``), resized so the long side is ``long_side``
    (None = keep the input size; frames are never upscaled)."""
    import cv2

    path = Path(path)
    if stride < 1:
        raise VideoError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"max_frames must be >= 1, got {max_frames}")
    _check_source(path)
    if path.is_dir():
        files = _frame_files(path)[::stride][:max_frames]
        source = ((i * stride, _read_image(f)) for i, f in enumerate(files))
        fps = None
    else:
        source = ((i, img) for i, img in enumerate(_decode(path)) if i % stride == 0)
        fps = probe_video(path).fps
    frames, indices, source_size, size = [], [], None, None
    for i, img in source:
        if max_frames is not None and len(frames) >= max_frames:
            break
        h, w = img.shape[:2]
        if source_size is None:
            source_size = (w, h)
            s = 1.0 if long_side is None else min(1.0, long_side / max(w, h))
            size = (max(1, round(w * s)), max(1, round(h * s)))
        elif (w, h) != source_size:
            raise VideoError(f"{path}: frame {i} is {w}x{h}, earlier frames {source_size[0]}x{source_size[1]}")
        frames.append(img if size == source_size else cv2.resize(img, size, interpolation=cv2.INTER_AREA))
        indices.append(i)
    if not frames:
        raise VideoError(f"{path}: video holds no frames")
    return Clip(np.stack(frames), np.array(indices), None if fps is None else fps / stride, source_size)
