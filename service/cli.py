"""``tracks4d serve``: registered with the core command line through the ``tracks4d.commands`` entry point, so the
core never imports the service."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from tracks4d.network.backends import BACKENDS


def loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _timed_headers(timeout_s: float):
    """uvicorn's h11 protocol with a deadline on each request's headers: a connection that has not sent a whole
    request head ``timeout_s`` after it opened (or after its last response) is closed."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedHeaders(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            self._waiting_for = self.cycle                  # a new cycle means the next request's head arrived
            self._head_timer = self.loop.call_later(timeout_s, self._late)

        def _late(self) -> None:
            if not self.transport.is_closing() and self.cycle is self._waiting_for:
                self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not self._waiting_for and self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            super().connection_lost(exc)

    return TimedHeaders


def serve(args: argparse.Namespace) -> int:
    """Run the web service (:func:`service.create_app`) with uvicorn until SIGTERM or Ctrl-C; settings from
    TRACKS4D_* variables and the flags given here. On the signal it stops accepting, answers waiting clients 503,
    marks unfinished jobs interrupted and exits within about ``shutdown_timeout_s``. Without API keys it listens on
    loopback only (exit 2 otherwise)."""
    import uvicorn

    from . import Settings, create_app

    overrides = {k: v for k, v in (("data_dir", args.data_dir), ("checkpoint", args.checkpoint),
                                   ("device", args.device), ("backend", args.backend)) if v is not None}
    settings = Settings(**overrides)
    try:
        keys = settings.keys()
    except OSError as exc:
        print(f"tracks4d serve: cannot read the API keys file: {exc}", file=sys.stderr)
        return 2
    if not keys and not loopback(args.host):
        print(f"tracks4d serve: refusing to listen on {args.host} without API keys: set TRACKS4D_API_KEYS or "
              "TRACKS4D_API_KEYS_FILE, or listen on 127.0.0.1 (see docs/deployment.md)", file=sys.stderr)
        return 2
    print(f"tracks4d serve: {len(keys)} API key(s): requests need Authorization: Bearer KEY" if keys else
          f"tracks4d serve: no API key configured: open to anyone who reaches {args.host}:{args.port} (loopback "
          "only)", file=sys.stderr, flush=True)
    app = create_app(settings)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # SIGTERM / Ctrl-C: waiting clients are told at once
            app.state.stopping.set()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            http=_timed_headers(settings.header_timeout_s),
                            limit_concurrency=settings.max_connections,
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
