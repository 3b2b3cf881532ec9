"""The FastAPI app: ``create_app(settings)``.

POST /reconstruct (multipart ``file`` = video or track .npz, or a JSON :class:`TrackRequest`) → 200 with a
:class:`ReconstructionSummary`, or 202 with a job id; GET /jobs (the caller's), /jobs/{id}, /jobs/{id}/result,
/jobs/{id}/summary, DELETE /jobs/{id}; GET /healthz, /readyz, /metrics (Prometheus).

At the door, outermost first: counting (:class:`_Counting`), keys (:class:`_Keys`: ``Authorization: Bearer KEY``
when keys are set; a job belongs to the key that sent it), the body guard (:class:`_BodyGuard`: size, idle time,
minimum rate). Bodies are read as they stream (:mod:`.uploads`), a few at a time, against the storage cap.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import ValidationError
from starlette.routing import Match

import tracks4d

from .inputs import InputProblem, check_track_file, check_video, sniff, tracks_from_arrays
from .jobs import FINISHED, REFINE_DIR, REFINE_FILES, JobStore, RefineFile, storage_problem
from .schemas import (JobAccepted, JobList, JobStatus, Problem, ReconstructionSummary, ReconstructParams, TrackFields,
                      TrackRequest)
from .settings import Settings
from .uploads import DiskBudget, DiskFull, json_body_limit, read_json_tracks, read_multipart
from .worker import Runner

__all__ = ["create_app"]

INTERRUPTED = "interrupted: the server stopped before this job finished; send it again"
SHUTTING_DOWN = "the server is shutting down; send the request again (the job, if any, is marked interrupted)"
JOB_LINKS = {name: {"operationId": op, "parameters": {"job_id": "$response.body#/id"}}
             for name, op in (("GetJob", "get_job"), ("GetJobResult", "get_job_result"),
                              ("GetJobSummary", "get_job_summary"), ("DeleteJob", "delete_job"))}
UPLOAD_FIELDS = {"file": {"type": "string", "format": "binary", "description": "a video or a track .npz"}}
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})   # others count as "other"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class BodyTooLarge(Exception):
    """The request body passed its limit as it streamed (→ 413)."""


class SlowBody(Exception):
    """The request body stalled or came in slower than the minimum rate (→ 408)."""


class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in one process)."""

    def __init__(self, queue_depth):
        self.registry = CollectorRegistry()
        self.requests = Counter("tracks4d_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("tracks4d_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], registry=self.registry)
        self.jobs = Counter("tracks4d_jobs_finished", "finished jobs", ["state"], registry=self.registry)
        self.failures = Counter("tracks4d_job_failures", "failed jobs by cause", ["kind"], registry=self.registry)
        self.job_seconds = Histogram("tracks4d_job_duration_seconds", "job run time", ["state"],
                                     buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900), registry=self.registry)
        self.rejected = Counter("tracks4d_jobs_rejected", "jobs refused before queueing", ["reason"],
                                registry=self.registry)
        Gauge("tracks4d_queue_depth", "jobs waiting", registry=self.registry).set_function(queue_depth)


class _BodyGuard:
    """Refuses request bodies over their limit (413: ``max_bytes``, or for JSON the smaller ``json_max_bytes``) by
    Content-Length or as they stream in, and bodies that stall for ``idle_s`` or average under ``min_rate`` bytes/s
    once ``idle_s`` has passed (408)."""

    def __init__(self, app, max_bytes: int, json_max_bytes: int, idle_s: float, min_rate: float):
        self.app, self.max_bytes, self.json_max_bytes = app, max_bytes, min(json_max_bytes, max_bytes)
        self.idle_s, self.min_rate = idle_s, min_rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        is_json = headers.get(b"content-type", b"").startswith(b"application/json")
        limit = self.json_max_bytes if is_json else self.max_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = JSONResponse({"detail": _too_large(limit)}, status_code=413)
            return await response(scope, receive, send)
        seen, start, done = 0, time.monotonic(), False

        async def guarded():
            nonlocal seen, done
            if done:                                    # the body is in: what follows is the disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle_s)
            except asyncio.TimeoutError:
                raise SlowBody(f"the request body sent nothing for {self.idle_s:g} s") from None
            seen += len(message.get("body", b""))
            done = not message.get("more_body", False)
            if seen > limit:
                raise BodyTooLarge(_too_large(limit))
            elapsed = time.monotonic() - start
            if not done and elapsed > self.idle_s and seen < self.min_rate * elapsed:
                raise SlowBody(f"the request body came at {seen / elapsed / 1024:.1f} KB/s, under the minimum of "
                               f"{self.min_rate / 1024:g} KB/s")
            return message

        return await self.app(scope, guarded, send)


def _too_large(limit: int) -> str:
    return f"request body over the limit of {limit / 2**20:g} MB"


class _Keys:
    """``Authorization: Bearer KEY`` on every path but /healthz and /readyz (and /metrics, /docs when public), each
    key compared in constant time; 401 JSON without a valid one. The caller's identity (a digest of the key) goes to
    ``scope["state"]["owner"]``; with no keys configured, every caller is the same (None)."""

    def __init__(self, app, keys: frozenset[str], public: frozenset[str]):
        self.app, self.public = app, OPEN_PATHS | public
        self.keys = [(key.encode(), _owner(key)) for key in keys]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        owner = None
        if self.keys and scope["path"] not in self.public:
            owner = self._caller(dict(scope["headers"]).get(b"authorization", b""))
            if owner is None:
                response = JSONResponse({"detail": "missing or invalid API key: send Authorization: Bearer KEY"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        scope.setdefault("state", {})["owner"] = owner
        return await self.app(scope, receive, send)

    def _caller(self, header: bytes) -> str | None:
        """The owner the ``Authorization`` header's key gives, or None when it names no key of ours."""
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return None
        found = None
        for key, owner in self.keys:                    # every key compared: the time says nothing of which matched
            if hmac.compare_digest(given.strip(), key):
                found = owner
        return found


def _owner(key: str) -> str:
    """The identity a key gives its jobs (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()[:24]


class _Counting:
    """Counts every request by method, route and status, and its latency — a pure ASGI middleware, so the app still
    sees the client disconnect (``request.is_disconnected()``), and an exception that escapes is counted as the 500
    it becomes."""

    def __init__(self, app, metrics: "Metrics", routes):
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path, method = self._route(scope), scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(method, path, str(status)).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)

    def _route(self, scope) -> str:
        """The route's path template (also for a request answered before routing: a 413, a 401), else
        "unmatched"."""
        route = scope.get("route")
        if route is None:
            route = next((r for r in self.routes() if r.matches(scope)[0] != Match.NONE), None)
        return getattr(route, "path", "unmatched")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> JobStore:
    return request.app.state.store


def _runner(request: Request) -> Runner:
    return request.app.state.runner


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[JobStore, Depends(_store)]
RunnerDep = Annotated[Runner, Depends(_runner)]


def _owner_of(request: Request) -> str | None:
    return request.scope.get("state", {}).get("owner")


def _job_or_404(store: JobStore, job_id: str, request: Request):
    """The job, when it exists and belongs to the caller (another key's job is as absent as a missing one)."""
    job = store.get(job_id)
    if job is None or job.owner != _owner_of(request):
        raise HTTPException(404, "no job with this id")
    return job


def _done_job_or_409(store: JobStore, job_id: str, request: Request):
    """The caller's job (:func:`_job_or_404`) when it is done; 409 naming its state (and error) otherwise."""
    job = _job_or_404(store, job_id, request)
    if job.state != "done":
        raise HTTPException(409, f"the job is {job.state}" + (f": {job.error}" if job.error else ""))
    return job


def _summary_or_404(store: JobStore, job) -> JSONResponse:
    summary = store.summary(job)
    if summary is None:
        raise HTTPException(404, "the job's result was removed")
    return JSONResponse(summary)


async def _from_upload(request: Request, folder, settings: Settings, budget: DiskBudget, token: int
                       ) -> tuple[ReconstructParams, str, str, float]:
    """Write the multipart ``file`` into ``folder`` as it streams, under a name of ours; (params, kind, file name,
    N·P)."""
    fields, part = await read_multipart(request.stream(), request.headers["content-type"], folder, budget, token)
    if part is None:
        raise InputProblem(422, "missing the multipart field 'file' (a video or a track .npz)")
    try:
        params = ReconstructParams.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    with open(part, "rb") as fh:
        kind = sniff(fh.read(16))
    if kind is None:
        raise InputProblem(415, "unsupported file type: send a video (mp4, mov, webm, mkv, avi, mpg) or a track .npz")
    name = "input.npz" if kind == "npz" else "input" + kind
    part.rename(folder / name)
    if kind == "npz":
        tracks = await run_in_threadpool(check_track_file, folder / name, settings)
        return params, "tracks", name, tracks.n_frames * tracks.n_points
    await run_in_threadpool(check_video, folder / name, settings, params.max_frames, params.stride)
    return params, "video", name, float("inf")


async def _from_json(request: Request, folder, settings: Settings, budget: DiskBudget, token: int
                     ) -> tuple[ReconstructParams, str, str, float]:
    """Parse a JSON track request as it streams (arrays frame by frame) and store it as ``input.npz``."""
    body = await read_json_tracks(request.stream(), settings.max_frames, settings.max_tracks)
    try:
        fields = TrackFields.model_validate(body.fields)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    tracks = await run_in_threadpool(tracks_from_arrays, body.tracks, body.visible, fields.intrinsics,
                                     fields.image_size, settings)
    budget.add(token, tracks.tracks.nbytes + tracks.visible.nbytes)
    await run_in_threadpool(tracks.save, folder / "input.npz")
    params = ReconstructParams.model_validate(fields.model_dump(include=set(ReconstructParams.model_fields)))
    return params, "tracks", "input.npz", tracks.n_frames * tracks.n_points


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service, configured by ``settings`` (default: from the environment)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        store = JobStore(settings.data_dir)
        store.fail_unfinished(INTERRUPTED)
        runner = Runner(settings, store, on_finish=_finished)
        app.state.store, app.state.runner = store, runner
        runner.start()
        yield
        app.state.stopping.set()
        runner.stop(timeout=settings.shutdown_timeout_s / 2)
        store.fail_unfinished(INTERRUPTED)

    def _finished(job, seconds: float) -> None:
        metrics.jobs.labels(job.state).inc()
        metrics.job_seconds.labels(job.state).observe(seconds)
        if job.state == "failed":
            metrics.failures.labels(job.error_kind or "internal").inc()

    app = FastAPI(title="tracks4d", version=tracks4d.__version__, lifespan=lifespan,
                  description="Video or 2D point tracks → cameras and per-frame 3D points (TracksTo4D).")
    app.state.settings = settings
    app.state.stopping = threading.Event()  # set on SIGTERM (``tracks4d serve``) or at shutdown
    metrics = Metrics(lambda: len(app.state.runner.queue) if hasattr(app.state, "runner") else 0)
    app.state.metrics = metrics
    keys = settings.keys()
    public = (frozenset({"/metrics"}) if settings.public_metrics else frozenset()) | \
        (DOCS_PATHS if settings.public_docs else frozenset())
    app.add_middleware(_BodyGuard, max_bytes=settings.max_upload_bytes,
                       json_max_bytes=json_body_limit(settings.max_frames, settings.max_tracks),
                       idle_s=settings.body_idle_timeout_s, min_rate=settings.min_upload_kbps * 1024)
    app.add_middleware(_Keys, keys=keys, public=public)
    app.add_middleware(_Counting, metrics=metrics, routes=lambda: app.router.routes)
    uploads = asyncio.Semaphore(settings.max_concurrent_uploads)
    budget = DiskBudget(lambda: app.state.store.usage_bytes(), int(settings.disk_cap_mb * 2**20))

    @app.exception_handler(InputProblem)
    async def input_problem(request: Request, exc: InputProblem):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return JSONResponse({"detail": str(exc)}, status_code=413, headers={"Connection": "close"})

    @app.exception_handler(SlowBody)
    async def too_slow(request: Request, exc: SlowBody):
        return JSONResponse({"detail": str(exc)}, status_code=408, headers={"Connection": "close"})

    @app.exception_handler(DiskFull)
    async def disk_full(request: Request, exc: DiskFull):
        metrics.rejected.labels("disk_full").inc()
        return JSONResponse({"detail": f"the server's storage is full (its cap of {settings.disk_cap_mb:g} MB, "
                                       "stored results and uploads in flight); retry later"},
                            status_code=507, headers={"Retry-After": "60", "Connection": "close"})

    @app.exception_handler(OSError)
    async def storage_fault(request: Request, exc: OSError):
        status, message = storage_problem(exc)
        return JSONResponse({"detail": message}, status_code=status, headers={"Retry-After": "60"})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                 for e in exc.errors()]
        errors = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()[:20]]
        return JSONResponse({"detail": "; ".join(parts)[:2000], "errors": jsonable_encoder(errors)}, status_code=422)

    errors = {code: {"model": Problem} for code in (401, 408, 410, 413, 415, 422, 429, 503, 507)}

    @app.post("/reconstruct", response_model=ReconstructionSummary,
              operation_id="reconstruct",
              responses={200: {"links": JOB_LINKS},
                         202: {"model": JobAccepted, "description": "queued: poll status_url", "links": JOB_LINKS},
                         **errors},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                      **UPLOAD_FIELDS, **ReconstructParams.model_json_schema()["properties"]}}},
                  "application/json": {"schema": {"$ref": "#/components/schemas/TrackRequest"}}}}})
    async def reconstruct(request: Request, settings: SettingsDep, store: StoreDep, runner: RunnerDep):
        """Reconstruct a video or a track set. Small track requests (mode auto) or mode sync answer 200 with the
        summary; others 202 with a job id. 429 when the queue is full."""
        if request.app.state.stopping.is_set():
            raise HTTPException(503, SHUTTING_DOWN, headers={"Retry-After": "10"})
        if runner.broken:  # while the model loads, requests queue; only a model that cannot load refuses them
            raise HTTPException(503, f"the model failed to load: {runner.broken}")
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith(("multipart/form-data", "application/json")):
            raise InputProblem(415, "send multipart/form-data with a field 'file', or an application/json track "
                                    "request")
        if uploads.locked():
            metrics.rejected.labels("uploads_busy").inc()
            raise HTTPException(429, f"{settings.max_concurrent_uploads} uploads are in progress; retry later",
                                headers={"Retry-After": "5"})
        async with uploads:
            token = await run_in_threadpool(budget.begin)
            job_id, folder = store.new_folder()
            try:
                read = _from_upload if content_type.startswith("multipart/form-data") else _from_json
                params, kind, name, entries = await read(request, folder, settings, budget, token)
                if params.finetune_steps > settings.max_finetune_steps:
                    raise InputProblem(422, f"finetune_steps {params.finetune_steps} > {settings.max_finetune_steps}")
                if params.refine and kind != "video":
                    raise InputProblem(422, "refine fits the video: send a video (a track request has none)")
                if params.refine and params.refine_minutes > settings.max_refine_minutes:
                    raise InputProblem(422, f"refine_minutes {params.refine_minutes:g} > "
                                            f"{settings.max_refine_minutes:g}")
                job = store.create(job_id, kind, name, params.job_options(), _owner_of(request))
            except BaseException:  # a bad input, a full disk, a slow or gone client: nothing of it stays behind
                store.discard_folder(folder)
                raise
            finally:
                budget.release(token)
        if not runner.submit(job):
            store.delete(job_id)
            metrics.rejected.labels("queue_full").inc()
            raise HTTPException(429, f"the job queue is full ({settings.queue_size} waiting); retry later",
                                headers={"Retry-After": "10"})
        sync = params.mode == "sync" or (params.mode == "auto" and kind == "tracks" and params.finetune_steps == 0
                                         and not params.refine and entries <= settings.sync_max_entries)
        if not sync:
            body = JobAccepted(**job.public(), status_url=f"/jobs/{job_id}", result_url=f"/jobs/{job_id}/result")
            return JSONResponse(body.model_dump(), status_code=202, headers={"Location": f"/jobs/{job_id}"})
        waited = 0
        while job.state not in FINISHED:
            await asyncio.sleep(0.02)
            waited += 1
            if store.get(job_id) is None:
                return JSONResponse({"detail": "the job was deleted before it finished", "id": job_id},
                                    status_code=410)
            if request.app.state.stopping.is_set():  # the job is marked interrupted as the server stops
                return JSONResponse({"detail": SHUTTING_DOWN, "id": job_id}, status_code=503,
                                    headers={"Retry-After": "10"})
            if waited % 25 == 0 and await request.is_disconnected():  # nobody waits for it any more
                runner.cancel(job_id)
                store.delete(job_id)
                return Response(status_code=499)
        if job.state == "failed":
            status = {"input": 422, "timeout": 503, "interrupted": 503, "unavailable": 503}.get(job.error_kind or "",
                                                                                                   500)
            return JSONResponse({"detail": job.error, "id": job_id}, status_code=status)
        return _summary_or_404(store, job)

    @app.get("/jobs", response_model=JobList, operation_id="list_jobs", responses={422: {"model": Problem}})
    async def list_jobs(store: StoreDep, request: Request, limit: Annotated[int, Query(ge=1, le=500)] = 100,
                        offset: Annotated[int, Query(ge=0)] = 0):
        """The caller's jobs (those sent with the same key), oldest first, a page of ``limit`` from ``offset``."""
        jobs = store.owned_by(_owner_of(request))
        page = jobs[offset:offset + limit]
        return {"jobs": [job.public() for job in page], "total": len(jobs),
                "next_offset": offset + limit if offset + limit < len(jobs) else None}

    @app.get("/jobs/{job_id}", response_model=JobStatus, operation_id="get_job", responses={404: {"model": Problem}})
    async def job_status(job_id: str, store: StoreDep, request: Request):
        """State (queued, running, done, failed), progress in [0, 1] and the error of a failed job."""
        return _job_or_404(store, job_id, request).public()

    @app.get("/jobs/{job_id}/result", response_class=FileResponse, operation_id="get_job_result",
             responses={200: {"content": {"application/octet-stream": {}}, "description": "reconstruction.npz"},
                        404: {"model": Problem}, 409: {"model": Problem}})
    async def job_result(job_id: str, store: StoreDep, request: Request):
        """The ``reconstruction.npz`` (``tracks4d.Reconstruction.load``) of a finished job."""
        job = _done_job_or_409(store, job_id, request)
        return FileResponse(store.result_path(job), media_type="application/octet-stream",
                            filename="reconstruction.npz")

    @app.get("/jobs/{job_id}/refine/{name}", response_class=FileResponse, operation_id="get_job_refine_file",
             responses={200: {"content": {"application/octet-stream": {}}, "description": "a refinement file"},
                        404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}})
    async def job_refine_file(job_id: str, name: RefineFile, store: StoreDep, request: Request):
        """A file of the Gaussian refinement of a finished job that asked for it (refine=true)."""
        job = _done_job_or_409(store, job_id, request)
        path = store.folder(job) / REFINE_DIR / name
        if not path.is_file():
            raise HTTPException(404, f"job {job_id} has no refinement file {name} (was refine=true?)")
        return FileResponse(path, media_type=REFINE_FILES[name], filename=name)

    @app.get("/jobs/{job_id}/summary", response_model=ReconstructionSummary, operation_id="get_job_summary",
             responses={404: {"model": Problem}, 409: {"model": Problem}})
    async def job_summary(job_id: str, store: StoreDep, request: Request):
        """The JSON summary of a finished job (what a synchronous request returns)."""
        job = _done_job_or_409(store, job_id, request)
        return _summary_or_404(store, job)

    @app.delete("/jobs/{job_id}", status_code=204, operation_id="delete_job", responses={404: {"model": Problem}})
    async def delete_job(job_id: str, store: StoreDep, runner: RunnerDep, request: Request):
        """Forget a job and its files; a queued one leaves the queue, a running one is stopped."""
        job = _job_or_404(store, job_id, request)
        if job.state not in FINISHED:
            runner.cancel(job_id)
        store.delete(job_id)
        return Response(status_code=204)

    @app.options("/jobs/{job_id}", status_code=204, include_in_schema=False)
    async def job_options(job_id: str) -> Response:
        """The methods a job answers (one route per method would otherwise list only the first)."""
        return Response(status_code=204, headers={"Allow": "GET, DELETE, OPTIONS"})

    @app.get("/healthz")
    async def healthz() -> dict:
        """The server answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": Problem}})
    async def readyz(runner: RunnerDep):
        """200 while jobs can run: the worker has the model loaded and storage takes job states. 503 while the model
        loads (requests are queued meanwhile), when it failed to load (requests are refused) or while storage
        fails (what failed, in ``detail``)."""
        problem = runner.problem
        if problem or not runner.ready.is_set():
            return JSONResponse({"detail": problem or "the model is loading"}, status_code=503)
        return {"status": "ready", **runner.model_info}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> Response:
        """Prometheus metrics: requests and latency per route, job durations and failures, queue depth."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            track_schema = TrackRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(track_schema.pop("$defs", {}))
            components["TrackRequest"] = track_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
