"""The service under faults, against real servers (``tracks4d serve`` subprocesses): a full disk, SIGTERM with a
client waiting, a SIGKILLed server's worker, a client that gives up, videos that would cost too much, and small
wrongs. No test depends on how fast the machine is: they wait on /readyz, on job states or on process exits, with
generous limits."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import socket
import subprocess
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.app import Metrics, _Counting

from service_server import Server
from helpers import LIMITS, json_body, npz_bytes, running_job, slow_body, small_tracks, wait_until





def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False




def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


# -- a full disk --------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (root only; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(mount: Path) -> None:
    """Fill the disk to the last byte."""
    with open(mount / "filler", "ab") as fh:
        try:
            while True:
                fh.write(bytes(1 << 16))
                fh.flush()
        except OSError:
            pass
    try:
        with open(mount / "filler2", "ab", buffering=0) as fh:  # the last partial block
            while True:
                fh.write(b"\0" * 512)
    except OSError:
        pass


def unfill(mount: Path) -> None:
    for name in ("filler", "filler2"):
        (mount / name).unlink(missing_ok=True)


def test_a_full_disk_answers_507_leaves_nothing_behind_and_recovers_without_restart(small_disk, tmp_path):
    data = small_disk / "data"
    srv = Server(data, log_dir=tmp_path, **LIMITS)
    try:
        # uploads onto a full disk: 507 naming the problem; no job, folder or temporary file stays
        fill(small_disk)
        upload = srv.client.post("/reconstruct", files={"file": ("t.npz", npz_bytes(small_tracks(1), tmp_path))})
        sync = srv.client.post("/reconstruct", json=json_body(small_tracks(2)))
        for r in (upload, sync):
            assert r.status_code == 507 and "storage is full" in r.json()["detail"], r.text
            assert "No space left on device" in r.json()["detail"] and r.headers["retry-after"]
        assert list((data / "jobs").iterdir()) == [] and tmp_files(data) == []
        assert srv.client.get("/healthz").status_code == 200
        unfill(small_disk)
        assert srv.client.post("/reconstruct", json=json_body(small_tracks(3))).status_code == 200

        # the disk fills while a job runs: it fails naming the storage, no partial result stays, and the API and
        # the job's state on disk agree
        slow = srv.client.post("/reconstruct", json=slow_body(4, steps=10, mode="async")).json()["id"]
        assert running_job(data) == slow
        fill(small_disk)
        status = srv.wait_job(slow, timeout=300)
        assert status["state"] == "failed" and "could not write the result" in status["error"], status
        assert "storage is full" in status["error"]
        wait_until(lambda: json.loads((data / "jobs" / slow / "job.json").read_text())["state"] == "failed", 60,
                   "the failed state never reached the disk")
        assert not (data / "jobs" / slow / "reconstruction.npz").exists() and tmp_files(data) == []

        # space freed: jobs run again, no restart
        unfill(small_disk)
        assert srv.client.post("/reconstruct", json=json_body(small_tracks(5))).status_code == 200
        srv.wait_ready(120)
    finally:
        srv.stop()

    # start-up on a full disk works, and the jobs are as they were
    fill(small_disk)
    srv = Server(data, log_dir=tmp_path, **LIMITS)
    try:
        assert srv.client.get(f"/jobs/{slow}").json()["state"] == "failed"
        r = srv.client.post("/reconstruct", json=json_body(small_tracks(6)))
        assert r.status_code == 507, r.text
        unfill(small_disk)
        assert srv.client.post("/reconstruct", json=json_body(small_tracks(6))).status_code == 200
    finally:
        srv.stop()


# -- shutdown and processes ---------------------------------------------------------------------------------------


def test_sigterm_answers_the_waiting_client_marks_the_job_interrupted_and_exits(tmp_path):
    data = tmp_path / "data"
    srv = Server(data, shutdown_timeout_s=4, **LIMITS)
    worker = srv.client.get("/readyz").json()["worker_pid"]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(srv.client.post, "/reconstruct", json=slow_body(7, mode="sync"))
        job = running_job(data)
        start = time.time()
        srv.process.send_signal(signal.SIGTERM)
        r = waiting.result(timeout=120)
        srv.process.wait(timeout=120)
    seconds = time.time() - start
    assert r.status_code == 503 and "shutting down" in r.json()["detail"] and r.headers["retry-after"], r.text
    assert seconds < 4 + 20, seconds  # the setting, plus slack for a busy machine (it hung 346 s before)
    wait_until(lambda: not alive(worker), 60, "the worker outlived the server")
    srv = Server(data, **LIMITS)
    try:
        status = srv.client.get(f"/jobs/{job}").json()
        assert status["state"] == "failed" and "interrupted" in status["error"]
    finally:
        srv.stop()


def test_the_worker_of_a_killed_server_exits(tmp_path):
    data = tmp_path / "data"
    srv = Server(data, **LIMITS)
    worker = srv.client.get("/readyz").json()["worker_pid"]
    srv.client.post("/reconstruct", json=slow_body(8, mode="async"))
    running_job(data)
    srv.process.kill()
    srv.process.wait(timeout=60)
    wait_until(lambda: not alive(worker), 60, "the worker runs on after its server was killed")


def test_a_client_that_gives_up_stops_its_job(tmp_path):
    data = tmp_path / "data"
    srv = Server(data, **LIMITS)
    try:
        body = json.dumps(slow_body(9, mode="sync")).encode()
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(b"POST /reconstruct HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            job = running_job(data)
        # the connection is closed: the job is stopped and forgotten
        wait_until(lambda: srv.client.get(f"/jobs/{job}").status_code == 404, 60, "the abandoned job ran on")
        assert srv.client.post("/reconstruct", json=json_body(small_tracks(10))).status_code == 200
    finally:
        srv.stop()


def test_counting_sees_exceptions_and_keeps_disconnects_visible():
    """The counting middleware counts an exception as the 500 it becomes (it was not counted), and passes the
    client's disconnect through (``request.is_disconnected()`` never turned true behind the old one)."""
    seen = {}

    async def boom(request):
        raise RuntimeError("bug")

    async def disconnected(request):
        seen["disconnected"] = await request.is_disconnected()
        return PlainTextResponse("ok")

    metrics = Metrics(lambda: 0)
    inner = Starlette(routes=[Route("/boom", boom), Route("/gone", disconnected)])
    app = _Counting(inner, metrics, lambda: inner.router.routes)

    async def run(path: str, messages: list) -> list:
        sent = []

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [], "root_path": "", "scheme": "http", "server": ("t", 80), "client": ("c", 1),
                 "http_version": "1.1"}
        try:
            await app(scope, receive, send)
        except RuntimeError:
            pass
        return sent

    asyncio.run(run("/boom", [{"type": "http.request", "body": b""}]))
    counted = metrics.registry.get_sample_value("tracks4d_http_requests_total",
                                                {"method": "GET", "route": "/boom", "status": "500"})
    assert counted == 1.0
    asyncio.run(run("/gone", []))
    assert seen["disconnected"] is True


# -- what one request may cost, and small wrongs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("faults") / "data", **LIMITS)
    yield srv
    srv.stop()


def write_video(path: Path, n: int, container: str, codec: str, size=(64, 48)) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size[1] * 2, size[0] * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for t in range(n):
            frame = np.ascontiguousarray(base[t % size[1]:t % size[1] + size[1], t % size[0]:t % size[0] + size[0]])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_members_the_contract_does_not_name_are_never_unpacked(server):
    """A valid track file carrying a 200 MB member of zeros (200 kB packed): accepted and reconstructed, the member
    never unpacked (it was refused before as an 8× expansion, after unpacking every member)."""
    tracks = small_tracks(14)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in (("tracks", tracks.tracks), ("visible", tracks.visible),
                            ("intrinsics", np.asarray(tracks.intrinsics))):
            member = io.BytesIO()
            np.save(member, array)
            archive.writestr(f"{name}.npy", member.getvalue())
        with archive.open("junk.npy", "w", force_zip64=True) as junk:
            chunk = bytes(1 << 20)
            for _ in range(200):
                junk.write(chunk)
    assert len(out.getvalue()) < 2 * 2**20
    r = server.client.post("/reconstruct", files={"file": ("t.npz", out.getvalue())}, data={"mode": "sync"})
    assert r.status_code == 200 and r.json()["n_points"] == tracks.n_points, r.text


def test_a_video_without_a_frame_count_is_counted_only_up_to_the_limit(server, tmp_path):
    clip = tmp_path / "long.mkv"
    write_video(clip, 400, "matroska", "mpeg4")
    with av.open(str(clip)) as probe:
        assert not probe.streams.video[0].frames  # matroska stores no frame count
    r = server.client.post("/reconstruct", files={"file": ("clip.mkv", clip.read_bytes())})
    assert r.status_code == 413 and "too many frames: 121 > 120" in r.json()["detail"], r.text
    r = server.client.post("/reconstruct", files={"file": ("clip.mkv", clip.read_bytes())},
                           data={"max_frames": "30", "grid": "6"})
    assert r.status_code == 202, r.text


def test_an_mpeg_program_stream_is_reconstructed(server, tmp_path):
    clip = tmp_path / "clip.mpg"
    write_video(clip, 30, "mpeg", "mpeg1video", size=(160, 120))
    r = server.client.post("/reconstruct", files={"file": ("clip.mpg", clip.read_bytes())}, data={"grid": "6"})
    assert r.status_code == 202, r.text
    status = server.wait_job(r.json()["id"], timeout=300)
    assert status["state"] == "done", status


def test_small_wrongs(server):
    r = server.client.post("/reconstruct", json=json_body(small_tracks(11), fx=1e-300, image_size=[640, 480]))
    detail = r.json()["detail"]
    assert r.status_code == 422 and "fx 1e-300 px gives a 180° field of view" in detail and "--" not in detail, r.text
    job = server.client.post("/reconstruct", json=json_body(small_tracks(12), mode="async")).json()["id"]
    options = server.client.options(f"/jobs/{job}")
    assert options.status_code == 204 and {"GET", "DELETE"} <= set(options.headers["allow"].replace(" ", "").split(","))
    server.wait_job(job)


def test_progress_moves_through_fine_tuning(server):
    job = server.client.post("/reconstruct", json=slow_body(13, steps=10, mode="async")).json()["id"]
    values = set()
    deadline = time.time() + 300
    while time.time() < deadline:
        status = server.client.get(f"/jobs/{job}").json()
        if status["state"] in ("done", "failed"):
            break
        values.add(status["progress"])
        time.sleep(0.05)
    assert status["state"] == "done", status
    during = sorted(v for v in values if 0.36 < v < 0.78)  # between "tracked" and "network done"
    assert len(during) >= 2, sorted(values)
