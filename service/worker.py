"""The job runner: a bounded queue, one worker process that loads the model once and reconstructs job after job,
and a supervisor thread that enforces the per-job time limit (a job over it is stopped by restarting the worker).

A crash or a time-out in the worker never takes the server down; the job fails with a message saying why.
"""

from __future__ import annotations

import errno
import json
import math
import multiprocessing as mp
import os
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Callable

from .jobs import REFINE_DIR, RESULT, SUMMARY, Job, JobStore, storage_problem, write_atomic
from .settings import Settings

__all__ = ["Runner", "JobQueue", "summarize"]

READY_TIMEOUT_S = 600.0
CLEANUP_EVERY_S = 60.0
LOW_ON_SPACE = "the server's storage is full: new results cannot be written until space is freed"
FAULT_RETRY_S = 1.0  # after an exception (a storage fault) the supervisor waits this long and tries again


def _finite(value):
    """``value`` with every NaN/inf float replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def summarize(rec, job_id: str, inline_points_max: int) -> dict:
    """The JSON summary of a reconstruction: cameras, motion levels, per-frame points when small, timings."""
    n, p = rec.n_frames, rec.n_points
    meta = rec.meta
    return _finite({
        "id": job_id, "n_frames": n, "n_points": p,
        "camera_to_world": rec.camera_to_world.round(6).tolist(),
        "intrinsics": rec.intrinsics.round(4).tolist(),
        "motion_level": rec.motion_level.round(6).tolist(),
        "motion_state": None if rec.motion_state is None else rec.motion_state.tolist(),
        "points": rec.points.round(5).tolist() if n * p <= inline_points_max else None,
        "result_url": f"/jobs/{job_id}/result",
        "timings": meta.get("timings", {}),
        "bundle_adjustment": meta.get("stages", {}).get("cameras", {}).get("bundle_adjustment"),
        "verdict": meta.get("verdict", []),
    })


def refine_job(rec, clip, minutes: float, folder: Path, device: str, progress, writing=lambda: None) -> dict:
    """The Gaussian refinement of a job's video into ``folder``/refine/ on ``device``; → what its summary says.
    ``writing()`` is called when the fit ends and its outputs (videos, pictures) start to be written."""
    from tracks4d.gaussians import RefineConfig, refine_gaussians, write_refine_outputs

    if clip is None:
        raise ValueError("refine fits the video: the input has none")
    config = RefineConfig(minutes=minutes, device=device)
    result = refine_gaussians(rec, clip.decoded().frames, config, progress=False,
                              on_step=lambda step, seconds: progress(min(seconds / (60 * minutes), 1.0)))
    writing()
    paths = write_refine_outputs(folder / REFINE_DIR, result.scene, result.data, result.metrics, clip.fps or 10.0)
    m = result.metrics
    return {"held_out_psnr": m["held_out"]["psnr"], "held_out_ssim": m["held_out"]["ssim"],
            "held_out_frames": m["held_out"]["frames"], "train_psnr": m["train"]["psnr"],
            "gaussians": m["gaussians"], "steps": m["steps"], "seconds": m["seconds"]["total"],
            "files": {p.name: f"/jobs/{folder.name}/{REFINE_DIR}/{p.name}" for p in paths.values()}}


class JobQueue:
    """The ids of the jobs waiting, first in first out, at most ``size``; a job leaves it when its turn comes or when
    it is cancelled (:meth:`remove`), so its slot comes back at once and ``len`` is the jobs actually waiting."""

    def __init__(self, size: int):
        self.size = size
        self._ids: deque[str] = deque()
        self._ready = threading.Condition()

    def put(self, job_id: str) -> bool:
        """Queue a job; False when full."""
        with self._ready:
            if len(self._ids) >= self.size:
                return False
            self._ids.append(job_id)
            self._ready.notify()
            return True

    def get(self, timeout: float) -> str | None:
        """The next job's id, or None after ``timeout`` s with none."""
        with self._ready:
            if not self._ids:
                self._ready.wait(timeout)
            return self._ids.popleft() if self._ids else None

    def remove(self, job_id: str) -> bool:
        """Take a waiting job out; whether it was waiting."""
        with self._ready:
            try:
                self._ids.remove(job_id)
            except ValueError:
                return False
            return True

    def __len__(self) -> int:
        with self._ready:
            return len(self._ids)


def _public(message: str, folder: str) -> str:
    """An error message without the server's paths: the job folder's files by their own names."""
    return message.replace(folder + os.sep, "").replace(folder, "the job folder")


def _exit_with_parent(poll_s: float = 1.0) -> None:
    """End this process as soon as its parent (the server) is gone — even a SIGKILLed one, mid-job."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="tracks4d-parent-watch", daemon=True).start()


def _worker_main(conn, settings_json: str) -> None:
    """Worker process: load the network once, then run the jobs the supervisor sends until it sends None."""
    from tracks4d.network.checkpoint import default_checkpoint, default_moving_checkpoint
    from tracks4d.network.backends import load_backend
    from tracks4d.devices import resolve_device
    from tracks4d.pipeline import ReconstructOptions, moving_network, run_pipeline

    _exit_with_parent()
    settings = Settings.model_validate_json(settings_json)
    device = resolve_device(settings.device)
    checkpoint = settings.checkpoint or default_checkpoint(device)
    try:
        networks = {settings.backend: load_backend(checkpoint, settings.backend, device)}
        moving = default_moving_checkpoint()
        if moving is not None:
            moving_network(moving, device)                      # the moving-points network, loaded once
    except Exception as exc:  # noqa: BLE001 - reported to the server, which stays not-ready
        conn.send(("broken", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", {"checkpoint": str(checkpoint), "backend": settings.backend, "device": device,
                         "moving_checkpoint": None if moving is None else str(moving)}))
    while True:
        message = conn.recv()
        if message is None:
            return
        job_id, source, options, folder = message
        try:
            backend = options.get("backend") or settings.backend
            if backend not in networks:
                networks[backend] = load_backend(checkpoint, backend, device)
            options = dict(options)
            refine_minutes = options.pop("refine_minutes", None)
            share = 1.0 if refine_minutes is None else 0.2          # of the progress bar: the reconstruction's
            opts = ReconstructOptions(checkpoint=checkpoint, device=device, progress=False,
                                      **{**options, "backend": backend})
            result = run_pipeline(source, opts, networks[backend],
                                  on_progress=lambda fraction, stage: conn.send(("progress", job_id, share * fraction)))
            rec = result.reconstruction
            refined = None
            if refine_minutes is not None:
                refined = refine_job(rec, result.clip, float(refine_minutes), Path(folder), device,
                                     lambda fraction: conn.send(("progress", job_id, share + (1 - share) * fraction)),
                                     lambda: conn.send(("writing", job_id, None)))
            try:
                rec.save(Path(folder) / RESULT)
                summary = summarize(rec, job_id, settings.inline_points_max_entries)
                summary["refine"] = None if refined is None else _finite(refined)
                write_atomic(Path(folder) / SUMMARY, json.dumps(summary).encode())
            except OSError as exc:  # a full disk: no partial result stays behind to hold space
                for name in (RESULT, SUMMARY):
                    (Path(folder) / name).unlink(missing_ok=True)
                conn.send(("failed", job_id, ("storage", f"could not write the result: {storage_problem(exc)[1]}")))
                continue
            conn.send(("done", job_id, None))
        except ValueError as exc:  # bad input found while reconstructing (ContractError, VideoError, ...)
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            conn.send(("failed", job_id, ("input", _public(message, folder))))
        except Exception as exc:  # noqa: BLE001 - any other failure fails this job, not the server
            traceback.print_exc()        # the whole story in the server's log; the client gets the kind of failure
            conn.send(("failed", job_id, ("internal", f"internal error: {type(exc).__name__}")))


class Runner:
    """Queue + supervisor thread + worker process. ``on_finish(job, seconds)`` is told of every finished job."""

    def __init__(self, settings: Settings, store: JobStore, on_finish: Callable[[Job, float], None] | None = None):
        self.settings, self.store = settings, store
        self.queue = JobQueue(settings.queue_size)
        self.ready = threading.Event()
        self.model_info: dict = {}
        self.broken: str | None = None
        self.fault: str | None = None
        self._retry: str | None = None  # a job whose start could not be written: first in line
        self._busy = False  # the worker is running a job
        self._on_finish = on_finish or (lambda job, seconds: None)
        self._stop = threading.Event()
        self._cancel: set[str] = set()
        self._process = None
        self._conn = None
        self._thread = threading.Thread(target=self._loop, name="tracks4d-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop supervising within about ``timeout`` s; a worker busy with a job is killed, an idle one told to
        exit."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        self._kill_worker(graceful=not self._busy, timeout=timeout)

    def submit(self, job: Job) -> bool:
        """Queue a job; False when the queue is full."""
        return self.queue.put(job.id)

    def cancel(self, job_id: str) -> None:
        """Stop a running job (its worker restarts); a queued one leaves the queue, its slot free at once."""
        if not self.queue.remove(job_id):
            self._cancel.add(job_id)

    # -- supervisor ------------------------------------------------------------------------------------------------

    @property
    def problem(self) -> str | None:
        """Why jobs cannot run now (the model failed to load, a storage fault, the supervisor stopped), or None."""
        if self.broken:
            return f"the model failed to load: {self.broken}"
        if not self._thread.is_alive() and not self._stop.is_set():
            return f"the job supervisor stopped: {self.fault}"
        return self.fault

    def _loop(self) -> None:
        """Supervise until stopped; any exception (a full disk while writing a state) is reported through
        :attr:`problem` and retried a second later — the supervisor itself never dies of it."""
        last_cleanup = 0.0
        while not self._stop.is_set():
            try:
                if time.time() - last_cleanup > CLEANUP_EVERY_S:
                    self._cleanup()
                    last_cleanup = time.time()
                self._step()
                if self.store.flush():
                    raise OSError(errno.ENOSPC, "job states wait to be written")
                self.fault = LOW_ON_SPACE if self.store.low_on_space else None
            except Exception as exc:  # noqa: BLE001 - reported, then retried
                self.fault = storage_problem(exc)[1] if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
                self._stop.wait(FAULT_RETRY_S)

    def _step(self) -> None:
        """Start the worker when needed, then run (or, without a model, fail) the next queued job."""
        if self.broken is None and (self._process is None or not self._process.is_alive()):
            if not self._start_worker() and not self._stop.is_set():  # no model: nothing queued can run
                self.store.fail_unfinished(f"the worker could not load the model: {self.broken}")
        job_id = self._retry or self._next()
        if job_id is None:
            return
        self._retry = None
        job = self.store.get(job_id)
        if job is None or job.state != "queued" or job_id in self._cancel:
            self._cancel.discard(job_id)
            return
        if self.broken is not None:  # accepted while the model was still trying to load
            self.store.finish(job, state="failed", error=f"the worker could not load the model: {self.broken}",
                              error_kind="unavailable", finished=time.time())
            return
        try:
            self.store.update(job, state="running", started=time.time(), progress=0.1)
        except OSError:
            self._retry = job_id  # it stays queued, on disk and in the API, until the disk takes its state
            raise
        self._run(job)
        self._cleanup()

    def _next(self) -> str | None:
        return self.queue.get(timeout=0.2)

    def _run(self, job: Job) -> None:
        self._busy = True
        try:
            self._supervise(job)
        finally:
            self._busy = False

    def _supervise(self, job: Job) -> None:
        """Send ``job`` to the worker and wait for its end, its cancellation, the time limit or shutdown."""
        start = job.started
        folder = self.store.folder(job)
        self._conn.send((job.id, str(self.store.input_path(job)), job.options, str(folder)))
        # a refinement adds its own budget and half again for seeding it; writing its outputs has its own allowance
        limit = self.settings.job_timeout_s + 90 * float(job.options.get("refine_minutes") or 0)
        deadline = start + limit
        while True:
            if self._conn.poll(0.1):
                try:
                    kind, _, payload = self._conn.recv()
                except EOFError:
                    kind, payload = "failed", ("internal", "the worker process died")
                if kind == "writing":  # a refinement's outputs: their own allowance beyond the budget
                    deadline = max(deadline, time.time() + self.settings.refine_write_s)
                    continue
                if kind == "progress":  # payload: the pipeline's fraction done
                    try:
                        if round(0.1 + 0.85 * payload, 2) != job.progress:  # a write per percent at most
                            self.store.update(job, progress=round(0.1 + 0.85 * payload, 2))
                    except OSError:
                        pass  # progress is advisory; the job's end is what must be written
                    continue
                error = payload  # None when done, else (kind, message)
                break
            if job.id in self._cancel:
                self._kill_worker()
                self._cancel.discard(job.id)
                return
            if self._stop.is_set():
                return  # shutdown: the app marks the job interrupted
            if time.time() > deadline:
                self._kill_worker()
                error = ("timeout", f"stopped at the time limit of {limit:g} s")
                break
            if not self._process.is_alive():
                error = ("internal", f"the worker process died (exit code {self._process.exitcode})")
                self._process = None
                break
        if error is None:
            self.store.finish(job, state="done", progress=1.0, finished=time.time())
        else:
            kind, message = error
            self.store.finish(job, state="failed", error=message, error_kind=kind, finished=time.time())
        self._on_finish(job, time.time() - start)

    def _start_worker(self) -> bool:
        """Start the worker and wait until it has loaded the model; False when it cannot (or on shutdown)."""
        self.ready.clear()
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_worker_main, args=(child, self.settings.model_dump_json()),
                                    name="tracks4d-worker", daemon=True)
        self._process.start()
        self._conn = parent
        deadline = time.time() + READY_TIMEOUT_S
        while not self._stop.is_set() and time.time() < deadline:
            if parent.poll(0.2):
                status, info = parent.recv()
                if status == "ready":
                    self.model_info, self.broken = {**info, "worker_pid": self._process.pid}, None
                    self.ready.set()
                    return True
                self.broken = info
                return False
            if not self._process.is_alive():
                self.broken = f"the worker exited while loading the model (exit code {self._process.exitcode})"
                return False
        if not self._stop.is_set():
            self.broken = f"the worker did not load the model within {READY_TIMEOUT_S:g} s"
        return False

    def _kill_worker(self, graceful: bool = False, timeout: float = 5.0) -> None:
        self.ready.clear()
        process, self._process = self._process, None
        if process is None:
            return
        if graceful and process.is_alive() and self._conn is not None:
            try:
                self._conn.send(None)
                process.join(timeout=timeout)
            except (OSError, ValueError):
                pass
        if process.is_alive():
            process.kill()
            process.join(timeout=timeout)

    def _cleanup(self) -> None:
        self.store.cleanup(self.settings.result_ttl_s)
