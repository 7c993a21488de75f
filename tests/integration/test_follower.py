"""Following a stream live: in order, in batches, across a NATS server restart, and through a consumer
that is lost or cannot be made (said meanwhile: a warning, a metric, not ready)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from schemas.events import IPAllocated, ServiceId
from services.common.bus import Bus, BusSettings, Received
from services.common.errors import StreamReplaced
from services.common.follower import HEARTBEAT, MISSED_HEARTBEATS, Follower
from services.common.health import Health
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


LAPSED_METRIC = "metalbus_followers_lapsed"


def lapsed(stream: StreamName) -> float:
    """How many followers of ``stream`` in this process do not follow it now (the metric)."""
    return REGISTRY.get_sample_value(LAPSED_METRIC, {"component": "test", "stream": stream.value}) or 0.0


async def test_a_consumer_that_vanishes_is_made_again_from_where_it_was(bus: Bus) -> None:
    """The server drops the consumer (as when the server holding it is lost) and the connection lives on:
    nothing tells the client but the heartbeats that stop."""
    await publish(bus, ["a"])
    health = Health()
    health.set_ready("starting", True)
    follower = Follower(bus, StreamName.IPAM, start_sequence=1, health=health)
    seen: list[Received] = []
    try:
        await async_wait_until(lambda: _more(follower, seen, 1), what="the first message")
        assert follower.consumer is not None
        await bus.js.delete_consumer(StreamName.IPAM.value, follower.consumer)
        await publish(bus, ["b"])
        await async_wait_until(lambda: _more(follower, seen, 2), timeout=HEARTBEAT * MISSED_HEARTBEATS + 3,
                               what="the message published after the consumer vanished")
        assert names(seen) == ["a", "b"]
        assert follower.following and health.readiness() == (True, [])
    finally:
        await follower.close()


async def test_a_stream_made_again_under_it_is_not_followed_on_but_said(bus: Bus) -> None:
    """The stream is deleted and made again (a NATS store lost, a restore) and filled past where the follower
    was: following on would skip its first messages, so every fetch raises until the reader reads it anew."""
    await publish(bus, ["a", "b"])
    health = Health()
    follower = Follower(bus, StreamName.IPAM, start_sequence=1, health=health)
    seen: list[Received] = []
    try:
        await async_wait_until(lambda: _more(follower, seen, 2), what="the first messages")
        await bus.js.delete_stream(StreamName.IPAM.value)
        await provision(bus)
        await publish(bus, ["c", "d", "e"])

        async def replaced() -> bool:
            try:
                seen.extend(await follower.fetch(wait=0.1))
            except StreamReplaced:
                return True
            return False

        await async_wait_until(replaced, timeout=HEARTBEAT * MISSED_HEARTBEATS + 5, what="the stream said replaced")
        with pytest.raises(StreamReplaced):
            await follower.fetch(wait=0.1)  # and again: it never follows on
        assert names(seen) == ["a", "b"]  # nothing of the new stream was handed out as if it followed
        assert health.readiness()[0] is False
    finally:
        await follower.close()


async def test_a_consumer_that_cannot_be_made_is_tried_again_until_it_is_and_said_meanwhile(
    nats_server: EmbeddedNats,
) -> None:
    async with await Bus.connect(BusSettings(url=nats_server.url), producer="test/follower") as bus:
        for info in await bus.js.streams_info():
            await bus.js.delete_stream(info.config.name)
        health = Health()
        health.set_ready("starting", True)
        follower = Follower(bus, StreamName.IPAM, start_sequence=1, health=health)
        try:
            assert await follower.fetch(wait=0.05) == []  # no stream yet: the consumer cannot be made
            assert not follower.following
            ready, reasons = health.readiness()
            assert not ready and reasons[0].startswith("following IPAM: cannot make its consumer")
            assert lapsed(StreamName.IPAM) == 1
            await provision(bus)
            await publish(bus, ["a"])
            seen: list[Received] = []
            await async_wait_until(lambda: _more(follower, seen, 1), timeout=10, what="following once it is there")
            assert names(seen) == ["a"]
            assert follower.following and health.readiness() == (True, [])
            assert lapsed(StreamName.IPAM) == 0
        finally:
            await follower.close()
            for info in await bus.js.streams_info():
                await bus.js.delete_stream(info.config.name)


async def test_a_reader_behind_leaves_the_backlog_in_the_stream_not_in_memory(bus: Bus) -> None:
    """A burst the reader is slow to fold waits in the stream: the follower holds back the server's flow
    control while ``max_buffered`` messages wait here, and still hands out every message, in order."""
    sent = [f"s{i}" for i in range(10_000)]
    for first in range(0, len(sent), 500):
        await publish(bus, sent[first:first + 500])
    follower = Follower(bus, StreamName.IPAM, start_sequence=1, max_buffered=100)
    try:
        seen = await follower.fetch(batch=1, wait=30)
        await async_wait_until(lambda: follower._held_flow_control is not None, timeout=30,
                               what="flow control held back")
        assert follower.consumer is not None
        info = await bus.js.consumer_info(StreamName.IPAM.value, follower.consumer)
        assert info.num_pending > len(sent) / 2, "the server should hold the backlog"
        while batch := await follower.fetch(batch=5000, wait=5):
            seen += batch
        assert names(seen) == sent
        assert follower.following
    finally:
        await follower.close()


async def test_a_closed_follower_makes_no_consumer_again(bus: Bus) -> None:
    """A reader still looping on a follower it replaced (closed) gets nothing, and leaves no consumer behind."""
    await publish(bus, ["a"])
    follower = Follower(bus, StreamName.IPAM, start_sequence=1)
    seen: list[Received] = []
    await async_wait_until(lambda: _more(follower, seen, 1), what="the first message")
    consumers = (await bus.js.stream_info(StreamName.IPAM.value)).state.consumer_count
    await follower.close()
    await publish(bus, ["b"])
    assert await follower.fetch(wait=0.1) == []

    async def given_up() -> bool:
        return (await bus.js.stream_info(StreamName.IPAM.value)).state.consumer_count == consumers - 1

    await async_wait_until(given_up, what="its consumer deleted, none made again")
    assert await follower.fetch(wait=0.1) == []
    assert await given_up()
