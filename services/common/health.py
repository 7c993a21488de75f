"""``/healthz``, ``/readyz`` and Prometheus ``/metrics`` over HTTP, served by an asyncio loop of its own
on a background thread.

The kubelet's probes and Prometheus' scrapes must be answered whatever else is connected: the announcer
listens on the node's address, where anyone on the network can open connections. So every connection is
served on its own (an idle or stalled client holds a few hundred bytes, not the server), a request head
must arrive whole within ``read_timeout`` and fit in ``MAX_HEAD`` bytes, an answer must be taken within
``write_timeout``, and at most ``max_connections`` are open at once (more are closed on arrival). Each
connection carries one request (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

#: The longest request head (request line and headers) read.
MAX_HEAD = 8192


class Health:
    """Liveness and readiness, settable from any thread. Not ready until told otherwise."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._not_live: str | None = None
        self._not_ready: dict[str, str] = {"starting": "the service is starting"}

    def set_ready(self, check: str, ready: bool, reason: str = "") -> None:
        with self._lock:
            if ready:
                self._not_ready.pop(check, None)
            else:
                self._not_ready[check] = reason or check

    def set_live(self, live: bool, reason: str = "") -> None:
        with self._lock:
            self._not_live = None if live else (reason or "not live")

    @property
    def live(self) -> bool:
        with self._lock:
            return self._not_live is None

    def liveness(self) -> tuple[bool, str]:
        """Whether the process is live, and why not."""
        with self._lock:
            return self._not_live is None, self._not_live or ""

    def readiness(self) -> tuple[bool, list[str]]:
        with self._lock:
            return not self._not_ready, sorted(f"{k}: {v}" for k, v in self._not_ready.items())


@dataclass(frozen=True, slots=True)
class Answer:
    status: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class HttpLimits:
    #: Seconds a client has to send its whole request head (an idle or stalled one is closed then).
    read_timeout: float = 5.0
    #: Seconds a client has to take the answer.
    write_timeout: float = 5.0
    #: Connections open at once; more are closed as they arrive.
    max_connections: int = 1024


class HealthServer:
    def __init__(
        self,
        health: Health,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry = DEFAULT_REGISTRY,
        limits: HttpLimits = HttpLimits(),
    ) -> None:
        self._health = health
        self._registry = registry
        self._host = host
        self._requested_port = port
        self._limits = limits
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="health-http", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not serving"
        return int(self._server.sockets[0].getsockname()[1])

    def __enter__(self) -> Self:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=5)
        self._close_loop()

    def _close_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._connected, self._host, self._requested_port, limit=MAX_HEAD, reuse_address=True
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._open):
            task.cancel()
        await asyncio.gather(*self._open, return_exceptions=True)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._open) >= self._limits.max_connections:
            writer.transport.abort()
            return
        self._open.add(task)
        try:
            await self._serve(reader, writer)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # a client too slow, gone or hung up: nothing to answer
        except Exception:
            log.exception("health endpoint failed a request")
        finally:
            self._open.discard(task)
            writer.transport.abort()  # closed already when answered; a failed one is cut here

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._limits.read_timeout)
        except asyncio.LimitOverrunError:
            answer = Answer("431 Request Header Fields Too Large", "text/plain", b"request head too large\n")
            method = "GET"
        else:
            method, answer = self._answer(head)
        writer.write(
            f"HTTP/1.1 {answer.status}\r\nContent-Type: {answer.content_type}\r\n"
            f"Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        if method != "HEAD":
            writer.write(answer.body)
        await asyncio.wait_for(writer.drain(), self._limits.write_timeout)
        # drain() returns below the buffer's high-water mark, not when it is empty: close() sends the rest
        # before its FIN (aborting now would cut a large /metrics answer short).
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), self._limits.write_timeout)

    def _answer(self, head: bytes) -> tuple[str, Answer]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "GET", Answer("400 Bad Request", "text/plain", b"bad request\n")
        method, target = parts[0], parts[1]
        if method not in ("GET", "HEAD"):
            return "GET", Answer("405 Method Not Allowed", "text/plain", b"method not allowed\n")
        headers = _headers(lines[1:])
        return method, route(target.partition("?")[0], health=self._health, metrics=lambda: self._metrics(headers))

    def _metrics(self, headers: dict[str, str]) -> Answer:
        encode, content_type = choose_encoder(headers.get("accept", ""))
        return Answer("200 OK", content_type, encode(self._registry))


def route(path: str, *, health: Health, metrics: Callable[[], Answer]) -> Answer:
    """The answer to a GET of ``path``."""
    if path == "/healthz":
        live, why = health.liveness()
        return _probe(live, why)
    if path == "/readyz":
        ready, reasons = health.readiness()
        return _probe(ready, "\n".join(reasons))
    if path == "/metrics":
        return metrics()
    return Answer("404 Not Found", "text/plain", b"not found\n")


def _probe(ok: bool, why: str) -> Answer:
    return Answer("200 OK" if ok else "503 Service Unavailable", "text/plain", ("ok" if ok else why).encode() + b"\n")


def _headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers
