"""The probes' HTTP server keeps answering the kubelet and Prometheus whatever else is connected to it."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.common.health import Health, HealthServer, HttpLimits

#: How long a probe may take: the kubelet's default timeoutSeconds.
PROBE_DEADLINE = 1.0


def get(port: int, path: str, *, host: str = "127.0.0.1") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=PROBE_DEADLINE) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("probe_test_total", "a metric to scrape", registry=registry).inc()
    return registry


@pytest.fixture
def health() -> Health:
    health = Health()
    health.set_ready("starting", True)
    return health


@pytest.fixture
def server(health: Health, registry: CollectorRegistry) -> Iterator[HealthServer]:
    with HealthServer(health, host="127.0.0.1", port=0, registry=registry) as server:
        yield server


def open_connections(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


def test_probes_and_scrapes_are_answered_while_idle_and_stalled_clients_hold_connections(
    server: HealthServer,
) -> None:
    idle = open_connections(server.port, 50)
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
    try:
        for _ in range(3):
            started = time.monotonic()
            assert get(server.port, "/healthz") == (200, "ok\n")
            status, body = get(server.port, "/metrics")
            assert status == 200 and "probe_test_total 1.0" in body
            assert time.monotonic() - started < PROBE_DEADLINE
    finally:
        for connection in [*idle, stalled]:
            connection.close()


def test_a_stalled_client_is_disconnected_after_the_read_timeout(health: Health, registry: CollectorRegistry) -> None:
    limits = HttpLimits(read_timeout=0.2)
    with HealthServer(health, host="127.0.0.1", port=0, registry=registry, limits=limits) as server:
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.sendall(b"GET /readyz HTTP/1.1\r\n")
        stalled.settimeout(5)
        try:
            assert stalled.recv(100) == b""  # closed by the server, well before our own 5 s
        finally:
            stalled.close()


def test_connections_beyond_the_limit_are_closed_and_the_rest_still_served(
    health: Health, registry: CollectorRegistry
) -> None:
    limits = HttpLimits(max_connections=5)
    with HealthServer(health, host="127.0.0.1", port=0, registry=registry, limits=limits) as server:
        idle = open_connections(server.port, 5)
        try:
            late = socket.create_connection(("127.0.0.1", server.port))
            late.settimeout(5)
            assert late.recv(100) == b""  # refused: closed at once
            late.close()
        finally:
            for connection in idle:
                connection.close()
        deadline = time.monotonic() + 5  # the closed ones are noticed as they go
        while get(server.port, "/healthz")[0] != 200:
            assert time.monotonic() < deadline, "the server never served again"


def test_probes_say_why(server: HealthServer, health: Health) -> None:
    health.set_ready("bus", False, "disconnected from NATS")
    health.set_live(False, "task ipam-liveness failed: ValueError('boom')")
    assert get(server.port, "/readyz") == (503, "bus: disconnected from NATS\n")
    assert get(server.port, "/healthz") == (503, "task ipam-liveness failed: ValueError('boom')\n")
    assert get(server.port, "/nothing")[0] == 404


def test_an_oversized_or_malformed_request_gets_a_clear_refusal(server: HealthServer) -> None:
    for request, status in ((b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n", b"431"),
                            (b"nonsense\r\n\r\n", b"400"), (b"POST /healthz HTTP/1.1\r\n\r\n", b"405")):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
            client.sendall(request)
            assert client.recv(100).split(b" ")[1] == status


def test_it_listens_only_on_the_address_it_is_given(health: Health, registry: CollectorRegistry) -> None:
    with HealthServer(health, host="127.0.0.2", port=0, registry=registry) as server:
        assert get(server.port, "/healthz", host="127.0.0.2") == (200, "ok\n")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


def test_a_large_scrape_arrives_whole(health: Health) -> None:
    """Bigger than the transport's write buffer: the answer is sent whole before the connection closes."""
    registry = CollectorRegistry()
    wide = Counter("probe_wide_total", "many series", ["series"], registry=registry)
    for index in range(8000):
        wide.labels(f"series-{index:05d}").inc()
    with HealthServer(health, host="127.0.0.1", port=0, registry=registry) as server:
        for _ in range(5):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as response:
                body = response.read()
                assert len(body) == int(response.headers["Content-Length"]) > 256 * 1024
            assert b'series="series-07999"' in body
