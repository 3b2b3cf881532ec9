"""Service settings, read from the environment (prefix ``TRACKS4D_``, e.g. ``TRACKS4D_QUEUE_SIZE=8``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Limits and places. ``checkpoint`` None: the shipped one for ``device``."""

    model_config = SettingsConfigDict(env_prefix="TRACKS4D_", extra="ignore")

    data_dir: Path = Field(Path("tracks4d-data"), description="job inputs, states and results")
    checkpoint: Path | None = Field(None, description="model file (.pt, or .onnx with backend onnx)")
    device: str = Field("cpu", description="cpu, cuda or auto")
    backend: Literal["torch", "onnx"] = Field("torch", description="default network backend")
    max_upload_mb: float = Field(200.0, gt=0, description="largest request body")
    max_frames: int = Field(600, ge=2, description="most frames a request may reconstruct")
    max_tracks: int = Field(4000, ge=1, description="most tracks a request may hold")
    max_finetune_steps: int = Field(200, ge=0)
    max_refine_minutes: float = Field(15.0, gt=0, description="longest Gaussian refinement a request may ask for "
                                                              "(its job's time limit grows by that much)")
    queue_size: int = Field(8, ge=1, description="jobs waiting beyond this get 429")
    job_timeout_s: float = Field(900.0, gt=0, description="a job running longer fails")
    sync_max_entries: int = Field(50_000, ge=0,
                                  description="mode=auto answers a track request (N·P ≤ this, no fine-tuning) at once")
    inline_points_max_entries: int = Field(20_000, ge=0,
                                           description="summaries carry per-frame points up to N·P of this")
    disk_cap_mb: float = Field(2000.0, gt=0, description="uploads are refused (507) as soon as the stored jobs and "
                                                         "the uploads in flight would pass this; nothing stored is "
                                                         "removed to make room")
    result_ttl_s: float = Field(86_400.0, gt=0, description="retention: a finished job is removed this long after "
                                                            "it finished (oldest first), and only then")
    api_keys: str | None = Field(None, description="comma-separated API keys (Authorization: Bearer KEY); none: "
                                                   "the server is open and listens on loopback only")
    api_keys_file: Path | None = Field(None, description="a file of API keys, one a line (# comments)")
    public_metrics: bool = Field(False, description="/metrics without a key (when keys are set)")
    public_docs: bool = Field(False, description="/docs, /redoc and /openapi.json without a key (when keys are set)")
    max_concurrent_uploads: int = Field(4, ge=1, description="request bodies read at once; more get 429")
    max_connections: int = Field(64, ge=1, description="open connections; more get 503 (uvicorn)")
    header_timeout_s: float = Field(10.0, gt=0, description="a request's headers must arrive within this")
    body_idle_timeout_s: float = Field(20.0, gt=0, description="a body that sends nothing this long gets 408")
    min_upload_kbps: float = Field(32.0, ge=0, description="a body slower than this on average (after its first "
                                                           "body_idle_timeout_s) gets 408")
    refine_write_s: float = Field(240.0, gt=0, description="time a refinement's outputs may take to write, beyond "
                                                           "its budget (measured: about 60 s at 256 px on 2 cores)")
    shutdown_timeout_s: float = Field(10.0, gt=0, le=300,
                                      description="on SIGTERM the server exits within about this long: waiting "
                                                  "clients get 503, running and queued jobs are marked interrupted")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def keys(self) -> frozenset[str]:
        """The API keys from ``api_keys`` and ``api_keys_file`` (an unreadable file raises: the server must not
        start open by mistake)."""
        keys = [k.strip() for k in (self.api_keys or "").split(",")]
        if self.api_keys_file is not None:
            keys += [line.strip() for line in self.api_keys_file.read_text().splitlines()
                     if not line.lstrip().startswith("#")]
        return frozenset(k for k in keys if k)
