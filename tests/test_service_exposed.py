"""The service probed as an attacker and a careless client would (issue 23), against real servers on loopback: what a
body may cost in memory, results that room is never made from, queue slots that come back, bounded metrics, keys
at the door, bad numbers, slow clients, consistent refusals. No test depends on the machine's speed: time limits
are seconds where the behaviour tested is immediate or a fixed timeout of 1–2 s."""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from service_server import Server, free_port
from helpers import LIMITS, json_body, npz_bytes, running_job, slow_body, small_tracks, wait_until


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def queue_depth(server: Server) -> float:
    line = next(l for l in server.client.get("/metrics").text.splitlines() if l.startswith("tracks4d_queue_depth "))
    return float(line.split()[1])


def padded_npz(tracks, tmp_path: Path, megabytes: float) -> bytes:
    """A track .npz of ``tracks`` with a member the service never unpacks, to weigh ``megabytes`` on disk."""
    out = io.BytesIO()
    junk = np.random.default_rng(0).integers(0, 255, int(megabytes * 2**20), dtype=np.uint8)
    np.savez(out, tracks=tracks.tracks, visible=tracks.visible, intrinsics=tracks.intrinsics, padding=junk)
    return out.getvalue()


# 1. memory bounded before parsing ------------------------------------------------------------------------------


def test_a_json_body_beyond_the_limits_costs_no_memory(tmp_path):
    """The issue's 22 MB body (2.9 M one-track frames), under the default 200 MB body limit, sent chunked: refused
    (413) at the first frame past the limit; the server's peak memory grows by megabytes, not the 1.1 GB it took
    when the body was parsed whole."""
    server = Server(tmp_path / "data", **{**LIMITS, "max_upload_mb": 200})
    try:
        _refused_without_memory(server)
    finally:
        server.stop()


def _refused_without_memory(server: Server) -> None:
    before = peak_rss_mb(server.process.pid)
    frames = 2_900_000

    def body():
        yield b'{"visible": [[true]], "tracks": ['
        chunk = b"[[1,2]]," * 100_000
        for _ in range(frames // 100_000):
            yield chunk
        yield b"[[1,2]]]}"

    r = server.client.post("/reconstruct", content=body(), headers={"content-type": "application/json"})
    grown = peak_rss_mb(server.process.pid) - before
    assert grown < 60, f"the server's peak memory grew by {grown:.0f} MB ({r.status_code})"
    assert r.status_code == 413, r.text
    assert "too many frames" in r.json()["detail"]
    r = server.client.post("/reconstruct", json=json_body(small_tracks(1), mode="sync"))
    assert r.status_code == 200, r.text


# 2. never lose a finished result to make room -------------------------------------------------------------------


def test_uploads_past_the_disk_cap_are_refused_as_they_stream_and_no_result_is_removed(tmp_path):
    srv = Server(tmp_path / "data", **{**LIMITS, "disk_cap_mb": 3, "max_concurrent_uploads": 8})
    try:
        first = srv.client.post("/reconstruct", json=json_body(small_tracks(1), mode="sync"))
        assert first.status_code == 200, first.text
        upload = padded_npz(small_tracks(2), tmp_path, 0.9)

        def post(i):
            return srv.client.post("/reconstruct", files={"file": (f"t{i}.npz", upload)}, data={"mode": "async"})

        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(post, range(6)))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) <= {202, 507} and 202 in codes and 507 in codes, codes
        for r in responses:
            if r.status_code == 507:
                assert "storage is full" in r.json()["detail"]
            else:
                assert srv.wait_job(r.json()["id"])["state"] == "done"
        # the first result and every accepted one are still there; a refused upload left nothing behind
        assert srv.client.get(f"/jobs/{first.json()['id']}/summary").status_code == 200
        folders = [p for p in (tmp_path / "data" / "jobs").iterdir() if p.is_dir()]
        assert len(folders) == 1 + codes.count(202)
        assert not list((tmp_path / "data" / "jobs").rglob("upload.part"))
        # uploads one after another: accepted while there is room, then refused; nothing stored is removed
        accepted = [r.json()["id"] for r in responses if r.status_code == 202] + [first.json()["id"]]
        for _ in range(6):
            r = srv.client.post("/reconstruct", files={"file": ("t.npz", upload)}, data={"mode": "async"})
            if r.status_code == 507:
                break
            assert r.status_code == 202 and srv.wait_job(r.json()["id"])["state"] == "done"
            accepted.append(r.json()["id"])
        assert r.status_code == 507
        assert all(srv.client.get(f"/jobs/{job}/summary").status_code == 200 for job in accepted)
    finally:
        srv.stop()


# 3. queue slots follow the jobs ---------------------------------------------------------------------------------


def test_deleted_queued_jobs_and_gone_sync_clients_give_their_slots_back(tmp_path):
    srv = Server(tmp_path / "data", **{**LIMITS, "queue_size": 2})
    try:
        busy = srv.client.post("/reconstruct", json=slow_body(1, mode="async")).json()["id"]
        assert running_job(tmp_path / "data") == busy
        queued = [srv.client.post("/reconstruct", json=json_body(small_tracks(i), mode="async")) for i in range(2)]
        assert [r.status_code for r in queued] == [202, 202]
        assert srv.client.post("/reconstruct", json=json_body(small_tracks(3), mode="async")).status_code == 429
        for r in queued:
            assert srv.client.delete(f"/jobs/{r.json()['id']}").status_code == 204
        assert queue_depth(srv) == 0
        again = srv.client.post("/reconstruct", json=json_body(small_tracks(4), mode="async"))
        assert again.status_code == 202 and queue_depth(srv) == 1
        # a sync client that gives up while its job waits frees its slot too
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{srv.url}/reconstruct", json=json_body(small_tracks(5), mode="sync"), timeout=1.0)
        wait_until(lambda: queue_depth(srv) == 1, 30, "the gone client's slot never came back")
        assert srv.client.post("/reconstruct", json=json_body(small_tracks(6), mode="async")).status_code == 202
        srv.client.delete(f"/jobs/{busy}")
    finally:
        srv.stop()


# 4. bounded metrics ---------------------------------------------------------------------------------------------


def test_made_up_methods_and_paths_do_not_grow_the_metrics(server):
    before = len(server.client.get("/metrics").text)
    for i in range(60):
        server.client.request(f"X{i:02d}" + "Y" * 3000, "/reconstruct")
        server.client.get(f"/no/such/path/{i}")
    text = server.client.get("/metrics").text
    assert len(text) - before < 8_000
    assert 'method="other",route="/reconstruct",status="405"' in text
    assert 'route="unmatched",status="404"' in text


# 5. keys at the door --------------------------------------------------------------------------------------------


def test_keys_at_the_door_and_jobs_are_their_senders(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# one key a line\nbeta-key-0123456789\n")
    srv = Server(tmp_path / "data", **{**LIMITS, "api_keys": "alpha-key-0123456789", "api_keys_file": keys})
    try:
        alpha, beta = ({"Authorization": f"Bearer {k}"} for k in ("alpha-key-0123456789", "beta-key-0123456789"))
        body = json_body(small_tracks(1), mode="sync")
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "alpha-key-0123456789"}):
            r = srv.client.post("/reconstruct", json=body, headers=headers)
            assert r.status_code == 401 and "API key" in r.json()["detail"] and r.headers["www-authenticate"]
        assert srv.client.get("/healthz").status_code == 200 and srv.client.get("/readyz").status_code == 200
        assert srv.client.get("/metrics").status_code == 401 and srv.client.get("/docs").status_code == 401
        assert srv.client.get("/metrics", headers=alpha).status_code == 200
        done = srv.client.post("/reconstruct", json=body, headers=alpha)
        assert done.status_code == 200, done.text
        job = done.json()["id"]
        assert srv.client.get(f"/jobs/{job}/summary", headers=alpha).status_code == 200
        assert srv.client.get(f"/jobs/{job}", headers=beta).status_code == 404           # another key's job
        assert srv.client.delete(f"/jobs/{job}", headers=beta).status_code == 404
        listed = srv.client.get("/jobs", headers=alpha).json()
        assert [j["id"] for j in listed["jobs"]] == [job] and listed["total"] == 1
        assert srv.client.get("/jobs", headers=beta).json()["jobs"] == []
        assert 'status="401"' in srv.client.get("/metrics", headers=alpha).text
    finally:
        srv.stop()


def test_an_open_server_refuses_to_listen_beyond_loopback(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tracks4d.cli", "serve", "--host", "0.0.0.0", "--port",
                          str(free_port()), "--data-dir", str(tmp_path / "data")],
                         capture_output=True, text=True, timeout=120, env={**_env(), "TRACKS4D_API_KEYS": ""})
    assert out.returncode == 2
    assert "refusing to listen on 0.0.0.0 without API keys" in out.stderr


def _env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRACKS4D_")}


# 6. every bad number a 4xx --------------------------------------------------------------------------------------


def test_numbers_that_do_not_fit_get_422(server, tmp_path):
    good = json_body(small_tracks(1), mode="sync")
    for size in ([18446744073709551616, 1], [2**62, 2**62], [0, 480]):
        r = server.client.post("/reconstruct", json={**good, "image_size": size})
        assert r.status_code == 422 and ("image_size" in r.text or "integer overflow" in r.text), (size, r.text)
    tracks = dataclasses.replace(small_tracks(1), image_size=np.array([2**62, 2**62]))
    r = server.client.post("/reconstruct", files={"file": ("t.npz", npz_bytes(tracks, tmp_path))})
    assert r.status_code == 422 and "image_size" in r.json()["detail"]
    upload = {"file": ("t.npz", npz_bytes(small_tracks(1), tmp_path))}
    for field, value in (("max_frames", 2**70), ("grid", 2**70), ("fx", "1e400"), ("fx", "1e300"), ("cx", 2**64),
                         ("finetune_steps", 2**64), ("stride", -(2**70))):
        r = server.client.post("/reconstruct", files=upload, data={field: str(value)})
        assert r.status_code == 422 and field in r.json()["detail"], (field, r.status_code, r.text)
    assert server.client.get("/healthz").status_code == 200


def test_a_video_corrupt_after_its_first_frame_fails_without_the_servers_paths(server, tmp_path):
    import av

    path = tmp_path / "v.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:   # the index first: it still probes
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for frame in np.random.default_rng(0).integers(0, 255, (40, 96, 128, 3), dtype=np.uint8):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = bytearray(path.read_bytes())
    start, end = int(len(data) * 0.3), int(len(data) * 0.6)
    data[start:end] = np.random.default_rng(1).integers(0, 255, end - start, dtype=np.uint8).tobytes()
    r = server.client.post("/reconstruct", files={"file": ("v.mp4", bytes(data))}, data={"mode": "async"})
    assert r.status_code == 202, r.text                      # its first frame decodes: accepted
    status = server.wait_job(r.json()["id"])
    assert status["state"] == "failed" and "cannot decode video" in status["error"], status
    assert str(server.data_dir) not in status["error"] and "/jobs/" not in status["error"], status


# 7. slow clients bounded ----------------------------------------------------------------------------------------


SLOW = {**LIMITS, "header_timeout_s": 1.5, "body_idle_timeout_s": 1.5, "min_upload_kbps": 64,
        "max_concurrent_uploads": 1}


def test_slow_clients_are_cut_off_and_leave_nothing_behind(tmp_path):
    srv = Server(tmp_path / "data", **SLOW)
    try:
        # headers that never end: the connection is closed
        with socket.create_connection(("127.0.0.1", srv.port), timeout=20) as sock:
            sock.sendall(b"POST /reconstruct HTTP/1.1\r\nHost: x\r\n")
            start = time.time()
            assert sock.recv(1000) == b"" and time.time() - start < 15
        # a body that stalls, and one that trickles: 408
        head = (b"POST /reconstruct HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n")
        for trickle in (False, True):          # nothing more, or a byte every 0.2 s
            with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
                sock.sendall(head + b'{"tracks": [')
                sock.settimeout(0.2 if trickle else 30)
                reply = b""
                for _ in range(150):
                    try:
                        reply = sock.recv(4000)
                        break
                    except TimeoutError:
                        sock.sendall(b" ")
                assert reply.startswith(b"HTTP/1.1 408"), (trickle, reply[:200])
        wait_until(lambda: not [p for p in (tmp_path / "data" / "jobs").iterdir()], 10, "job folders left behind")
        # while an upload holds the only slot, the next one is told at once
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(head + b'{"tracks": [')
            time.sleep(0.3)
            r = srv.client.post("/reconstruct", json=json_body(small_tracks(1), mode="sync"))
            assert r.status_code == 429 and "uploads are in progress" in r.json()["detail"]
        assert srv.client.get("/healthz").status_code == 200
    finally:
        srv.stop()


# 8. consistent answers ------------------------------------------------------------------------------------------


def test_every_over_limit_body_is_413_counted_under_its_route(server):
    def chunked():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.npz\"\r\n\r\nPK\x03\x04"
        for _ in range(40):
            yield bytes(100_000)
        yield b"\r\n--b--\r\n"

    r = server.client.post("/reconstruct", content=chunked(),
                           headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"], r.text
    r = server.client.post("/reconstruct", files={"file": ("big.npz", b"PK\x03\x04" + bytes(3 * 2**20))})
    assert r.status_code == 413
    text = server.client.get("/metrics").text
    counted = [line for line in text.splitlines() if line.startswith("tracks4d_http_requests_total")
               and 'route="/reconstruct"' in line and 'status="413"' in line]
    assert counted and sum(float(line.split()[-1]) for line in counted) >= 2


def test_one_oversized_frame_or_member_is_refused_as_it_streams(server):
    """A single frame holding far more tracks than allowed, sent as one 12 MB frame, is refused at the first track
    past the limit (not after the frame is built); an oversized other member and misshapen nesting get 4xx too."""
    def frame():
        yield b'{"visible": [[true]], "tracks": [['
        for _ in range(200):
            yield b"[1,2]," * 10_000
        yield b"[1,2]]]}"

    before = peak_rss_mb(server.process.pid)
    r = server.client.post("/reconstruct", content=frame(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "too many tracks" in r.json()["detail"], r.text
    assert peak_rss_mb(server.process.pid) - before < 60
    for body, status, needle in ((b'{"intrinsics": [' + b"1," * 5000 + b'1]}', 413, "'intrinsics' is too large"),
                                 (b'{"tracks": [[[[[1]]]]], "visible": [[true]]}', 422, "nested too deep"),
                                 (b'[1, 2]', 422, "must be a JSON object")):
        r = server.client.post("/reconstruct", content=body, headers={"content-type": "application/json"})
        assert r.status_code == status and needle in r.json()["detail"], r.text
