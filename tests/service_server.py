"""A real ``tracks4d serve`` (uvicorn) on 127.0.0.1 for the service tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "tracks4d-small.pt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``tracks4d serve`` in a subprocess with TRACKS4D_* settings ``env``; ``client`` talks to it. wait: return once
    ``/readyz`` answers 200 (else at once). log_dir: where the server's output goes (default: beside data_dir)."""

    def __init__(self, data_dir: Path, wait: bool = True, log_dir: Path | None = None, **env):
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (log_dir or data_dir.parent) / f"server-{self.port}.log"
        environ = {**os.environ, "TRACKS4D_DATA_DIR": str(data_dir), "TRACKS4D_CHECKPOINT": str(CHECKPOINT),
                   **{f"TRACKS4D_{k.upper()}": str(v) for k, v in env.items()}}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "tracks4d.cli", "serve", "--port", str(self.port),
                                             "--log-level", "warning"], env=environ, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=120)
        if wait:
            self.wait_ready()

    def wait_alive(self, timeout: float = 180) -> None:
        """Until ``/healthz`` answers (the server is up; the model may still be loading)."""
        self.wait_for(lambda: self.client.get("/healthz").status_code == 200, timeout, "alive", poll=0.02)

    def wait_ready(self, timeout: float = 180) -> None:
        """Until ``/readyz`` answers 200 (the model is loaded)."""
        self.wait_for(lambda: self.client.get("/readyz").status_code == 200, timeout, "ready")

    def wait_for(self, condition, timeout: float, what: str, poll: float = 0.2) -> None:
        """Until ``condition()`` holds (connection errors count as not yet); TimeoutError naming ``what``."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if condition():
                    return
            except httpx.TransportError:
                pass
            time.sleep(poll)
        raise TimeoutError(f"server not {what} in {timeout} s: {self.log.read_text()[-2000:]}")

    def wait_job(self, job_id: str, timeout: float = 120) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.client.get(f"/jobs/{job_id}").json()
            if status["state"] in ("done", "failed"):
                return status
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} still {status['state']} after {timeout} s")

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
