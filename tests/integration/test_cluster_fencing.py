"""Fenced appends on a three-server JetStream cluster with replicated streams, as deployed (k8s/ runs
three NATS servers): a pipelined, chained batch lands whole and in order, and a refused append in the
middle of one is reported at once, with nothing after it stored."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from schemas.events import IPAllocated, ServiceId
from services.common.bus import Append, Bus, BusSettings
from services.common.errors import WrongLastSequence
from services.common.nats_server import nats_server_binary
from services.common.provision import provision
from services.common.subjects import StreamName, ipam_allocation_subject


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    """Three nats-servers routed to each other; the client URL of the first."""
    ports = _free_ports(6)
    clients, routes = ports[:3], ports[3:]
    route_urls = ",".join(f"nats://127.0.0.1:{port}" for port in routes)
    servers = [
        subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(clients[i]), "-js", "-sd", str(tmp_path / f"n{i}"),
             "-n", f"n{i}", "--cluster_name", "metalbus-test", "--cluster", f"nats://127.0.0.1:{routes[i]}",
             "--routes", route_urls],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for i in range(3)
    ]  # fmt: skip
    try:
        yield f"nats://127.0.0.1:{clients[0]}"
    finally:
        for server in servers:
            server.kill()
            server.wait()


@pytest.fixture
async def replicated(cluster: str) -> AsyncIterator[Bus]:
    bus = await Bus.connect(BusSettings(url=cluster, replicas=3), producer="test/cluster")
    try:
        async with asyncio.timeout(60):  # the cluster elects its JetStream leader first
            while True:
                try:
                    await provision(bus)
                    break
                except Exception:  # not ready yet: the error varies while it forms
                    await asyncio.sleep(0.2)
        yield bus
    finally:
        await bus.close()


def _appends(prefix: str, count: int, after: int) -> list[Append]:
    return [
        Append(ipam_allocation_subject("default", f"{prefix}{i}"),
               IPAllocated(service=ServiceId(namespace="default", name=f"{prefix}{i}"), ips=("10.0.0.1",),
                           pool="lan", reason="test"), after + i)
        for i in range(count)
    ]  # fmt: skip


async def test_chained_fenced_batches_on_a_replicated_stream(replicated: Bus) -> None:
    bus = replicated
    last = await bus.last_sequence(StreamName.IPAM)
    pending = []
    for batch in range(4):  # pipelined: each batch sent before the previous one is confirmed
        pending.append(await bus.send_fenced(_appends(f"b{batch}-", 300, last + batch * 300)))
    landed = [sequence for sent in pending for sequence in await sent.confirmed()]
    assert landed == list(range(last + 1, last + 1201))
    assert await bus.last_sequence(StreamName.IPAM) == last + 1200

    wrong = _appends("w", 10, last + 1200)
    wrong[4] = Append(wrong[4].subject, wrong[4].event, 5)
    with pytest.raises(WrongLastSequence):
        await (await bus.send_fenced(wrong)).confirmed()
    assert await bus.last_sequence(StreamName.IPAM) == last + 1204  # the four before the refused one
