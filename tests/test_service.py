"""The HTTP service against a real uvicorn server on 127.0.0.1 (``tracks4d serve`` in a subprocess)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from service.jobs import JobStore
from tracks4d.contracts import Reconstruction, TrackSet

from service_server import Server
from helpers import LIMITS, json_body, npz_bytes, npz_members, shifted_clip, small_tracks, write_mp4

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"








def npy_header(shape: tuple, dtype: str) -> bytes:
    """A ``.npy`` file's magic and header announcing ``shape`` and ``dtype`` (data to be appended, or not)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": dtype, "fortran_order": False, "shape": shape})
    return out.getvalue()






def test_health_readiness_metrics_and_docs(server):
    assert server.client.get("/healthz").json() == {"status": "ok"}
    ready = server.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checkpoint"].endswith("tracks4d-small.pt")
    schema = server.client.get("/openapi.json").json()
    body = schema["paths"]["/reconstruct"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert {"/jobs/{job_id}", "/jobs/{job_id}/result", "/metrics", "/readyz"} <= set(schema["paths"])
    text = server.client.get("/metrics").text
    for name in ("tracks4d_http_requests_total", "tracks4d_http_request_duration_seconds", "tracks4d_queue_depth",
                 "tracks4d_job_duration_seconds"):
        assert name in text


def test_small_json_request_answers_with_the_reconstruction(server, tmp_path):
    tracks = small_tracks()
    r = server.client.post("/reconstruct", json=json_body(tracks, bundle_adjust=True))
    assert r.status_code == 200, r.text
    summary = r.json()
    n, p = tracks.n_frames, tracks.n_points
    assert (summary["n_frames"], summary["n_points"]) == (n, p)
    assert np.asarray(summary["camera_to_world"]).shape == (n, 4, 4)
    assert np.asarray(summary["points"]).shape == (n, p, 3) and len(summary["motion_level"]) == p
    assert len(summary["motion_state"]) == p and set(summary["motion_state"]) <= {0, 1, 2}
    assert summary["timings"]["network_s"] > 0 and summary["verdict"][0].startswith("cameras: ")
    assert summary["bundle_adjustment"] is not None or "rotation motion" in summary["verdict"][0]
    result = server.client.get(summary["result_url"])
    assert result.status_code == 200
    (tmp_path / "r.npz").write_bytes(result.content)
    rec = Reconstruction.load(tmp_path / "r.npz")
    np.testing.assert_allclose(rec.camera_to_world, summary["camera_to_world"], atol=1e-5)
    np.testing.assert_array_equal(rec.tracks, tracks.tracks)


def test_onnx_backend_per_request_matches_torch(server):
    body = {**json_body(small_tracks(8)), "refine_moving": False}  # the backends, not an optimiser's amplification of 1e-5
    torch_summary = server.client.post("/reconstruct", json={**body, "precision": "fp32"}).json()
    r = server.client.post("/reconstruct", json={**body, "backend": "onnx"})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["camera_to_world"], torch_summary["camera_to_world"], atol=1e-4)
    np.testing.assert_allclose(r.json()["points"], torch_summary["points"], atol=1e-3)


def test_track_file_upload_as_a_job(server, tmp_path):
    tracks = small_tracks(1)
    r = server.client.post("/reconstruct", files={"file": ("anything.bin", npz_bytes(tracks, tmp_path))},
                           data={"mode": "async", "fov_deg": "60"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['id']}" and job["state"] in ("queued", "running", "done")
    status = server.wait_job(job["id"])
    assert status == {"id": job["id"], "state": "done", "progress": 1.0, "error": None}
    summary = server.client.get(f"/jobs/{job['id']}/summary").json()
    assert summary["n_points"] == tracks.n_points
    assert server.client.delete(f"/jobs/{job['id']}").status_code == 204
    assert server.client.get(f"/jobs/{job['id']}").status_code == 404
    assert server.client.get(f"/jobs/{job['id']}/result").status_code == 404


def test_video_upload(server, tmp_path):
    write_mp4(tmp_path / "clip.mp4", shifted_clip(n=16, h=120, w=160))
    with open(tmp_path / "clip.mp4", "rb") as fh:
        r = server.client.post("/reconstruct", files={"file": ("clip.mp4", fh)}, data={"grid": "8"})
    assert r.status_code == 202, r.text  # videos are queued in mode auto
    assert server.wait_job(r.json()["id"])["state"] == "done"
    summary = server.client.get(f"/jobs/{r.json()['id']}/summary").json()
    assert summary["n_frames"] == 16 and summary["n_points"] > 20 and summary["timings"]["tracking_s"] > 0


def test_video_upload_with_gaussian_refinement(server, tmp_path):
    write_mp4(tmp_path / "clip.mp4", shifted_clip(n=16, h=120, w=160))
    with open(tmp_path / "clip.mp4", "rb") as fh:
        r = server.client.post("/reconstruct", files={"file": ("clip.mp4", fh)},
                               data={"grid": "8", "refine": "true", "refine_minutes": "0.05"})
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    assert server.wait_job(job)["state"] == "done"
    refine = server.client.get(f"/jobs/{job}/summary").json()["refine"]
    assert refine["held_out_frames"] == [0, 8] and refine["held_out_psnr"] > 10 and refine["steps"] > 0
    metrics = server.client.get(refine["files"]["metrics.json"])
    assert metrics.status_code == 200 and metrics.json()["held_out"]["psnr"] == pytest.approx(refine["held_out_psnr"])
    sheet = server.client.get(f"/jobs/{job}/refine/contact_sheet.png")
    assert sheet.status_code == 200 and sheet.content[:4] == b"\x89PNG"
    # only the listed names are served
    assert server.client.get(f"/jobs/{job}/refine/..%2Freconstruction.npz").status_code in (404, 422)
    assert server.client.get(f"/jobs/{job}/refine/summary.json").status_code == 422
    # a job that did not ask for it has none
    plain = server.client.post("/reconstruct", json={**json_body(small_tracks(2)), "mode": "sync"}).json()["id"]
    assert server.client.get(f"/jobs/{plain}/refine/metrics.json").status_code == 404


def test_refinement_needs_a_video_and_an_async_job(server, tmp_path):
    r = server.client.post("/reconstruct", json={**json_body(small_tracks(3)), "refine": True})
    assert r.status_code == 422 and "send a video" in r.json()["detail"]
    r = server.client.post("/reconstruct", json={**json_body(small_tracks(3)), "refine": True, "mode": "sync"})
    assert r.status_code == 422 and "async" in r.text
    write_mp4(tmp_path / "clip.mp4", shifted_clip(n=8, h=60, w=80))
    with open(tmp_path / "clip.mp4", "rb") as fh:
        r = server.client.post("/reconstruct", files={"file": ("clip.mp4", fh)},
                               data={"refine": "true", "refine_minutes": "30"})
    assert r.status_code == 422 and "refine_minutes" in r.json()["detail"]


@pytest.mark.realdata
def test_real_video_upload(server):
    clip = REAL / "cotracker_demo_videos" / "cat.mp4"
    if not clip.exists():
        pytest.skip("../shared/data/real is absent")
    with open(clip, "rb") as fh:
        r = server.client.post("/reconstruct", files={"file": ("cat.mp4", fh)},
                               data={"max_frames": "20", "grid": "10", "mode": "sync"})
    assert r.status_code == 200, r.text
    assert r.json()["n_frames"] == 20


def test_bad_inputs_get_4xx_naming_the_problem_and_the_server_stays_healthy(server, tmp_path):
    good = small_tracks(2)
    tracks = good.tracks.tolist()
    nan = json_body(good)
    nan_text = json.dumps(nan).replace(str(tracks[3][2][0]), "NaN", 1)
    too_many_frames = small_tracks(3, n_frames=130, step=40)
    too_many_tracks = TrackSet(np.random.default_rng(0).uniform(0, 100, (4, 600, 2)).astype(np.float32),
                               np.ones((4, 600), bool))
    bomb = io.BytesIO()
    np.savez_compressed(bomb, tracks=np.zeros((4, 2_500_000, 2), np.float32), visible=np.ones((4, 1), bool))
    forged = npz_members({"tracks.npy": npy_header((10**9, 4000, 2), "<f4"), "visible.npy": npy_header((1,), "|b1")})
    truncated = npz_members({"tracks.npy": npy_header((4, 10, 2), "<f4") + bytes(100),
                             "visible.npy": npy_header((4, 10), "|b1") + bytes(40)})
    budget = io.BytesIO()
    np.savez_compressed(budget, tracks=np.zeros((4, 10, 2), np.float32), visible=np.ones((4, 10), bool),
                        intrinsics=np.zeros((2_000_000, 3, 3)))
    cases = {
        "too many tracks: 2500000 > 500": (413, {"files": {"file": ("t.npz", bomb.getvalue())}}),
        "too many frames: 1000000000 > 120": (413, {"files": {"file": ("t.npz", forged)}}),
        "unpack to 137.3 MB": (413, {"files": {"file": ("t.npz", budget.getvalue())}}),
        "the array 'tracks' is truncated or corrupt": (422, {"files": {"file": ("t.npz", truncated)}}),
        "unusable multipart body: more than 40 fields": (422, {"files": {"file": ("t.npz", truncated)},
                                                           "data": {f"field{i}": "1" for i in range(50)}}),
        "over the limit": (413, {"files": {"file": ("big.npz", b"PK\x03\x04" + bytes(3 * 2**20))}}),
        "unsupported file type": (415, {"files": {"file": ("clip.mp4", b"just some text, not a video" * 20)}}),
        "undecodable video": (422, {"files": {"file": ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(4000))}}),
        "not a usable track file": (422, {"files": {"file": ("t.npz", b"PK\x03\x04" + bytes(100))}}),
        "too many frames": (413, {"files": {"file": ("t.npz", npz_bytes(too_many_frames, tmp_path))}}),
        "too many tracks": (413, {"json": {"tracks": too_many_tracks.tracks.tolist(),
                                           "visible": too_many_tracks.visible.tolist()}}),
        "not valid JSON (lexical error": (422, {"content": nan_text, "headers": {"content-type": "application/json"}}),
        "the same P tracks in every frame": (422, {"json": {"tracks": [[[1, 2], [3, 4]], [[1, 2]]],
                                                     "visible": [[True, True], [True]]}}),
        "visible must be N×P": (422, {"json": {"tracks": tracks, "visible": [[True] * 3] * 2}}),
        "tracks must hold N ≥ 2 frames": (422, {"json": {"visible": good.visible.tolist()}}),
        "missing the multipart field 'file'": (422, {"files": {"other": ("x", b"1")}}),
        "not valid JSON": (422, {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        "grid": (422, {"json": {**json_body(good), "grid": 1}}),
        "bf16 needs the torch backend": (422, {"json": {**json_body(good), "backend": "onnx", "precision": "bf16"}}),
        "send multipart/form-data": (415, {"content": b"hello", "headers": {"content-type": "text/plain"}}),
    }
    assert nan_text != json.dumps(nan)
    for needle, (status, request) in cases.items():
        r = server.client.post("/reconstruct", **request)
        assert r.status_code == status, (needle, r.status_code, r.text)
        assert needle in r.json()["detail"], (needle, r.json())
    assert server.client.get("/jobs/not-an-id").status_code == 404
    assert server.client.get("/jobs/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert server.client.delete("/jobs/AAAAAAAAAAAAAAAAAAAAAA").status_code == 404
    assert server.client.get("/healthz").status_code == 200
    assert server.client.post("/reconstruct", json=json_body(good)).status_code == 200


def test_deleting_the_job_of_a_waiting_request_answers_410(server):
    slow = json_body(small_tracks(9, n_frames=50, step=2), finetune_steps=200, mode="sync")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(server.client.post, "/reconstruct", json=slow)
        deadline, running = time.time() + 60, None
        while running is None and time.time() < deadline:
            states = [json.loads(p.read_text()) for p in (server.data_dir / "jobs").glob("*/job.json")]
            running = next((j["id"] for j in states if j["state"] == "running"), None)
            time.sleep(0.1)
        assert server.client.delete(f"/jobs/{running}").status_code == 204
        r = waiting.result(timeout=30)
    assert r.status_code == 410 and "deleted" in r.json()["detail"]
    assert server.client.post("/reconstruct", json=json_body(small_tracks(2))).status_code == 200


def test_twenty_concurrent_requests_succeed_or_get_429(server):
    """Half ask to wait (sync), half to queue (async): each gets 200/202 or 429; every accepted job finishes."""
    bodies = [json_body(small_tracks(10 + i % 4, step=4), mode="sync" if i % 2 else "async") for i in range(20)]

    def post(body):
        return server.client.post("/reconstruct", json=body)

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, bodies))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 202, 429}, [(r.status_code, r.text[:200]) for r in responses]
    assert 429 in codes and (200 in codes or 202 in codes)
    for r in responses:
        if r.status_code == 429:
            detail = r.json()["detail"]
            assert ("queue is full" in detail or "uploads are in progress" in detail) and r.headers["retry-after"]
        if r.status_code == 202:
            assert server.wait_job(r.json()["id"])["state"] == "done"
        if r.status_code == 200:
            assert r.json()["n_frames"] == 20
    assert 'route="/reconstruct",status="429"' in server.client.get("/metrics").text


def test_restart_keeps_results_and_fails_interrupted_jobs(tmp_path):
    data = tmp_path / "data"
    srv = Server(data, **LIMITS)
    try:
        done = srv.client.post("/reconstruct", json=json_body(small_tracks(4), mode="async")).json()["id"]
        assert srv.wait_job(done)["state"] == "done"
        long = small_tracks(5, n_frames=50, step=2)
        slow = srv.client.post("/reconstruct", json=json_body(long, finetune_steps=200, mode="async")).json()["id"]
        deadline = time.time() + 60
        while srv.client.get(f"/jobs/{slow}").json()["state"] != "running" and time.time() < deadline:
            time.sleep(0.1)
    finally:
        srv.stop()
    srv = Server(data, **LIMITS)
    try:
        assert srv.client.get(f"/jobs/{done}").json()["state"] == "done"
        assert srv.client.get(f"/jobs/{done}/result").status_code == 200
        status = srv.client.get(f"/jobs/{slow}").json()
        assert status["state"] == "failed" and "interrupted" in status["error"]
        assert srv.client.get(f"/jobs/{slow}/result").status_code == 409
    finally:
        srv.stop()


def test_requests_while_the_model_loads_are_queued_not_refused(tmp_path):
    """Sent the moment /healthz answers: a sync request waits for the model and answers 200, an async one is
    accepted (202) and finishes; /readyz says "loading" until the model is in (never a 503 on /reconstruct)."""
    srv = Server(tmp_path / "data", wait=False, **LIMITS)
    try:
        srv.wait_alive()
        ready = srv.client.get("/readyz")
        assert ready.status_code == 200 or "the model is loading" in ready.json()["detail"]
        with ThreadPoolExecutor(2) as pool:
            sync = pool.submit(srv.client.post, "/reconstruct", json=json_body(small_tracks(1), mode="sync"))
            queued = pool.submit(srv.client.post, "/reconstruct", json=json_body(small_tracks(2), mode="async"))
            sync, queued = sync.result(timeout=300), queued.result(timeout=300)
        assert sync.status_code == 200, sync.text
        assert queued.status_code == 202, queued.text
        assert srv.wait_job(queued.json()["id"], timeout=300)["state"] == "done"
        assert srv.client.get("/readyz").status_code == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("which", ["checkpoint", "moving_checkpoint"])
def test_a_model_that_cannot_load_is_reported_not_retried(tmp_path, which):
    """A broken checkpoint (the first network's or the moving-points network's): /readyz and /reconstruct answer 503
    naming the reason (no "retry shortly"); the server stays alive (/healthz 200)."""
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint" * 10)
    srv = Server(tmp_path / "data", wait=False, **{which: broken}, **LIMITS)
    try:
        srv.wait_for(lambda: "failed to load" in srv.client.get("/readyz").text, 300, "broken")
        ready = srv.client.get("/readyz")
        assert ready.status_code == 503 and "broken.pt" in ready.json()["detail"]
        r = srv.client.post("/reconstruct", json=json_body(small_tracks(3)))
        assert r.status_code == 503 and "the model failed to load" in r.json()["detail"], r.text
        assert "retry" not in r.json()["detail"] and "retry-after" not in r.headers
        assert srv.client.get("/healthz").status_code == 200
    finally:
        srv.stop()


def test_a_job_over_the_time_limit_fails_and_the_next_one_runs(tmp_path):
    # 200 fine-tuning steps take far longer than 10 s; the small request after it fits in 10 s on a busy machine
    srv = Server(tmp_path / "data", job_timeout_s=10, **LIMITS)
    try:
        slow = srv.client.post("/reconstruct", json=json_body(small_tracks(6, n_frames=50, step=2),
                                                              finetune_steps=200, mode="async")).json()["id"]
        status = srv.wait_job(slow, timeout=60)
        assert status["state"] == "failed" and "time limit of 10 s" in status["error"]
        srv.wait_ready(120)
        assert srv.client.post("/reconstruct", json=json_body(small_tracks(7))).status_code == 200
        assert 'tracks4d_job_failures_total{kind="timeout"} 1.0' in srv.client.get("/metrics").text
    finally:
        srv.stop()


def test_schemathesis_finds_no_server_error(server, tmp_path):
    """Property-based requests from the OpenAPI schema (all phases, bounded): no 5xx, and every reply's status,
    content type, headers and body are the documented ones."""
    st = shutil.which("st", path=str(Path(sys.executable).parent))
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
              "response_headers_conformance")
    result = subprocess.run([st, "run", f"{server.url}/openapi.json", "--checks", checks,
                             "-n", "25", "--seed", "7", "--request-timeout", "60", "--max-failures", "5"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout
    assert server.client.get("/healthz").status_code == 200


def test_retention_removes_only_expired_finished_jobs_oldest_first(tmp_path):
    store = JobStore(tmp_path)
    ids = []
    for i in range(4):
        job_id, folder = store.new_folder()
        (folder / "input.npz").write_bytes(bytes(100_000))
        job = store.create(job_id, "tracks", "input.npz", {})
        store.update(job, state="done" if i != 2 else "running", finished=1000.0 + i)
        ids.append(job_id)
    assert store.cleanup(ttl_s=1e9, now=2000.0) == []               # nothing expired: nothing removed, however full
    assert store.cleanup(ttl_s=998.5, now=2000.0) == [ids[0], ids[1]]   # expired, oldest first
    assert store.cleanup(ttl_s=0.0, now=2000.0) == [ids[3]]         # the running one is never removed
    assert JobStore(tmp_path).get(ids[2]).state == "running"  # states survive a reload
    assert store.get("../../etc") is None
