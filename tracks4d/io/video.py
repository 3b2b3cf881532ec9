"""Video input: video files (PyAV, which ships its own FFmpeg) and folders of frames, with stride, a frame cap
and a working resolution. Pixel centres are at integer coordinates in both resolutions, so a source pixel x maps
to (x + 0.5)·s − 0.5 at working scale s.

Real-video conventions: frames come back upright — a file's display matrix (phone clips store portrait video
landscape and say "turn 90°") is applied to the decoded frames, so the source size and every pixel coordinate refer
to the upright image — and each frame's presentation time is kept (``Clip.timestamps``), since phone clips often
have a variable frame rate. ``Clip.to_meta`` says what was read and what was corrected."""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["VideoError", "VideoInfo", "ReadRecipe", "Clip", "probe_video", "read_video", "upright", "VIDEO_SUFFIXES",
           "IMAGE_SUFFIXES", "VFR_TOLERANCE"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
VFR_TOLERANCE = 0.1  # a frame interval further than this fraction from the median one makes the rate variable


class VideoError(ValueError):
    """A video or frame folder cannot be read (missing, unsupported, corrupt or empty)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a source holds: frame count (decoded count for files whose header lacks it), fps (None for frame
    folders), the upright (width, height) of its frames, and how its decoded frames are turned upright
    (``rotation_deg`` clockwise, after a left-right mirror when ``mirrored``; see :func:`upright`)."""

    path: Path
    n_frames: int
    fps: float | None
    width: int
    height: int
    rotation_deg: int = 0
    mirrored: bool = False


@dataclass(frozen=True)
class ReadRecipe:
    """How :func:`read_video` read a clip: what :meth:`Clip.decoded` reads again."""

    path: Path
    stride: int
    max_frames: int | None
    long_side: int | None


@dataclass(frozen=True)
class Clip:
    """Decoded frames at working resolution, upright.

    frames: (N, H, W, 3) uint8 RGB, or None once :meth:`released` (a long clip's frames are the largest thing a
    reconstruction holds; :meth:`decoded` reads them again) · frame_indices: (N,) source frame numbers used · fps:
    of the clip after stride (None when unknown; for a variable rate the header's average) · source_size: upright
    (W, H) of the input ·
    size: (W, H) of ``frames`` · timestamps: (N,) float64 presentation time in seconds of each frame as the file
    stores it (None for frame folders) · rotation_deg, mirrored: how the decoded frames were turned upright (see
    :func:`upright`; 0 and False for frame folders) · recipe: how it was read (None when not by
    :func:`read_video`) · released_size: (W, H) of the released frames.
    """

    frames: np.ndarray | None
    frame_indices: np.ndarray
    fps: float | None
    source_size: tuple[int, int]
    timestamps: np.ndarray | None = None
    rotation_deg: int = 0
    mirrored: bool = False
    recipe: ReadRecipe | None = None
    released_size: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        if self.frames is None:
            return self.released_size
        return int(self.frames.shape[2]), int(self.frames.shape[1])

    def released(self) -> Clip:
        """This clip without its frames (they are read again by :meth:`decoded`); itself when it cannot read them
        again (not read by :func:`read_video`)."""
        if self.frames is None or self.recipe is None:
            return self
        return replace(self, frames=None, released_size=self.size)

    def decoded(self) -> Clip:
        """This clip with its frames: itself, or read again from its recipe — the same frames, or a
        :class:`VideoError` when the input changed since."""
        if self.frames is not None:
            return self
        r = self.recipe
        clip = read_video(r.path, stride=r.stride, max_frames=r.max_frames, long_side=r.long_side)
        if not np.array_equal(clip.frame_indices, self.frame_indices) or clip.size != self.size:
            raise VideoError(f"{r.path}: the input changed since it was read ({len(clip.frame_indices)} frames at "
                             f"{clip.size[0]}x{clip.size[1]}, before {len(self.frame_indices)} at "
                             f"{self.size[0]}x{self.size[1]})")
        return clip

    @property
    def scale(self) -> tuple[float, float]:
        """(sx, sy): working size / source size."""
        return self.size[0] / self.source_size[0], self.size[1] / self.source_size[1]

    @property
    def variable_frame_rate(self) -> bool:
        """Whether the kept frames' intervals (the last one ignored: files often cut it short) differ from their
        median by more than ``VFR_TOLERANCE`` of it. False without timestamps or with fewer than three frames."""
        if self.timestamps is None or len(self.timestamps) < 3:
            return False
        intervals = np.diff(np.asarray(self.timestamps, dtype=np.float64))[:-1]
        if len(intervals) < 2:
            return False
        median = float(np.median(intervals))
        return median <= 0 or bool(np.any(np.abs(intervals - median) > VFR_TOLERANCE * median))

    def to_meta(self) -> dict:
        """What was read and what was corrected, JSON-serialisable:
        ``rotation_deg`` clockwise turn applied to the decoded frames (0, 90, 180, 270) · ``mirrored`` ·
        ``rotated`` a sentence saying what was turned, None when nothing was · ``variable_frame_rate`` ·
        ``fps`` (None when unknown) · ``timestamps`` seconds of the kept frames rounded to 1e-4 (None for frame
        folders)."""
        rotated = None
        if self.rotation_deg or self.mirrored:
            how = ("mirrored left-right, then turned " if self.mirrored else "turned ") + f"{self.rotation_deg}°"
            rotated = f"decoded frames {how} clockwise to upright, as the file's display matrix asks"
        return {"rotation_deg": int(self.rotation_deg), "mirrored": bool(self.mirrored), "rotated": rotated,
                "variable_frame_rate": self.variable_frame_rate,
                "fps": None if self.fps is None else float(self.fps),
                "timestamps": None if self.timestamps is None else
                [round(float(t), 4) for t in self.timestamps]}

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


def upright(image: np.ndarray, rotation_deg: int, mirrored: bool = False) -> np.ndarray:
    """(H, W, ...) image as decoded → as it is meant to be shown: mirrored left-right first when ``mirrored``, then
    turned ``rotation_deg`` (a multiple of 90) clockwise. A 90° or 270° turn gives (W, H, ...)."""
    if rotation_deg % 90:
        raise VideoError(f"rotation must be a multiple of 90°, got {rotation_deg}°")
    if not rotation_deg % 360 and not mirrored:
        return image
    if mirrored:
        image = image[:, ::-1]
    return np.ascontiguousarray(np.rot90(image, k=-(rotation_deg // 90) % 4))


def _display_transform(matrix: np.ndarray, path: Path) -> tuple[int, bool]:
    """(9,) int32 display matrix (FFmpeg's DISPLAYMATRIX, the mp4 'tkhd' matrix: 16.16 fixed point, row-major
    (a b u; c d v; x y w); a stored pixel (x, y), y down, is shown at (a·x + c·y, b·x + d·y) + shift) → the
    (clockwise turn, mirrored) for :func:`upright`. A singular matrix (some writers leave it all zero) is ignored,
    as players do."""
    a, b, c, d = (float(matrix[i]) for i in (0, 1, 3, 4))
    det = a * d - b * c
    if det == 0:
        return 0, False
    if det < 0:  # matrix = turn · (x → −x): undo the mirror to read the turn
        a, b = -a, -b
    angle = math.degrees(math.atan2(b, a)) % 360
    turn = round(angle / 90) * 90
    if abs(angle - turn) > 1:
        raise VideoError(f"{path}: the display matrix turns the picture by {angle:.1f}°; only multiples of 90° "
                         f"are supported")
    return turn % 360, det < 0


def _frame_turn(frame, stream, path: Path) -> tuple[int, bool]:
    """(clockwise turn, mirrored) that brings a decoded frame upright: from its DISPLAYMATRIX side data (FFmpeg
    attaches the container's matrix to every frame), else the stream's legacy "rotate" tag (clockwise degrees)."""
    from av.sidedata.sidedata import Type

    matrix = frame.side_data.get(Type.DISPLAYMATRIX)
    if matrix is not None:
        return _display_transform(np.frombuffer(bytes(matrix), dtype=np.int32, count=9), path)
    try:
        clockwise = math.radians(float(stream.metadata.get("rotate", 0)))
    except ValueError:
        return 0, False
    cos, sin = math.cos(clockwise), math.sin(clockwise)
    return _display_transform(np.array([cos, sin, 0, -sin, cos, 0, 0, 0, 1]), path)


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


@contextmanager
def _open_video(path: Path, action: str):
    """(container, first video stream) of a video file; PyAV/FFmpeg errors in the block become one VideoError."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: has no video stream")
            yield container, container.streams.video[0]
    except VideoError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path}: cannot {action} video ({type(exc).__name__}: {exc})") from None


def probe_video(path: str | Path, count_limit: int | None = None) -> VideoInfo:
    """Frame count, fps, upright size and display turn of a video file or frame folder. The turn comes from the
    first decoded frame. A file whose header has no count is counted by its packets (demuxed, not decoded),
    stopping at ``count_limit`` + 1 (then "more than the limit")."""
    path = Path(path)
    _check_source(path)
    if path.is_dir():
        files = _frame_files(path)
        h, w = _read_image(files[0]).shape[:2]
        return VideoInfo(path, len(files), None, w, h)
    with _open_video(path, "open") as (container, stream):
        fps = float(stream.average_rate) if stream.average_rate else None
        header_count, w, h = int(stream.frames or 0), stream.codec_context.width, stream.codec_context.height
        counted, turn = 0, None
        for packet in container.demux(stream):  # ends with an empty packet, which flushes the decoder
            counted += packet.size > 0
            if turn is None:
                turn = next((_frame_turn(f, stream, path) for f in stream.decode(packet)), None)
            if turn is not None and (header_count > 0 or (count_limit is not None and counted > count_limit)):
                break
    n = header_count if header_count > 0 else counted
    if n <= 0 or not w or not h or turn is None:
        raise VideoError(f"{path}: video holds no frames")
    if turn[0] in (90, 270):
        w, h = h, w
    return VideoInfo(path, n, fps, w, h, *turn)


def _gather(source, path: Path, long_side: int | None, max_frames: int | None, expected: int = 0):
    """(frame number, (H, W, 3) image) pairs → (frames (N, h, w, 3) resized, frame numbers (N,), source (W, H));
    stops at ``max_frames``. Frames go straight into one array sized for ``expected`` frames (grown by half when
    more come): decoding holds the clip once, not a list of frames and then their stack."""
    import cv2

    frames, indices, source_size, size = None, [], None, None
    for i, img in source:
        h, w = img.shape[:2]
        if source_size is None:
            source_size = (w, h)
            s = 1.0 if long_side is None else min(1.0, long_side / max(w, h))
            size = (max(1, round(w * s)), max(1, round(h * s)))
            capacity = max(1, min(expected or 64, max_frames or expected or 64))
            frames = np.empty((capacity, size[1], size[0], img.shape[2]), np.uint8)
        elif (w, h) != source_size:
            raise VideoError(f"{path}: frame {i} is {w}x{h}, earlier frames {source_size[0]}x{source_size[1]}")
        if len(indices) == len(frames):
            frames = np.concatenate([frames, np.empty((len(frames) // 2 + 1,) + frames.shape[1:], np.uint8)])
        frames[len(indices)] = img if size == source_size else cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        indices.append(i)
        if max_frames is not None and len(indices) >= max_frames:
            break
    if not indices:
        raise VideoError(f"{path}: video holds no frames")
    n = len(indices)
    return (frames[:n] if n == len(frames) else frames[:n].copy()), np.array(indices), source_size


def read_video(path: str | Path, *, stride: int = 1, max_frames: int | None = None,
               long_side: int | None = 640) -> Clip:
    """Decode every ``stride``-th frame (at most ``max_frames``), turned upright as the file's display matrix asks
    and resized so the long side is ``long_side`` (None = keep the input size; frames are never upscaled), with
    each kept frame's presentation time."""
    path = Path(path)
    if stride < 1:
        raise VideoError(f"stride must be >= 1, got {stride}")
    if max_frames is not None and max_frames < 1:
        raise VideoError(f"max_frames must be >= 1, got {max_frames}")
    _check_source(path)
    recipe = ReadRecipe(path.resolve(), stride, max_frames, long_side)
    if path.is_dir():
        files = _frame_files(path)[::stride][:max_frames]
        frames, indices, source_size = _gather(((i * stride, _read_image(f)) for i, f in enumerate(files)), path,
                                               long_side, max_frames, len(files))
        return Clip(frames, indices, None, source_size, recipe=recipe)
    times, turns = [], []
    with _open_video(path, "decode") as (container, stream):
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate) if stream.average_rate else None

        def kept():
            for i, frame in enumerate(container.decode(stream)):
                if i % stride == 0:
                    turns.append(_frame_turn(frame, stream, path))
                    if turns[-1] != turns[0]:
                        raise VideoError(f"{path}: the display rotation changes at frame {i}")
                    times.append(frame.time)
                    yield i, upright(frame.to_ndarray(format="rgb24"), *turns[-1])

        frames, indices, source_size = _gather(kept(), path, long_side, max_frames, -(-stream.frames // stride))
    timestamps = None if any(t is None for t in times) else np.array(times, dtype=np.float64)
    return Clip(frames, indices, None if fps is None else fps / stride, source_size, timestamps, *turns[0],
                recipe=recipe)
