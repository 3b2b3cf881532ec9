"""Pictures of tracks for a person to judge: tracks drawn on the frames with short trails, as an mp4 and a PNG
contact sheet."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

__all__ = ["draw_tracks", "drawn_frames", "save_video", "save_contact_sheet", "track_colours"]


def track_colours(n_tracks: int, values: np.ndarray | None = None) -> np.ndarray:
    """(P, 3) uint8 RGB: a rainbow over track order, or over ``values`` (P,) from purple (low, e.g. static γ) to red
    (high), stretched between their 2nd and 98th percentiles."""
    v = np.linspace(0, 1, n_tracks) if values is None else np.asarray(values, dtype=np.float64)
    if values is not None and n_tracks:
        lo, hi = np.percentile(v, [2, 98])
        v = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    hsv = np.stack(((1 - v) * 150, np.full_like(v, 255), np.full_like(v, 255)), -1).astype(np.uint8)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def draw_tracks(frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray, colours: np.ndarray | None = None,
                trail: int = 8) -> np.ndarray:
    """frames: (N, H, W, 3) uint8 RGB · tracks: (N, P, 2) in the frames' pixels · visible: (N, P) →
    (N, H, W, 3) with a dot at every visible point and a line through its last ``trail`` visible positions."""
    return np.stack(list(drawn_frames(frames, tracks, visible, colours, trail)))


def drawn_frames(frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray, colours: np.ndarray | None = None,
                 trail: int = 8) -> Iterator[np.ndarray]:
    """:func:`draw_tracks`' frames one at a time, (H, W, 3) each (a long clip's drawing is never held whole)."""
    colours = track_colours(tracks.shape[1]) if colours is None else colours
    radius = max(2, round(max(frames.shape[1:3]) / 250))
    for t, img in enumerate(frames):
        canvas = np.ascontiguousarray(img.copy())
        lo = max(0, t - trail)
        for p in np.flatnonzero(visible[t]):
            col = tuple(int(c) for c in colours[p])
            seg = tracks[lo : t + 1, p][visible[lo : t + 1, p]]
            if len(seg) > 1:
                cv2.polylines(canvas, [np.round(seg).astype(np.int32)], False, col, 1, cv2.LINE_AA)
            cv2.circle(canvas, tuple(int(v) for v in np.round(tracks[t, p])), radius, col, -1, cv2.LINE_AA)
        yield canvas


def save_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write frames ((N, H, W, 3) uint8 RGB, or an iterable of (H, W, 3)) as an H.264 (or MPEG-4) mp4, one frame at
    a time; odd sizes are padded to even."""
    import av

    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with av.open(str(tmp), "w") as out:
        stream = None
        for f in frames:
            h, w = f.shape[:2]
            if stream is None:
                stream = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                        rate=round(fps) or 10)
                stream.width, stream.height, stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            even = np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if (h % 2 or w % 2) else f
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(even), format="rgb24")):
                out.mux(packet)
        if stream is None:
            raise ValueError("save_video: no frames")
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def save_contact_sheet(frames: np.ndarray, path: str | Path, count: int = 6, columns: int = 3,
                       labels: list[str] | None = None) -> Path:
    """A PNG grid of ``count`` evenly spaced frames (N, H, W, 3), each labelled with its frame index."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    tiles = []
    for k, i in enumerate(idx):
        tile = np.ascontiguousarray(frames[i].copy())
        text = labels[k] if labels else f"frame {i}"
        cv2.putText(tile, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(tile, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r : r + columns], axis=1) for r in range(0, len(tiles), columns)]
    path = Path(path)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    return path
