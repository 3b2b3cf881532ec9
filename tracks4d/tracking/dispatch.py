"""Which tracker runs: the built-in one (:mod:`.lk`) or CoTracker (:mod:`.cotracker`, imported only when chosen),
on a decoded clip or a video, the result in the input's own pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..contracts import TrackSet
from ..io.video import Clip, read_video
from .config import TrackerConfig
from .lk import track_frames

__all__ = ["TRACKERS", "track_clip", "track_video"]


TRACKERS = ("lk", "cotracker")


def track_clip(clip: Clip, config: TrackerConfig = TrackerConfig(), *, tracker: str = "lk",
               checkpoint: str | Path | None = None, device: str = "cpu", progress: bool = False) -> TrackSet:
    """Track a decoded clip at its working resolution with the built-in tracker ("lk") or CoTracker; the result is
    in the input's own pixel coordinates, with its image size."""
    if tracker == "lk":
        ts = track_frames(clip.frames, config, progress)
    elif tracker == "cotracker":
        from .cotracker import load_cotracker, track_frames_cotracker

        ts = track_frames_cotracker(clip.frames, load_cotracker(checkpoint, device), config, device)
    else:
        raise ValueError(f"unknown tracker {tracker!r}; choose one of {TRACKERS}")
    return TrackSet(clip.to_source_pixels(ts.tracks).astype(np.float32), ts.visible,
                    image_size=np.array(clip.source_size), query_frame=ts.query_frame, confidence=ts.confidence)


def track_video(path: str | Path, *, stride: int = 1, max_frames: int | None = None, long_side: int | None = 640,
                config: TrackerConfig = TrackerConfig(), tracker: str = "lk", checkpoint: str | Path | None = None,
                progress: bool = False) -> TrackSet:
    """Decode a video (file or frame folder) and track it (:func:`track_clip`): tracks in input pixels."""
    clip = read_video(path, stride=stride, max_frames=max_frames, long_side=long_side)
    return track_clip(clip, config, tracker=tracker, checkpoint=checkpoint, progress=progress)
