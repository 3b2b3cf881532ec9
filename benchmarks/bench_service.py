"""HTTP service throughput and latency: ``tracks4d serve`` with the torch backend against the onnx backend.

    python benchmarks/bench_service.py [--requests 40] [--concurrency 4] [--frames 50] [--sizes 200 400]
                                       [--backends torch onnx] [--ready-timeout 180] [--request-timeout 120]
                                       [--invalid-share 0.5] [--seed 0] [--checkpoint model.pt] [--keep-logs]

For each backend the server is started as a subprocess (``tracks4d serve --host 127.0.0.1 --port FREE --backend B
--data-dir TMP``, queue size ``TRACKS4D_QUEUE_SIZE`` big enough for the concurrency) on a free loopback port with
its own temporary data dir; the benchmark waits (bounded by ``--ready-timeout``) for ``GET /readyz`` to answer 200
(the onnx backend exports the checkpoint to ``~/.cache/tracks4d/onnx`` on its first load, ~30 s). Then, for every
track count P of ``--sizes`` (default: 200):

- the request body is built once: synthetic tracks of ``training.synthetic.generate_scene(seed,
  SceneConfig(n_frames=N))`` (the first seed from ``--seed`` on whose scene has at least P tracks), a seeded random
  subset of P tracks, its visible flags and 3×3 intrinsics, ``"mode": "sync"`` (the server answers 200 with the
  summary once the job is done);
- 2 warm-up requests are sent one after another (not timed);
- ``--requests`` requests are sent by ``--concurrency`` client threads (one ``httpx.Client`` each, a per-request
  timeout, each thread takes requests from a shared counter, so the loops are bounded), recording every request's
  latency and status. A 200 counts as ok when its summary has ``n_points == P`` and ``n_frames == N``. With
  ``--invalid-share F``, that share of the requests (spread evenly) are invalid — visible of the wrong shape, a NaN
  position, no tracks, grid 1 in turn — and count as rejected when answered 4xx (anything else is an error).

The server then gets SIGTERM (SIGKILL to its process group if it has not exited after 30 s) and its data dir is
removed. Printed: a table (backend, P, requests, ok, 429s, errors (anything else: other statuses, time-outs,
connection errors, malformed summaries), requests/s = ok / wall time of the timed phase, p50 and p95 latency of the
ok requests in ms) and the onnx/torch throughput ratio per P. Traffic goes to 127.0.0.1 only. No asserts; exit
status 1 when a server failed to start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

HOST = "127.0.0.1"
WARMUP = 2


@dataclass
class Result:
    """One backend × size: per-request (latency s, status: int HTTP status, or 'timeout' / 'error' / 'bad')."""

    backend: str
    n_points: int
    records: list[tuple[float, int | str]] = field(default_factory=list)
    wall_s: float = 0.0
    failure: str | None = None  # the server never became ready (or died): why

    @property
    def ok(self) -> list[float]:
        return [t for t, s in self.records if s == 200]

    @property
    def n_429(self) -> int:
        return sum(1 for _, s in self.records if s == 429)

    @property
    def n_rejected(self) -> int:
        return sum(1 for _, s in self.records if s == "rejected")

    @property
    def n_errors(self) -> int:
        return sum(1 for _, s in self.records if s not in (200, 429, "rejected"))

    @property
    def throughput(self) -> float:
        return len(self.ok) / self.wall_s if self.wall_s > 0 else float("nan")

    def percentile_ms(self, q: float) -> float:
        ok = self.ok
        return float(np.percentile(ok, q)) * 1000 if ok else float("nan")


# -- request body ----------------------------------------------------------------------------------------------------

def build_body(n_frames: int, n_points: int, seed: int, max_tries: int = 20) -> bytes:
    """JSON bytes of a sync track request: P tracks of the first synthetic scene (seed, seed+1, ...) that has ≥ P."""
    from training.synthetic import SceneConfig, generate_scene

    for s in range(seed, seed + max_tries):
        scene = generate_scene(s, SceneConfig(n_frames=n_frames))
        tracks = scene.tracks
        if tracks.n_points >= n_points:
            break
    else:
        raise SystemExit(f"no synthetic scene among seeds {seed}..{seed + max_tries - 1} has {n_points} tracks "
                         f"(last had {tracks.n_points}); ask for fewer")
    keep = np.sort(np.random.default_rng(s).choice(tracks.n_points, n_points, replace=False))
    xy = np.nan_to_num(np.asarray(tracks.tracks, np.float64)[:, keep], nan=0.0, posinf=0.0, neginf=0.0)
    visible = np.asarray(tracks.visible, bool)[:, keep]
    k = np.asarray(tracks.intrinsics, np.float64)
    k = k[0] if k.ndim == 3 else k
    body = {"tracks": xy.round(3).tolist(), "visible": visible.tolist(), "intrinsics": k.tolist(), "mode": "sync"}
    if tracks.image_size is not None:
        body["image_size"] = [int(v) for v in tracks.image_size]
    return json.dumps(body, allow_nan=False).encode()


def invalid_bodies(body: bytes) -> list[bytes]:
    """Variants of a valid request that the server must refuse with a 4xx naming the problem."""
    valid = json.loads(body)
    nan = json.dumps({**valid, "tracks": [[[float("nan"), 1.0]] + row[1:] for row in valid["tracks"]]})
    return [json.dumps({**valid, "visible": valid["visible"][:-1]}).encode(), nan.encode(),
            json.dumps({k: v for k, v in valid.items() if k != "tracks"}).encode(),
            json.dumps({**valid, "grid": 1}).encode()]


# -- server ----------------------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tracks4d_command() -> list[str]:
    """The ``tracks4d`` entry point next to this Python, else on PATH, else ``python -c`` on its main."""
    here = Path(sys.executable).parent / "tracks4d"
    if here.is_file():
        return [str(here)]
    found = shutil.which("tracks4d")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from tracks4d.cli import main; sys.exit(main())"]


class Server:
    """``tracks4d serve`` in its own process group, with a temporary data dir and a log file."""

    def __init__(self, backend: str, queue_size: int, checkpoint: str | None):
        self.backend = backend
        self.port = free_port()
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"tracks4d-bench-{backend}-"))
        self.log_path = self.data_dir / "server.log"
        env = dict(os.environ, TRACKS4D_QUEUE_SIZE=str(queue_size))
        cmd = tracks4d_command() + ["serve", "--host", HOST, "--port", str(self.port), "--backend", backend,
                                    "--data-dir", str(self.data_dir / "data"), "--log-level", "warning"]
        if checkpoint:
            cmd += ["--checkpoint", checkpoint]
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        self.url = f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout_s: float) -> tuple[float, str | None]:
        """(seconds until /readyz answered 200, None) or (seconds, why not)."""
        start = time.perf_counter()
        deadline = start + timeout_s
        last = "no answer"
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while time.perf_counter() < deadline:
                if self.process.poll() is not None:
                    return time.perf_counter() - start, f"server exited with code {self.process.returncode}"
                try:
                    r = client.get("/readyz")
                    if r.status_code == 200:
                        return time.perf_counter() - start, None
                    last = f"{r.status_code} {r.text[:200]}"
                    if "failed to load" in r.text:
                        return time.perf_counter() - start, last
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}"
                time.sleep(0.5)
        return time.perf_counter() - start, f"not ready after {timeout_s:g} s (last /readyz: {last})"

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM, wait, SIGKILL the process group (the server and its worker) if needed; remove the data dir."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace_s)
                except subprocess.TimeoutExpired:
                    print(f"  [{self.backend}] server did not stop in {grace_s:g} s after SIGTERM; killing it",
                          file=sys.stderr)
            try:  # the server's group: itself (if still there) and its worker process (if orphaned)
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._log.close()
            shutil.rmtree(self.data_dir, ignore_errors=True)


# -- load ------------------------------------------------------------------------------------------------------------

def one_request(client: httpx.Client, body: bytes, n_frames: int, n_points: int,
                invalid: bool = False) -> tuple[float, int | str]:
    start = time.perf_counter()
    try:
        r = client.post("/reconstruct", content=body, headers={"content-type": "application/json"})
        status: int | str = r.status_code
        if invalid:
            status = "rejected" if 400 <= r.status_code < 500 and r.status_code != 429 and r.json().get(
                "detail") else status
        elif status == 200:
            try:
                summary = r.json()
                if summary.get("n_points") != n_points or summary.get("n_frames") != n_frames:
                    status = "bad"
            except (ValueError, AttributeError):
                status = "bad"
    except httpx.TimeoutException:
        status = "timeout"
    except httpx.HTTPError:
        status = "error"
    return time.perf_counter() - start, status


def run_load(url: str, body: bytes, n_frames: int, n_points: int, requests: int, concurrency: int,
             timeout_s: float, invalid_share: float = 0.0) -> tuple[list[tuple[float, int | str]], float]:
    """``requests`` requests from ``concurrency`` threads, ``invalid_share`` of them invalid; (records, wall s)."""
    bad = invalid_bodies(body)
    records: list[tuple[float, int | str]] = []
    lock = threading.Lock()
    taken = [0]

    def client_thread() -> None:
        with httpx.Client(base_url=url, timeout=timeout_s) as client:
            for _ in range(requests):  # bounded: never more iterations than requests in all
                with lock:
                    if taken[0] >= requests:
                        return
                    i = taken[0]
                    taken[0] += 1
                invalid = int((i + 1) * invalid_share) > int(i * invalid_share)
                record = one_request(client, bad[i % len(bad)] if invalid else body, n_frames, n_points, invalid)
                with lock:
                    records.append(record)

    threads = [threading.Thread(target=client_thread, name=f"client-{i}", daemon=True) for i in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s * requests + 60)
    return records, time.perf_counter() - start


def bench_backend(backend: str, bodies: dict[int, bytes], args) -> list[Result]:
    queue_size = max(8, 2 * args.concurrency + WARMUP)
    server = Server(backend, queue_size, args.checkpoint)
    results = []
    try:
        ready_s, why = server.wait_ready(args.ready_timeout)
        if why is not None:
            print(f"[{backend}] server not ready: {why}\n--- server log (tail) ---\n{server.log_tail()}",
                  file=sys.stderr)
            return [Result(backend, p, failure=why) for p in bodies]
        print(f"[{backend}] ready in {ready_s:.1f} s on port {server.port} (queue size {queue_size})", flush=True)
        for p, body in bodies.items():
            with httpx.Client(base_url=server.url, timeout=args.request_timeout) as client:
                warm = [one_request(client, body, args.frames, p) for _ in range(WARMUP)]
            print(f"[{backend}] P={p}: warm-up " + ", ".join(f"{s} in {t * 1000:.0f} ms" for t, s in warm),
                  flush=True)
            records, wall = run_load(server.url, body, args.frames, p, args.requests, args.concurrency,
                                     args.request_timeout, args.invalid_share)
            results.append(Result(backend, p, records, wall))
            if any(s not in (200, 429, "rejected") for _, s in records):
                print(f"[{backend}] P={p}: statuses "
                      f"{sorted({str(s) for _, s in records})}\n--- server log (tail) ---\n{server.log_tail(15)}",
                      file=sys.stderr)
            if server.process.poll() is not None:
                why = f"server exited with code {server.process.returncode}"
                print(f"[{backend}] {why}\n{server.log_tail()}", file=sys.stderr)
                results += [Result(backend, q, failure=why) for q in bodies if q not in {r.n_points for r in results}]
                break
        if args.keep_logs:
            print(f"--- [{backend}] server log ---\n{server.log_tail(200)}")
    finally:
        server.stop()
    return results


def print_table(results: list[Result], args) -> None:
    print(f"\nN={args.frames} frames, concurrency {args.concurrency}, {args.requests} requests per row, "
          f"mode sync, {os.cpu_count()} CPUs")
    header = (f"{'backend':<8s} {'P':>5s} {'requests':>8s} {'ok':>4s} {'429s':>5s} {'4xx':>5s} {'errors':>6s} "
              f"{'requests/s':>10s} {'p50 ms':>8s} {'p95 ms':>8s}")
    print(header)
    print("-" * len(header))
    for r in results:
        if r.failure:
            print(f"{r.backend:<8s} {r.n_points:>5d}  failed: {r.failure}")
            continue
        print(f"{r.backend:<8s} {r.n_points:>5d} {len(r.records):>8d} {len(r.ok):>4d} {r.n_429:>5d} "
              f"{r.n_rejected:>5d} {r.n_errors:>6d} {r.throughput:>10.2f} {r.percentile_ms(50):>8.0f} {r.percentile_ms(95):>8.0f}")
    by = {(r.backend, r.n_points): r for r in results if not r.failure}
    for p in args.sizes:
        torch_r, onnx_r = by.get(("torch", p)), by.get(("onnx", p))
        if torch_r and onnx_r and torch_r.throughput > 0:
            print(f"onnx/torch throughput ratio (P={p}): {onnx_r.throughput / torch_r.throughput:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=40, help="timed requests per backend and size")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads")
    ap.add_argument("--frames", type=int, default=50, help="N frames of the synthetic scene")
    ap.add_argument("--sizes", type=int, nargs="+", default=[200], help="track counts P to try")
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=("torch", "onnx"))
    ap.add_argument("--invalid-share", type=float, default=0.0, help="share of invalid requests (expect 4xx)")
    ap.add_argument("--seed", type=int, default=0, help="first synthetic scene seed")
    ap.add_argument("--checkpoint", help="model checkpoint for the server (default: its own default)")
    ap.add_argument("--ready-timeout", type=float, default=180.0, help="seconds to wait for /readyz")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    ap.add_argument("--keep-logs", action="store_true", help="print the server logs")
    args = ap.parse_args()
    if args.requests < 1 or args.concurrency < 1 or any(p < 1 for p in args.sizes):
        ap.error("--requests, --concurrency and --sizes must be positive")

    t = time.perf_counter()
    bodies = {p: build_body(args.frames, p, args.seed) for p in dict.fromkeys(args.sizes)}
    print("bodies: " + ", ".join(f"P={p} {len(b) / 1024:.0f} KiB" for p, b in bodies.items())
          + f" (built in {time.perf_counter() - t:.1f} s)", flush=True)
    results: list[Result] = []
    for backend in args.backends:
        results += bench_backend(backend, bodies, args)
    print_table(results, args)
    return 1 if any(r.failure for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
