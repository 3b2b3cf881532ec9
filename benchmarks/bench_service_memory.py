"""What one request costs the server in memory (issue 23): the peak resident memory (VmHWM) of ``tracks4d serve``
grown by the worst request of each kind, at the default limits (600 frames, 4,000 tracks, 200 MB bodies).

    python benchmarks/bench_service_memory.py [--rows json-max json-refused ...]

Each row starts its own server (``tests/service_server.Server`` on 127.0.0.1, so that its peak is the row's own),
waits for /readyz, reads the server process's VmHWM, sends one request (mode async; an accepted job is deleted at
once, so the worker's reconstruction is not what is measured — the worker is another process), reads VmHWM again.
Printed: the request, its body size, the answer, the peak growth in MB and as a multiple of the body. No asserts.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

FRAMES, TRACKS = 600, 4000


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _tracks(frames: int, tracks: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(0, 640, (frames, tracks, 2)).round(3), rng.uniform(size=(frames, tracks)) > 0.2


def json_max() -> dict:
    xy, vis = _tracks(FRAMES, TRACKS)
    body = json.dumps({"tracks": xy.tolist(), "visible": vis.tolist(), "mode": "async"}).encode()
    return {"content": body, "headers": {"content-type": "application/json"}}


def json_refused() -> dict:
    """The issue's body: 2.9 M one-track frames, 22 MB."""
    body = b'{"visible": [[true]], "tracks": [' + b"[[1,2]]," * 2_899_999 + b"[[1,2]]]}"
    return {"content": body, "headers": {"content-type": "application/json"}}


def npz_max() -> dict:
    xy, vis = _tracks(FRAMES, TRACKS)
    out = io.BytesIO()
    np.savez(out, tracks=xy.astype(np.float32), visible=vis)
    return {"files": {"file": ("t.npz", out.getvalue())}, "data": {"mode": "async"}}


def npz_bomb() -> dict:
    out = io.BytesIO()
    np.savez_compressed(out, tracks=np.zeros((FRAMES, TRACKS * 50, 2), np.float32), visible=np.ones((4, 1), bool))
    return {"files": {"file": ("t.npz", out.getvalue())}, "data": {"mode": "async"}}


def video_max() -> dict:
    """A 600-frame 640×480 video of noise (the largest frame count; high bitrate)."""
    from tracks4d.evaluation.degrade import encode_h264

    frames = np.random.default_rng(0).integers(0, 255, (FRAMES, 480, 640, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        data = encode_h264(frames, Path(tmp) / "v.mp4", crf=28, preset="ultrafast").read_bytes()
    return {"files": {"file": ("v.mp4", data)}, "data": {"mode": "async"}}


def body_max() -> dict:
    """An upload at the body limit (200 MB): a video header and then zeros."""
    return {"files": {"file": ("v.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(199 * 2**20))}, "data": {"mode": "async"}}


ROWS = {"json-max": ("JSON, 600 × 4,000 (the largest valid)", json_max),
        "json-refused": ("JSON, 2.9 M frames of one track (refused)", json_refused),
        "npz-max": ("track .npz, 600 × 4,000 float32", npz_max),
        "npz-bomb": ("track .npz, a zip bomb of 960 MB (refused)", npz_bomb),
        "video-max": ("video, 600 frames 640×480", video_max),
        "body-max": ("upload of 199 MB (refused: not a video)", body_max)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    args = ap.parse_args()
    from service_server import Server

    print(f"{'request':45s} {'body MB':>8s} {'status':>6s} {'s':>6s} {'peak +MB':>9s} {'× body':>7s}")
    for row in args.rows:
        title, make = ROWS[row]
        request = make()
        size = len(request["content"]) if "content" in request else \
            sum(len(f[1]) for f in request["files"].values())
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp) / "data", max_upload_mb=200, disk_cap_mb=4000)
            try:
                before = _peak_mb(server.process.pid)
                start = time.perf_counter()
                r = server.client.post("/reconstruct", **request)
                seconds = time.perf_counter() - start
                grown = _peak_mb(server.process.pid) - before
                if r.status_code == 202:
                    server.client.delete(f"/jobs/{r.json()['id']}")
            finally:
                server.stop()
        print(f"{title:45s} {size / 2**20:8.1f} {r.status_code:6d} {seconds:6.1f} {grown:9.1f} "
              f"{grown / (size / 2**20):7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
