"""The ``metalbus`` command as an operator runs it: real processes, real NATS, signals."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import AnnouncerHeartbeat
from schemas.events.codec import decode
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.subjects import HEARTBEATS
from tests.waiting import async_wait_until, wait_until

METALBUS = [sys.executable, "-m", "services.cli"]


class Process:
    """A child process whose stderr is collected line by line."""

    def __init__(self, command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                      cwd=cwd)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            match = re.search(pattern, line)
            if match:
                return match
        return None

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(15)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
            self._reader.join(5)


@pytest.fixture
def announcer(nats_server: EmbeddedNats) -> Iterator[Process]:
    process = Process([*METALBUS, "announcer", "--nats", nats_server.url, "--node", "node-a.lab",
                       "--http-port", "0", "--http-host", "127.0.0.1"])
    try:
        yield process
    finally:
        process.stop()


def http_get(port: int, path: str, *, host: str = "127.0.0.1") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_announcer_serves_probes_heartbeats_and_stops_cleanly(announcer: Process, bus: Bus) -> None:
    beats: list[AnnouncerHeartbeat] = []

    async def on_beat(message: object) -> None:
        event = decode(message.data).event  # type: ignore[attr-defined]
        assert isinstance(event, AnnouncerHeartbeat)
        beats.append(event)

    subscription = await bus.client.subscribe(HEARTBEATS, cb=on_beat)
    await async_wait_until(lambda: announcer.find(r"http_port=(\d+)") is not None, what="the announcer to start")
    match = announcer.find(r"http_port=(\d+)")
    assert match is not None
    port = int(match.group(1))
    await async_wait_until(lambda: http_get(port, "/readyz")[0] == 200, what="readiness")
    assert http_get(port, "/healthz") == (200, "ok\n")
    status, metrics = http_get(port, "/metrics")
    assert status == 200 and "python_info" in metrics
    assert 'metalbus_event_loop_lag_max_seconds{component="announcer"}' in metrics  # the runtime's probe
    assert http_get(port, "/nope")[0] == 404
    await async_wait_until(lambda: len(beats) >= 2, what="two heartbeats (one every 2 s)")
    assert {b.node for b in beats} == {"node-a.lab"}
    assert [b.sequence for b in beats[:2]] == sorted(b.sequence for b in beats[:2])
    assert all(b.connection.server_id and b.connection.client_id for b in beats)  # the connection it is sent on

    assert await asyncio.to_thread(announcer.stop) == 0
    await async_wait_until(lambda: beats[-1].leaving, what="the leaving heartbeat")
    await subscription.unsubscribe()
    assert announcer.find(r"component=announcer .*msg=stopped code=0")


def test_nats_command_runs_a_jetstream_server_until_sigterm(tmp_path: object) -> None:
    process = Process([*METALBUS, "nats", "--port", "0"])
    try:
        wait_until(lambda: process.find(r"nats-server with JetStream at (nats://\S+)") is not None,
                   what="the server URL")
    finally:
        assert process.stop() == 0


def test_announcer_without_a_node_name_is_refused_with_a_reason() -> None:
    result = subprocess.run([*METALBUS, "announcer"], capture_output=True, text=True, env={"PATH": "/usr/bin"},
                            timeout=30)
    assert result.returncode == 2
    assert "announcer needs --node NAME" in result.stderr


def test_the_http_endpoint_listens_on_the_address_it_is_given(nats_server: EmbeddedNats) -> None:
    env = {**os.environ, "METALBUS_HTTP_ADDRESS": "127.0.0.3"}
    process = Process([*METALBUS, "ipam", "--nats", nats_server.url, "--http-port", "0"], env=env)
    try:
        wait_until(lambda: process.find(r"http_port=(\d+)") is not None, what="ipam to start")
        match = process.find(r"http_address=(\S+) http_port=(\d+)")
        assert match is not None and match.group(1) == "127.0.0.3"
        port = int(match.group(2))
        wait_until(lambda: http_get(port, "/healthz", host="127.0.0.3") == (200, "ok\n"), what="/healthz")
        with pytest.raises(urllib.error.URLError):
            http_get(port, "/healthz")  # 127.0.0.1: nobody listens there
    finally:
        assert process.stop() == 0
