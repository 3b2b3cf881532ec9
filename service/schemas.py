"""Request and response models of the service (they are its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ReconstructParams", "TrackFields", "TrackRequest", "JobStatus", "JobAccepted", "JobList",
           "ReconstructionSummary", "Problem", "MAX_IMAGE_SIDE"]

MAX_IMAGE_SIDE = 32_768   # pixels: larger image sizes are refused (no camera makes them; OpenCV's limits are near)


class ReconstructParams(BaseModel):
    """Options of one reconstruction (multipart form fields, or JSON body fields next to the tracks).

    Intrinsics are in input pixels: fx (fy, cx, cy optional) or fov_deg (horizontal); none: estimated.
    max_frames / stride apply to videos. mode: auto answers small track requests at once and queues the rest
    (202 + job id); sync always waits for the result; async always queues."""

    model_config = ConfigDict(extra="forbid")

    bundle_adjust: bool = False
    finetune_steps: int = Field(0, ge=0, le=10_000)
    fx: float | None = Field(None, gt=0, lt=1e7, allow_inf_nan=False)
    fy: float | None = Field(None, gt=0, lt=1e7, allow_inf_nan=False)
    cx: float | None = Field(None, ge=0, le=MAX_IMAGE_SIDE, allow_inf_nan=False)
    cy: float | None = Field(None, ge=0, le=MAX_IMAGE_SIDE, allow_inf_nan=False)
    fov_deg: float | None = Field(None, gt=1, lt=179)
    grid: int = Field(15, ge=2, le=64, description="tracker grid (videos)")
    max_frames: int | None = Field(None, ge=2, le=1_000_000, description="decode at most this many frames (videos)")
    stride: int = Field(1, ge=1, le=100, description="keep every stride-th frame (videos)")
    backend: Literal["torch", "onnx"] | None = Field(None, description="network backend; None: the server's")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="the torch network's precision; auto: bf16 where the device has native bf16, else fp32")
    refine_moving: bool = Field(True, description="per-clip refinement of the moving points' trajectories")
    refine: bool = Field(False, description="then fit a dynamic Gaussian scene to the video (videos only, async "
                                            "jobs): its files under /jobs/{id}/refine/{name}")
    refine_minutes: float = Field(5.0, gt=0, le=60, description="time budget of that fit")
    mode: Literal["auto", "sync", "async"] = "auto"

    @model_validator(mode="after")
    def _intrinsics_complete(self) -> "ReconstructParams":
        if self.fx is None and self.fov_deg is None and any(v is not None for v in (self.fy, self.cx, self.cy)):
            raise ValueError("give fx (with optional fy, cx, cy) or fov_deg")
        if self.refine and self.mode == "sync":
            raise ValueError("refine runs as an async job: use mode async (or auto)")
        if self.backend == "onnx" and self.precision == "bf16":
            raise ValueError("precision bf16 needs the torch backend; ONNX Runtime runs the graph in fp32")
        return self

    def pipeline_options(self) -> dict:
        """The :class:`tracks4d.pipeline.ReconstructOptions` fields these set."""
        return self.model_dump(exclude={"mode", "refine", "refine_minutes"}
                               | ({"backend"} if self.backend is None else set()))

    def job_options(self) -> dict:
        """What the worker is sent: the pipeline's options, and ``refine_minutes`` when the job refines."""
        return {**self.pipeline_options(), **({"refine_minutes": self.refine_minutes} if self.refine else {})}


XY = Annotated[list[float], Field(min_length=2, max_length=2)]


class TrackFields(ReconstructParams):
    """The members of a JSON track request besides its two arrays (read as the body streams in, frame by frame)."""

    intrinsics: Annotated[list[Annotated[list[Annotated[float, Field(allow_inf_nan=False)]],
                                         Field(min_length=3, max_length=3)]],
                          Field(min_length=3, max_length=3)] | None = Field(None, description="3×3 pixel K")
    image_size: Annotated[list[Annotated[int, Field(gt=0, le=MAX_IMAGE_SIDE)]], Field(min_length=2, max_length=2)] \
        | None = Field(None, description="[W, H]")


class TrackRequest(TrackFields):
    """2D tracks as JSON: tracks N×P×2 pixels (any finite value where not visible), visible N×P (N ≥ 2 frames,
    P ≥ 1 tracks, the same P in every frame)."""

    tracks: Annotated[list[Annotated[list[XY], Field(min_length=1)]], Field(min_length=2)]
    visible: Annotated[list[Annotated[list[bool], Field(min_length=1)]], Field(min_length=2)]


class JobStatus(BaseModel):
    id: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float
    error: str | None = None


class JobList(BaseModel):
    """The caller's jobs, oldest first: ``limit`` of them from ``offset``; ``next_offset`` None on the last page."""

    jobs: list[JobStatus]
    total: int
    next_offset: int | None


class JobAccepted(JobStatus):
    status_url: str
    result_url: str


class ReconstructionSummary(BaseModel):
    """Cameras (N×4×4 camera-to-world, N×3×3 pixel K), motion levels (P), motion states (P: 0 static, 1 moving,
    2 unreliable), per-frame points (N×P×3, null when large: fetch ``result_url``), timings in seconds, the bundle
    adjustment report."""

    id: str
    n_frames: int
    n_points: int
    camera_to_world: list[list[list[float]]]
    intrinsics: list[list[list[float]]]
    motion_level: list[float]
    motion_state: list[int] | None = Field(None, description="per track: 0 static, 1 moving, 2 unreliable (fails "
                                                             "the static fit alone: usually a lost track)")
    points: list[list[list[float]]] | None
    result_url: str
    timings: dict[str, float | None]
    bundle_adjustment: dict | None = None
    verdict: list[str] = []
    refine: dict | None = Field(None, description="the Gaussian refinement (refine=true): held-out PSNR / SSIM, "
                                                  "Gaussians, seconds and the URLs of its files")


class Problem(BaseModel):
    """An error: what was wrong."""

    detail: str
