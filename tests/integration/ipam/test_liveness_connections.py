"""Liveness from the server's word: real announcer heartbeat senders and a real liveness watch, each in a
process of its own, on a real nats-server that reports closed connections and pings silent clients.

- kill -9 of an announcer: its connection closes with it, the node is dead at once (figures: bench/liveness.py);
- a frozen announcer (SIGSTOP): the server's pings go unanswered, it closes the connection: dead in about a
  second, long before the backstop;
- nobody can forge the server's report, and a node naming another's connection harms only itself;
- a frozen ipam (SIGSTOP for 2 s) declares no live node dead.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import nats

from schemas.events import AnnouncerHeartbeat, BusConnection, DataPlaneReported
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import CONNECTIONS_CLOSED, StreamName, dataplane_subject, heartbeat_subject
from services.ipam.liveness import LivenessWatch
from tests.waiting import async_wait_until

PROCESS = [sys.executable, "-m", "tests.integration.ipam.liveness_processes"]


class Child:
    """A child process whose stdout is collected line by line."""

    def __init__(self, *arguments: str) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen([*PROCESS, *arguments], stdout=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.strip())

    def find(self, pattern: str) -> re.Match[str] | None:
        for line in list(self.lines):
            if match := re.fullmatch(pattern, line):
                return match
        return None

    def signal(self, number: signal.Signals) -> None:
        os.kill(self.popen.pid, number)

    def end(self) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGCONT)
            self.popen.kill()
        self.popen.wait(10)
        self._reader.join(5)


@contextmanager
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.end()


async def announcer(started: list[Child], url: str, node: str) -> BusConnection:
    child = Child("heartbeats", url, node)
    started.append(child)
    await async_wait_until(lambda: child.find(r"connected \S+ \d+") is not None, what=f"{node} connected")
    match = child.find(r"connected (\S+) (\d+)")
    assert match is not None
    return BusConnection(server_id=match.group(1), client_id=int(match.group(2)))


@asynccontextmanager
async def watching(bus: Bus, *, backstop: float = 30.0) -> AsyncIterator[LivenessWatch]:
    watch = LivenessWatch(bus, backstop=backstop)
    await watch.start()
    try:
        yield watch
    finally:
        await watch.stop()


async def test_a_killed_announcer_is_dead_when_its_connection_closes(bus: Bus, nats_server: EmbeddedNats) -> None:
    with children() as started:
        async with watching(bus) as watch:  # a backstop far away: only the closed connection can kill
            await announcer(started, nats_server.url, "victim")
            await announcer(started, nats_server.url, "bystander")
            await async_wait_until(lambda: watch.live == {"victim", "bystander"}, what="both heard")
            started[0].signal(signal.SIGKILL)
            await async_wait_until(lambda: watch.live == {"bystander"}, timeout=1.0, what="victim dead at once")
            assert set(watch.take_deaths()) == {"victim"}


async def test_a_frozen_announcer_is_dead_when_the_server_gives_up_on_its_pings(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    with children() as started:
        async with watching(bus) as watch:
            await announcer(started, nats_server.url, "frozen")
            await async_wait_until(lambda: watch.live == {"frozen"}, what="heard")
            started[0].signal(signal.SIGSTOP)
            # the server pings every 250 ms a client that sent nothing, and closes it after 3 unanswered
            await async_wait_until(lambda: watch.live == frozenset(), timeout=4.0, what="dead by the stale close")


async def test_nobody_can_forge_a_closed_connection(bus: Bus, nats_server: EmbeddedNats) -> None:
    with children() as started:
        async with watching(bus) as watch:
            connection = await announcer(started, nats_server.url, "target")
            await async_wait_until(lambda: watch.live == {"target"}, what="heard")
            forged = (b'{"type":"io.nats.server.advisory.v1.client_disconnect","server":{"id":"%s"},'
                      b'"client":{"id":%d},"reason":"Client Closed"}') % (connection.server_id.encode(),
                                                                         connection.client_id)
            errors: list[Exception] = []

            async def noted(error: Exception) -> None:
                errors.append(error)

            forger = await nats.connect(nats_server.url, error_cb=noted)
            try:
                await forger.publish(CONNECTIONS_CLOSED, forged)
                await forger.flush()
                await async_wait_until(lambda: any("ermissions" in str(e) for e in errors), what="the refusal")
            finally:
                await forger.close()
            await bus.flush(within=1)
            assert watch.live == {"target"}


async def test_a_node_naming_another_nodes_connection_only_harms_itself(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    with children() as started:
        async with watching(bus) as watch:
            victim = await announcer(started, nats_server.url, "victim")
            await async_wait_until(lambda: watch.live == {"victim"}, what="victim heard")
            liar = await Bus.connect(bus.settings, producer="announcer/liar")
            try:
                await liar.notify(heartbeat_subject("liar"), AnnouncerHeartbeat(
                    node="liar", instance="l-1", sequence=0, connection=victim))
                await async_wait_until(lambda: watch.live == {"victim", "liar"}, what="the liar heard")
            finally:
                await liar.client.close()  # the liar's own connection closes: nobody named it
            await bus.flush(within=1)
            assert watch.live == {"victim", "liar"}
            started[0].signal(signal.SIGKILL)  # the victim's connection closes: the liar named it, it dies too
            await async_wait_until(lambda: watch.live == frozenset(), timeout=1.0, what="both dead")


async def test_a_frozen_ipam_declares_no_live_node_dead(nats_server: EmbeddedNats) -> None:
    with children() as started:
        for node in ("a", "b", "c"):
            await announcer(started, nats_server.url, node)
        ipam = Child("watch", nats_server.url, "--backstop", "5")
        started.append(ipam)
        await async_wait_until(lambda: all(ipam.find(f"live {n} .*") for n in "abc"), what="all heard")
        ipam.signal(signal.SIGSTOP)
        await asyncio.sleep(2.0)  # the ipam frozen for 2 s, on purpose (its connection is closed as stale)
        ipam.signal(signal.SIGCONT)
        await asyncio.sleep(7.0)  # longer than the backstop, on purpose: any wrong death would be printed
        assert not ipam.find(r"dead .*"), ipam.lines


async def test_data_plane_reports_are_read_from_an_announce_stream_made_again(bus: Bus) -> None:
    """ANNOUNCE deleted and made again under a running watch: the reports the new stream holds are read (the
    follower does not go on from its position in the old one, which would skip them)."""

    async def report(node: str) -> None:
        await bus.notify(heartbeat_subject(node), AnnouncerHeartbeat(node=node, instance=node, sequence=0,
                                                                     connection=bus.connection))
        await bus.publish(dataplane_subject(node), DataPlaneReported(node=node, instance=node, ready=False))

    async with watching(bus) as watch:
        await report("n1")
        await async_wait_until(lambda: "n1" in watch.answering, what="n1 reported not ready")
        await bus.js.delete_stream(StreamName.ANNOUNCE.value)
        await provision(bus)
        await report("n2")
        await async_wait_until(lambda: "n2" in watch.answering, timeout=15, what="n2's report on the new stream")
