"""Following a stream live: in order, in batches, and across a NATS server restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from schemas.events import IPAllocated, ServiceId
from services.common.bus import Bus, BusSettings, Received
from services.common.follower import Follower
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import IPAM_ALLOCATIONS, StreamName, ipam_allocation_subject
from tests.waiting import async_wait_until


def allocated(name: str) -> IPAllocated:
    return IPAllocated(service=ServiceId(namespace="default", name=name), ips=("10.0.0.1",), pool="lan",
                       reason="test")


async def publish(bus: Bus, names: list[str]) -> None:
    await bus.publish_many((ipam_allocation_subject("default", n), allocated(n), None) for n in names)


def names(received: list[Received]) -> list[str]:
    return [r.event.service.name for r in received if isinstance(r.event, IPAllocated)]


async def test_follows_from_a_sequence_in_batches(bus: Bus) -> None:
    await publish(bus, [f"s{i}" for i in range(10)])
    follower = Follower(bus, StreamName.IPAM, start_sequence=4, subjects=[IPAM_ALLOCATIONS])
    seen: list[Received] = []
    try:
        await async_wait_until(lambda: _more(follower, seen, 7), what="the history from sequence 4")
        await publish(bus, ["late"])
        await async_wait_until(lambda: _more(follower, seen, 8), what="a live message")
    finally:
        await follower.close()
    assert names(seen) == [f"s{i}" for i in range(3, 10)] + ["late"]
    assert follower.next_sequence == 12
    assert await follower.fetch(wait=0.01) == []


async def test_survives_a_server_restart_without_gaps(tmp_path: Path) -> None:
    server = EmbeddedNats(store_dir=tmp_path / "store").start()
    try:
        reconnected = asyncio.Event()
        bus = await Bus.connect(BusSettings(url=server.url, reconnect_wait=0.1), producer="test/follower",
                                on_reconnect=reconnected.set)
        await provision(bus)
        follower = Follower(bus, StreamName.IPAM, start_sequence=1)
        seen: list[Received] = []
        await publish(bus, ["a", "b"])
        await async_wait_until(lambda: _more(follower, seen, 2), what="the first messages")
        server.kill()
        server.start()  # same port, same store
        await asyncio.wait_for(reconnected.wait(), 10)
        await publish(bus, ["c", "d"])
        await async_wait_until(lambda: _more(follower, seen, 4), timeout=15, what="messages after the restart")
        assert names(seen) == ["a", "b", "c", "d"]
        await follower.close()
        await bus.close()
    finally:
        server.stop()


async def _more(follower: Follower, seen: list[Received], total: int) -> bool:
    seen.extend(await follower.fetch(wait=0.05))
    return len(seen) >= total
