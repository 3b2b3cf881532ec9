"""Jobs on disk: one folder per job (``job.json``, the input, ``reconstruction.npz``, ``summary.json``).

States are written atomically, so a restart finds every job as it was; jobs a stop interrupted (queued or running)
are marked failed, never silently dropped. Ids are 128-bit random and checked against :data:`ID_PATTERN` before any
path is built from them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["Job", "JobStore", "ID_PATTERN", "STATES"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")
STATES = ("queued", "running", "done", "failed")
FINISHED = ("done", "failed")
RESULT = "reconstruction.npz"
SUMMARY = "summary.json"


@dataclass
class Job:
    """state: queued | running | done | failed · progress in [0, 1] · error: what went wrong (failed) · error_kind:
    input | timeout | internal | interrupted · kind: tracks | video · input_name: the input's file in the job folder."""

    id: str
    kind: str
    input_name: str
    options: dict
    state: str = "queued"
    progress: float = 0.0
    error: str | None = None
    error_kind: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None

    def public(self) -> dict:
        return {"id": self.id, "state": self.state, "progress": self.progress, "error": self.error}


class JobStore:
    """Jobs under ``root/jobs``; thread-safe."""

    def __init__(self, root: str | Path):
        self.root = Path(root) / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        for path in self.root.glob("*/job.json"):
            try:
                job = Job(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # a folder whose state never got written: not a job
            self._jobs[job.id] = job

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (empty) folder, to write the input into before :meth:`create`."""
        job_id = secrets.token_urlsafe(16)
        folder = self.root / job_id
        folder.mkdir()
        return job_id, folder

    def create(self, job_id: str, kind: str, input_name: str, options: dict) -> Job:
        job = Job(job_id, kind, input_name, options)
        with self._lock:
            self._jobs[job_id] = job
            self._write(job)
        return job

    def get(self, job_id: str) -> Job | None:
        if not ID_PATTERN.match(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def update(self, job: Job, **changes) -> None:
        with self._lock:
            if job.id not in self._jobs:
                return  # deleted meanwhile
            for key, value in changes.items():
                setattr(job, key, value)
            self._write(job)

    def folder(self, job: Job) -> Path:
        return self.root / job.id

    def input_path(self, job: Job) -> Path:
        return self.root / job.id / job.input_name

    def result_path(self, job: Job) -> Path:
        return self.root / job.id / RESULT

    def summary(self, job: Job) -> dict | None:
        try:
            return json.loads((self.root / job.id / SUMMARY).read_text())
        except (OSError, ValueError):
            return None

    def delete(self, job_id: str) -> bool:
        with self._lock:
            job = self._jobs.pop(job_id, None)
        if job is not None:
            shutil.rmtree(self.root / job_id, ignore_errors=True)
        return job is not None

    def discard_folder(self, folder: Path) -> None:
        """Remove a folder made by :meth:`new_folder` whose job was never created."""
        if folder.parent == self.root:
            shutil.rmtree(folder, ignore_errors=True)

    def fail_unfinished(self, reason: str) -> list[str]:
        """Mark every queued or running job failed (``error_kind`` interrupted); their ids."""
        ids = []
        with self._lock:
            for job in self._jobs.values():
                if job.state not in FINISHED:
                    job.state, job.error, job.error_kind, job.finished = "failed", reason, "interrupted", time.time()
                    self._write(job)
                    ids.append(job.id)
        return ids

    def usage_bytes(self) -> int:
        return _size(self.root)

    def cleanup(self, cap_bytes: int, ttl_s: float, now: float | None = None) -> list[str]:
        """Remove finished jobs older than ``ttl_s``, then more finished ones, oldest first, while the folder holds
        more than ``cap_bytes``; the removed ids."""
        now = time.time() if now is None else now
        with self._lock:
            finished = sorted((j for j in self._jobs.values() if j.state in FINISHED), key=lambda j: j.finished or 0)
        removed = [j.id for j in finished if (j.finished or 0) < now - ttl_s]
        for job_id in removed:
            self.delete(job_id)
        rest = [j for j in finished if j.id not in removed]
        usage = self.usage_bytes()
        while rest and usage > cap_bytes:
            job = rest.pop(0)
            size = _size(self.root / job.id)
            self.delete(job.id)
            removed.append(job.id)
            usage -= size
        return removed

    def _write(self, job: Job) -> None:
        path = self.root / job.id / "job.json"
        tmp = path.with_name("job.json.tmp")
        tmp.write_text(json.dumps(asdict(job)))
        os.replace(tmp, path)


def _size(folder: Path) -> int:
    """Bytes of the files under ``folder``; files removed meanwhile (another request's clean-up) count 0."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(parent, name)).st_size
            except OSError:
                pass
    return total
