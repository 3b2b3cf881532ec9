"""Self-supervised training windows from real videos (``--data videos``), tracked once by the built-in tracker.

Every video file under ``--video-root`` (default ``../shared/data/real``) except the excluded ones (``pstudio``, the
fixed-camera check clip, by default) is tracked at ``long_side`` pixels and cached as a track ``.npz`` keyed by the
file's name, size and modification time; windows are then sampled as by :class:`ClipDataset` (the paper's rule).
Real clips carry no ground truth, so they only feed the self-supervised loss.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from tqdm import tqdm

from tracks4d.contracts import ContractError, TrackSet
from tracks4d.tracking import TrackerConfig, track_video
from tracks4d.io.video import VideoError

from .datasets import ClipDataset, DatasetError, register_dataset

__all__ = ["VIDEO_SUFFIXES", "DEFAULT_EXCLUDE", "DEFAULT_VIDEO_ROOT", "find_videos", "VideoDataset"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
DEFAULT_EXCLUDE = ("pstudio",)
"""Kept out of training: the fixed-camera check (issue 5) must run on a clip the model never saw."""
DEFAULT_VIDEO_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"


def find_videos(root: str | Path, exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> list[Path]:
    """Video files under ``root`` (recursively, sorted) whose stem is not in ``exclude``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"--video-root {root}: not a folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                  and p.stem not in exclude)


def _cache_file(cache_dir: Path, video: Path, long_side: int) -> Path:
    stat = video.stat()
    key = hashlib.sha1(f"{video.name}|{stat.st_size}|{stat.st_mtime_ns}|{long_side}".encode()).hexdigest()[:12]
    return cache_dir / f"{video.stem}-{key}.npz"


class VideoDataset(ClipDataset):
    """Real videos tracked once into ``cache_dir``; ``skipped`` lists the videos that could not be used."""

    def __init__(self, root: str | Path, cache_dir: str | Path, *, exclude: tuple[str, ...] = DEFAULT_EXCLUDE,
                 config: TrackerConfig = TrackerConfig(), long_side: int = 640, progress: bool = True):
        videos = find_videos(root, exclude)
        if not videos:
            raise DatasetError(f"--video-root {root}: holds no video file ({', '.join(VIDEO_SUFFIXES)})")
        cache_dir = Path(cache_dir)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"{cache_dir}: cannot create the track cache ({exc}); choose another with --cache") \
                from None
        clips, self.skipped, self.names = [], [], []
        for video in tqdm(videos, desc="tracking videos", unit="video", disable=not progress):
            path = _cache_file(cache_dir, video, long_side)
            try:
                clip = TrackSet.load(path) if path.is_file() else None
            except ContractError:
                clip = None
            if clip is None:
                try:
                    clip = track_video(video, long_side=long_side, config=config)
                except (VideoError, ContractError) as exc:
                    self.skipped.append(f"{video.name}: {exc}")
                    tqdm.write(f"warning: video skipped: {self.skipped[-1]}", file=sys.stderr)
                    continue
                clip.save(path)
            clips.append(clip)
            self.names.append(video.name)
        if not clips:
            raise DatasetError(f"--video-root {root}: no usable video ({len(self.skipped)} skipped; first: "
                               f"{self.skipped[0]})")
        super().__init__(clips)
        print(f"videos: {len(clips)} clips from {root} ({', '.join(self.names)}); excluded {', '.join(exclude)}",
              flush=True)


@register_dataset("videos")
def _videos(args: argparse.Namespace) -> VideoDataset:
    root = Path(getattr(args, "video_root", None) or DEFAULT_VIDEO_ROOT)
    cache = getattr(args, "cache", None) or Path.home() / ".cache" / "tracks4d" / "videos"
    return VideoDataset(root, cache, progress=not getattr(args, "no_progress", False))
