"""No silent death, against a real NATS: a restartable loop that dies works again; a vital task that dies
turns the probes to 503 with its reason, and the process exits once told to stop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import pytest
from nats.aio.msg import Msg

from schemas.events import AnnouncerHeartbeat
from services.announcer.agents.layer2 import L2Agent
from services.announcer.service import announcer_main
from services.common.bus import Bus
from services.common.health import Health
from services.common.nats_server import EmbeddedNats
from services.common.runtime import RuntimeOptions, run_service
from services.common.subjects import heartbeat_subject
from services.ipam.liveness import LivenessWatch
from services.ipam.replica import Replica
from services.ipam.service import ipam_main
from tests.supervised import in_process, run_in, task_failures
from tests.waiting import async_wait_until


async def test_ipam_liveness_is_restarted_after_it_dies_and_judges_again(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    fold = LivenessWatch._fold
    injected: list[str] = []

    def dies_once(self: LivenessWatch, message: Msg) -> None:
        if not injected:
            injected.append(message.subject)
            raise RuntimeError("injected into the heartbeat reader")
        fold(self, message)

    monkeypatch.setattr(LivenessWatch, "_fold", dies_once)
    health, stopping = Health(), asyncio.Event()
    before = task_failures("ipam-liveness", component="ipam")
    watch = LivenessWatch(bus, backstop=0.35, heartbeat_interval=0.1)

    async def beat(node: str) -> None:
        await bus.notify(heartbeat_subject(node), AnnouncerHeartbeat(node=node, instance=f"{node}-1", sequence=0))

    async def scenario() -> None:
        await watch.start()
        try:
            async def reader_killed() -> bool:  # the reader's subscription may reach the server after start
                await beat("node-a")
                return bool(injected)

            await async_wait_until(reader_killed, what="node-a's heartbeat to kill the reader")

            async def heard_again() -> bool:
                await beat("node-b")
                return "node-b" in watch.live

            await async_wait_until(heard_again, what="the restarted reader to hear node-b")
            # and it judges again: node-b, silent now, dies after its timeout
            await async_wait_until(lambda: "node-b" not in watch.live, what="node-b judged dead")
        finally:
            stopping.set()
            await watch.stop()

    await run_in(in_process("ipam", health, stopping), scenario)
    assert injected == ["heartbeat.announcer.node-a"]
    assert task_failures("ipam-liveness", component="ipam") == before + 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
async def restored_logging_and_signals() -> AsyncIterator[None]:
    """``run_service`` sets up the process: its log handlers and signal handlers are undone afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


@pytest.mark.usefixtures("restored_logging_and_signals", "bus")
async def test_a_dead_ipam_replica_fails_the_probes_with_its_reason_until_restarted(
    nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_step(self: Replica) -> None:
        raise RuntimeError("injected into the replica")

    monkeypatch.setattr(Replica, "_standby_step", broken_step)
    port = _free_port()
    before = task_failures("replica", component="ipam")
    options = RuntimeOptions(nats_url=nats_server.url, http_address="127.0.0.1", http_port=port, instance="doomed")
    service = asyncio.create_task(run_service("ipam", options, ipam_main()))
    reason = "task replica failed: RuntimeError('injected into the replica')"
    try:
        async def probes_failed() -> bool:
            return await asyncio.to_thread(_get, port, "/healthz") == (503, f"{reason}\n")

        # the task is reported failed once the replica has let go of what it held (its lease, the liveness
        # connection): seconds on a loaded machine
        await async_wait_until(probes_failed, timeout=30, what="/healthz to fail with the reason")
        status, body = await asyncio.to_thread(_get, port, "/readyz")
        assert status == 503 and f"task replica: {reason}" in body.splitlines()
        scraped = (await asyncio.to_thread(_get, port, "/metrics"))[1]
        assert 'metalbus_task_failures_total{component="ipam",task="replica"}' in scraped
        assert task_failures("replica", component="ipam") == before + 1
        os.kill(os.getpid(), signal.SIGTERM)  # what the kubelet does after the liveness probe failed
        assert await asyncio.wait_for(service, 20) == 1
    finally:
        if not service.done():
            service.cancel()


@pytest.mark.usefixtures("restored_logging_and_signals")
async def test_an_announcer_whose_agent_died_is_dead_to_ipam_at_once(
    bus: Bus, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's death cancels the heartbeats while the process lives on, its connection open (it serves the
    failing probes until restarted): it says it is leaving, so its IPs move now, not after the 25 s backstop."""
    watch = LivenessWatch(bus)  # the shipped backstop: only the word can make the node dead within the test
    await watch.start()
    live = asyncio.Event()

    async def dies_once_live(self: L2Agent, stopping: asyncio.Event) -> None:
        self.in_step.set()  # in step with the bus: its heartbeats go out
        await live.wait()
        raise RuntimeError("injected into the L2 agent")

    monkeypatch.setattr(L2Agent, "run", dies_once_live)
    port = _free_port()
    options = RuntimeOptions(nats_url=nats_server.url, http_address="127.0.0.1", http_port=port, instance="doomed")
    service = asyncio.create_task(run_service("announcer", options, announcer_main(node="node-x")))
    try:
        await async_wait_until(lambda: "node-x" in watch.live, timeout=10, what="node-x live")
        watch.take_deaths()
        live.set()
        await async_wait_until(lambda: "node-x" not in watch.live, timeout=5, what="node-x dead by its word")
        assert set(watch.take_deaths()) == {"node-x"}
        assert (await asyncio.to_thread(_get, port, "/healthz"))[0] == 503  # the process is still there
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(service, 20) == 1
    finally:
        if not service.done():
            service.cancel()
        await watch.stop()
