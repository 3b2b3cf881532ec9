"""What a request brings: the uploaded file's type from its first bytes (never its name), size limits, and checks
of track arrays and videos before a job is queued. Problems raise :class:`InputProblem` (an HTTP status and a
message naming the problem)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from tracks4d.contracts import TrackSet
from tracks4d.io.video import VideoError, probe_video, read_video

from .settings import Settings

__all__ = ["InputProblem", "sniff", "check_tracks", "check_track_file", "check_video", "tracks_from_json"]


class InputProblem(ValueError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sniff(head: bytes) -> str | None:
    """'npz', or a video container suffix ('.mp4', '.webm', '.avi', '.mpg'), from a file's first bytes; None for
    anything else."""
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head[4:8] == b"ftyp":
        return ".mp4"
    if head.startswith(b"\x1aE\xdf\xa3"):
        return ".webm"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return ".avi"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return ".mpg"
    return None


def _check_counts(n: int, p: int, settings: Settings) -> None:
    if n > settings.max_frames:
        raise InputProblem(413, f"too many frames: {n} > {settings.max_frames}")
    if p > settings.max_tracks:
        raise InputProblem(413, f"too many tracks: {p} > {settings.max_tracks}")


def _check_finite(xy: np.ndarray, visible: np.ndarray) -> None:
    bad = ~np.isfinite(xy).all(-1) & visible
    if bad.any():
        t, i = np.argwhere(bad)[0]
        raise InputProblem(422, f"tracks hold NaN or inf at {int(bad.sum())} visible entries "
                                f"(first: frame {t}, track {i})")


def check_tracks(tracks: TrackSet, settings: Settings) -> TrackSet:
    """Frame and track counts within the limits, every visible position finite."""
    _check_counts(tracks.n_frames, tracks.n_points, settings)
    _check_finite(tracks.tracks, tracks.visible)
    return tracks


EXPANSION_LIMIT = 8
"""A track .npz may unpack to at most this many times the upload limit (compressed archives can be bombs)."""


def check_track_file(path: Path, settings: Settings) -> TrackSet:
    """The upload as a checked :class:`TrackSet`; its arrays' unpacked size is checked before any is read."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        unpacked = 0  # TrackSet.load names the problem
    if unpacked > EXPANSION_LIMIT * settings.max_upload_bytes:
        raise InputProblem(413, f"the track file expands to {unpacked / 2**20:.0f} MB, over "
                                f"{EXPANSION_LIMIT * settings.max_upload_mb:g} MB")
    try:
        tracks = TrackSet.load(path)
    except ValueError as exc:
        raise InputProblem(422, f"not a usable track file: {str(exc).replace(str(path), 'upload')}") from None
    return check_tracks(tracks, settings)


def _array(value, name: str, shape: str, dtype) -> np.ndarray:
    try:
        return np.asarray(value, dtype=dtype)
    except (ValueError, TypeError):
        raise InputProblem(422, f"{name} must be a regular {shape} array (rows of different lengths?)") from None


def tracks_from_json(tracks, visible, intrinsics, image_size, settings: Settings) -> TrackSet:
    """A checked :class:`TrackSet` from JSON lists: tracks N×P×2, visible N×P, optional intrinsics 3×3 and
    image_size [W, H]."""
    xy = _array(tracks, "tracks", "N×P×2", np.float64)
    vis = _array(visible, "visible", "N×P", bool)
    if xy.ndim != 3 or xy.shape[-1] != 2:
        raise InputProblem(422, f"tracks must be N×P×2, got shape {list(xy.shape)}")
    if vis.shape != xy.shape[:2]:
        raise InputProblem(422, f"visible must be N×P = {list(xy.shape[:2])}, got shape {list(vis.shape)}")
    k = None if intrinsics is None else _array(intrinsics, "intrinsics", "3×3", np.float64)
    if k is not None and (k.shape != (3, 3) or not np.isfinite(k).all()):
        raise InputProblem(422, f"intrinsics must be a finite 3×3 matrix, got shape {list(k.shape)}")
    size = None if image_size is None else _array(image_size, "image_size", "[W, H]", np.int64)
    if size is not None and (size.shape != (2,) or (size <= 0).any()):
        raise InputProblem(422, "image_size must be [W, H] with positive entries")
    _check_counts(xy.shape[0], xy.shape[1], settings)
    _check_finite(xy, vis)
    try:
        return TrackSet(np.nan_to_num(xy).astype(np.float32), vis, k, size, source="request")
    except ValueError as exc:
        raise InputProblem(422, str(exc)) from None


def check_video(path: Path, settings: Settings, max_frames: int | None, stride: int) -> int:
    """Frames the job will reconstruct; the video must open and decode its first frame."""
    try:
        info = probe_video(path)
        read_video(path, max_frames=1, long_side=64)
    except VideoError as exc:
        raise InputProblem(422, f"undecodable video: {str(exc).replace(str(path), 'upload')}") from None
    n = -(-info.n_frames // stride)
    if max_frames is not None:
        n = min(n, max_frames)
    if n > settings.max_frames:
        raise InputProblem(413, f"too many frames: {n} > {settings.max_frames} (send max_frames or stride)")
    if n < 2:
        raise InputProblem(422, f"the video has {n} frame; need at least 2")
    return n
