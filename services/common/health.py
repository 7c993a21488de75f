"""``/healthz``, ``/readyz`` and Prometheus ``/metrics`` over HTTP, served from a background thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry, make_wsgi_app

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]


class Health:
    """Liveness and readiness, settable from any thread. Not ready until told otherwise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live = True
        self._not_ready: dict[str, str] = {"starting": "the service is starting"}

    def set_ready(self, check: str, ready: bool, reason: str = "") -> None:
        with self._lock:
            if ready:
                self._not_ready.pop(check, None)
            else:
                self._not_ready[check] = reason or check

    def set_live(self, live: bool) -> None:
        with self._lock:
            self._live = live

    @property
    def live(self) -> bool:
        with self._lock:
            return self._live

    def readiness(self) -> tuple[bool, list[str]]:
        with self._lock:
            return not self._not_ready, sorted(f"{k}: {v}" for k, v in self._not_ready.items())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class HealthServer:
    def __init__(
        self, health: Health, *, host: str, port: int, registry: CollectorRegistry = DEFAULT_REGISTRY
    ) -> None:
        self._health = health
        self._metrics = make_wsgi_app(registry)
        self._server: WSGIServer = make_server(host, port, self._app, handler_class=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            ok, body = self._health.live, "ok" if self._health.live else "not live"
        elif path == "/readyz":
            ok, reasons = self._health.readiness()
            body = "ok" if ok else "\n".join(reasons)
        elif path == "/metrics":
            return self._metrics(environ, start_response)  # type: ignore[no-any-return]
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
        return [body.encode() + b"\n"]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
