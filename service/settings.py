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
    disk_cap_mb: float = Field(2000.0, gt=0, description="finished jobs are removed oldest first above this")
    result_ttl_s: float = Field(86_400.0, gt=0, description="finished jobs older than this are removed")
    shutdown_timeout_s: float = Field(10.0, gt=0, le=300,
                                      description="on SIGTERM the server exits within about this long: waiting "
                                                  "clients get 503, running and queued jobs are marked interrupted")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)
