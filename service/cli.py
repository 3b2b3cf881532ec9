"""``tracks4d serve``: registered with the core command line through the ``tracks4d.commands`` entry point, so the
core never imports the service."""

from __future__ import annotations

import argparse

from tracks4d.network.onnx_backend import BACKENDS


def serve(args: argparse.Namespace) -> int:
    """Run the web service (:func:`service.create_app`) with uvicorn until SIGTERM or Ctrl-C; settings from
    TRACKS4D_* variables and the flags given here. On the signal it stops accepting, answers waiting clients 503,
    marks unfinished jobs interrupted and exits within about ``shutdown_timeout_s``."""
    import uvicorn

    from . import Settings, create_app

    overrides = {k: v for k, v in (("data_dir", args.data_dir), ("checkpoint", args.checkpoint),
                                   ("device", args.device), ("backend", args.backend)) if v is not None}
    settings = Settings(**overrides)
    app = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # SIGTERM / Ctrl-C: waiting clients are told at once
            app.state.stopping.set()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout_s / 2)))
    Server(config).run()
    return 0


def register(sub) -> None:
    """Add the ``serve`` command to the ``tracks4d`` subparsers ``sub``."""
    sv = sub.add_parser("serve", help="run the HTTP service (POST /reconstruct, jobs, metrics) with uvicorn")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--data-dir", help="job and result storage (default: $TRACKS4D_DATA_DIR or ./tracks4d-data)")
    sv.add_argument("--checkpoint", help="model (default: $TRACKS4D_CHECKPOINT or the shipped one)")
    sv.add_argument("--device", help="cpu, cuda or auto (default: $TRACKS4D_DEVICE or cpu)")
    sv.add_argument("--backend", choices=BACKENDS, help="default network backend (default: $TRACKS4D_BACKEND)")
    sv.add_argument("--log-level", default="info")
    sv.set_defaults(func=serve)
