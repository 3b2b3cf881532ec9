"""Jobs on disk: one folder per job (``job.json``, the input, ``reconstruction.npz``, ``summary.json``).

States are written atomically, so a restart finds every job as it was; jobs a stop interrupted (queued or running)
are marked failed, never silently dropped. Ids are 128-bit random and checked against :data:`ID_PATTERN` before any
path is built from them.

Storage faults (a full disk, an I/O error): the store keeps a small reserve file (``RESERVE_BYTES``) and gives it up
when the disk is full, so job states can still be written — a job whose result did not fit ends "failed" on disk as
in the API. A state change that cannot be written even so is not made (:meth:`JobStore.update` raises; the API keeps
showing what the disk holds), except a job's end (:meth:`JobStore.finish`) and the start-up marking of interrupted
jobs, which take effect at once and are written by :meth:`JobStore.flush` once the disk allows (on disk they still
read "queued"/"running", which a restart reads as interrupted: the same outcome). A failed write leaves no temporary
file. :attr:`JobStore.low_on_space` says the reserve is spent.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

__all__ = ["Job", "JobStore", "ID_PATTERN", "STATES", "storage_problem", "write_atomic", "REFINE_DIR",
           "REFINE_FILES", "RefineFile"]

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")
STATES = ("queued", "running", "done", "failed")
FINISHED = ("done", "failed")
FULL = (errno.ENOSPC, errno.EDQUOT)
RESERVE_BYTES = 256 * 1024  # enough for thousands of job-state writes (each replaces the previous one)


def storage_problem(exc: OSError) -> tuple[int, str]:
    """(HTTP status, message) for a failed write: 507 when the storage is full, else 503."""
    what = os.strerror(exc.errno) if exc.errno else str(exc)
    if exc.errno in FULL:
        return 507, f"the server's storage is full ({what}); retry later"
    return 503, f"the server cannot write its storage ({what}); retry later"
RESULT = "reconstruction.npz"
SUMMARY = "summary.json"
REFINE_DIR = "refine"                  # the Gaussian refinement's files (refine=true), each served by name
REFINE_FILES = {"metrics.json": "application/json", "render_input_cameras.mp4": "video/mp4",
                "novel_fixed_camera.mp4": "video/mp4", "novel_orbit.mp4": "video/mp4",
                "contact_sheet.png": "image/png", "gaussians.ply": "application/octet-stream",
                "refined.npz": "application/octet-stream"}
RefineFile = Literal["metrics.json", "render_input_cameras.mp4", "novel_fixed_camera.mp4", "novel_orbit.mp4",
                     "contact_sheet.png", "gaussians.ply", "refined.npz"]


@dataclass
class Job:
    """state: queued | running | done | failed · progress in [0, 1] · error: what went wrong (failed) · error_kind:
    input | timeout | internal | interrupted · kind: tracks | video · input_name: the input's file in the job folder ·
    owner: who sent it (a digest of their API key; None on an open server)."""

    id: str
    kind: str
    input_name: str
    options: dict
    owner: str | None = None
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
        self._unsaved: set[str] = set()  # ids whose state in memory is not yet on disk (storage faults)
        for folder in (p for p in self.root.iterdir() if p.is_dir()):
            for tmp in folder.glob("*.tmp"):  # a write cut short (a crash, a full disk)
                tmp.unlink(missing_ok=True)
            try:
                job = Job(**json.loads((folder / "job.json").read_text()))
            except (OSError, ValueError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)  # an upload whose job was never created
                continue
            self._jobs[job.id] = job
        self._reserve = self.root.parent / ".reserve"  # beside the jobs, not counted in their usage
        self._restore_reserve()

    def new_folder(self) -> tuple[str, Path]:
        """A fresh job id and its (empty) folder, to write the input into before :meth:`create`."""
        job_id = secrets.token_urlsafe(16)
        folder = self.root / job_id
        folder.mkdir()
        return job_id, folder

    def create(self, job_id: str, kind: str, input_name: str, options: dict, owner: str | None = None) -> Job:
        """A queued job, written to disk (OSError when it cannot be: then there is no job)."""
        job = Job(job_id, kind, input_name, options, owner)
        with self._lock:
            self._write(job)
            self._jobs[job_id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        if not ID_PATTERN.match(job_id):
            return None
        with self._lock:
            return self._jobs.get(job_id)

    def owned_by(self, owner: str | None) -> list[Job]:
        """The jobs ``owner`` sent, oldest first."""
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: (j.created, j.id))

    def update(self, job: Job, **changes) -> None:
        """Change a job's state on disk, then in memory; OSError (nothing changed) when the disk refuses."""
        with self._lock:
            if job.id not in self._jobs:
                return  # deleted meanwhile
            self._write(job, changes)
            for key, value in changes.items():
                setattr(job, key, value)

    def finish(self, job: Job, **changes) -> None:
        """End a job (done or failed): at once in memory, on disk now or, when the disk refuses, at :meth:`flush`."""
        with self._lock:
            if job.id not in self._jobs:
                return
            for key, value in changes.items():
                setattr(job, key, value)
            self._save_or_defer(job)

    @property
    def low_on_space(self) -> bool:
        """The reserve is spent (the disk filled up) and could not be set aside again."""
        return not self._reserve.exists()

    def flush(self) -> int:
        """Write the states a storage fault held back, and set the reserve aside again when the disk allows; how many
        states are still unwritten."""
        with self._lock:
            self._restore_reserve()
            for job_id in list(self._unsaved):
                job = self._jobs.get(job_id)
                self._unsaved.discard(job_id)
                if job is not None:
                    self._save_or_defer(job)
            return len(self._unsaved)

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
            self._unsaved.discard(job_id)
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
                    self._save_or_defer(job)
                    ids.append(job.id)
        return ids

    def usage_bytes(self) -> int:
        return _size(self.root)

    def cleanup(self, ttl_s: float, now: float | None = None) -> list[str]:
        """Remove the finished jobs that finished more than ``ttl_s`` ago, oldest first — the retention; nothing
        else is ever removed to make room; the removed ids."""
        now = time.time() if now is None else now
        with self._lock:
            expired = sorted((j for j in self._jobs.values() if j.state in FINISHED and (j.finished or 0) < now - ttl_s),
                             key=lambda j: j.finished or 0)
        for job in expired:
            self.delete(job.id)
        return [job.id for job in expired]

    def _write(self, job: Job, changes: dict | None = None) -> None:
        """job.json through a temporary file (removed when the write fails), with ``changes`` applied; on a full
        disk once more after giving up the reserve."""
        path = self.root / job.id / "job.json"
        data = json.dumps({**asdict(job), **(changes or {})}).encode()
        try:
            write_atomic(path, data)
        except OSError as exc:
            if exc.errno not in FULL or not self._reserve.exists():
                raise
            self._reserve.unlink(missing_ok=True)
            write_atomic(path, data)

    def _restore_reserve(self) -> None:
        if not self._reserve.exists():
            try:
                write_atomic(self._reserve, bytes(RESERVE_BYTES))
            except OSError:
                pass  # still full: :attr:`low_on_space`

    def _save_or_defer(self, job: Job) -> None:
        try:
            self._write(job)
        except OSError:
            self._unsaved.add(job.id)


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` replaced by ``data`` through ``path.tmp``, which a failed write (a full disk) does not leave behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
