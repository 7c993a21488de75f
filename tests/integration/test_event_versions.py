"""A stream holds events of several releases. Older ones are read as today's models everywhere. One of a
release newer than this build stops every reader of a stream metalbus's own components write (K8S, SECRETS,
IPAM) right at it, never skipped nor dead-lettered, however often the reader starts again; on ANNOUNCE, which
nodes write, a node's newer report is dead-lettered with its reason and the rest flows (a node must not be
able to stop the watcher)."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from prometheus_client import REGISTRY

from schemas.events import AllocationFailed, AllocationFailureReason, AnnouncementMode, AnnouncementReported
from schemas.events.codec import encode, wrap
from services.common.bus import Bus, Header
from services.common.consumer import Consumer, ConsumerSpec, durable_config
from services.common.errors import NewerSchema
from services.common.follower import Follower
from services.common.provision import provision
from services.common.records import Received
from services.common.subjects import (
    DURABLES,
    StreamName,
    announce_subject,
    dead_letter_subject,
    ipam_allocation_subject,
)
from tests.integration.test_bus import Recorder, running
from tests.unit.test_upcasting import failed_body
from tests.waiting import async_wait_until

NEWER = failed_body(version=3, reason="NoFreeAddress", retry_after_seconds=30)


async def three_releases(bus: Bus) -> int:
    """An event of release 1, one of a newer release than this build, one of this build's; the newer one's
    sequence."""
    await bus.js.publish(ipam_allocation_subject("default", "old"), failed_body(version=1, reason="no_available_ip"))
    ack = await bus.js.publish(ipam_allocation_subject("default", "newer"), NEWER)
    await bus.js.publish(ipam_allocation_subject("default", "now"), failed_body(version=2, reason="PoolExhausted"))
    return int(ack.seq)


def names(seen: list[Received]) -> list[str]:
    """The Services whose failures were handed out, by their subjects."""
    return [m.subject.rsplit(".", 1)[-1] for m in seen if isinstance(m.event, AllocationFailed)]


def stopped_gauge(component: str, stream: StreamName) -> float | None:
    return REGISTRY.get_sample_value("metalbus_stopped_on_newer_schema",
                                     {"component": component, "stream": stream.value})


async def test_a_consumer_reads_an_older_event_as_today_and_stops_at_a_newer_one_however_often_it_restarts(
    bus: Bus,
) -> None:
    newer = await three_releases(bus)
    recorder = Recorder()
    # a short ack wait: an event left unacked comes again to the next start soon; more starts than the
    # server's redeliveries of earlier releases (5), which would have skipped it
    spec = ConsumerSpec(stream=StreamName.IPAM, durable="versions", ack_wait=0.3)
    for start in range(7):
        consumer = Consumer(bus, spec, recorder)
        with pytest.raises(NewerSchema) as stopped:
            await asyncio.wait_for(consumer.run(), 10)
        assert stopped.value.sequence == newer, f"start {start}"
        assert "AllocationFailed schema version 3 is newer than the 2" in str(stopped.value)
        assert consumer.stats.dead_lettered == 0
    assert names(recorder.seen) == ["old"]  # read as today's model; nothing after the newer one
    assert [m.event.reason for m in recorder.seen if isinstance(m.event, AllocationFailed)] == [
        AllocationFailureReason.NO_AVAILABLE_IP]
    assert stopped_gauge(bus.component, StreamName.IPAM) == 1
    info = await bus.js.stream_info(StreamName.DEAD_LETTER.value)
    assert info.state.messages == 0


async def test_a_replay_and_a_read_stop_at_a_newer_event_with_what_came_before_it_folded(bus: Bus) -> None:
    newer = await three_releases(bus)
    folded: list[Received] = []
    with pytest.raises(NewerSchema) as stopped:
        await bus.replay(StreamName.IPAM, folded.append, on_invalid=lambda *_: pytest.fail("dead-lettered"))
    assert stopped.value.sequence == newer and names(folded) == ["old"]
    read: list[Received] = []
    with pytest.raises(NewerSchema):
        async for received in bus.read(StreamName.IPAM, on_invalid=lambda *_: pytest.fail("dead-lettered")):
            read.append(received)
    assert names(read) == ["old"]


async def test_a_follower_hands_out_what_came_before_a_newer_event_then_stops_at_it_every_time(bus: Bus) -> None:
    follower = Follower(bus, StreamName.IPAM, start_sequence=1)
    try:
        newer = await three_releases(bus)
        taken: list[Received] = []

        async def fetched_up_to_the_stop() -> bool:
            try:
                taken.extend(await follower.fetch(wait=0.2))
            except NewerSchema:
                return True
            return False

        deadline = asyncio.get_running_loop().time() + 10
        while not await fetched_up_to_the_stop():
            assert asyncio.get_running_loop().time() < deadline, "the follower never stopped"
        assert names(taken) == ["old"]
        for _ in range(3):  # not skipped by asking again
            with pytest.raises(NewerSchema):
                await follower.fetch(wait=0.2)
        assert follower.next_sequence == newer
    finally:
        await follower.close()


async def test_a_nodes_newer_report_is_dead_lettered_for_that_node_alone_and_the_rest_flows(bus: Bus) -> None:
    def report(node: str, *, version: int | None = None) -> bytes:
        body = encode(wrap(AnnouncementReported(node=node, ip="10.0.0.1", mode=AnnouncementMode.L2,
                                                announcing=True), producer=f"announcer/{node}"))
        if version is None:
            return body
        return json.dumps({**json.loads(body), "schema_version": version}).encode()

    await bus.js.publish(announce_subject("node-a", "10.0.0.1"), report("node-a", version=99))
    await bus.js.publish(announce_subject("node-b", "10.0.0.1"), report("node-b"))
    seen: list[Received] = []

    async def handle(received: Received) -> None:
        seen.append(received)

    spec = ConsumerSpec(stream=StreamName.ANNOUNCE, durable="reports")
    async with running(Consumer(bus, spec, handle)) as consumer:
        await async_wait_until(lambda: len(seen) == 1 and consumer.stats.dead_lettered == 1,
                               what="node-b's report handled, node-a's dead-lettered")
    assert isinstance(seen[0].event, AnnouncementReported) and seen[0].event.node == "node-b"
    dead = await bus.js.get_last_msg(StreamName.DEAD_LETTER.value, dead_letter_subject(StreamName.ANNOUNCE, "reports"))
    assert dead.headers is not None
    assert dead.headers[Header.ORIGINAL_SUBJECT] == announce_subject("node-a", "10.0.0.1")
    assert "schema version 99 is newer" in dead.headers[Header.ERROR]


async def test_provisioning_lifts_an_earlier_releases_redelivery_bound_and_keeps_the_durables_position(
    bus: Bus,
) -> None:
    """Durables made by an earlier release were redelivered at most 5 times by the server: a reader stopped at
    a newer event would skip it after five starts. Provisioning this release lifts the bound in place."""
    durable = DURABLES[0]
    await bus.js.delete_consumer(durable.stream.value, durable.name)
    earlier = dataclasses.replace(durable_config(durable, start_sequence=7), max_deliver=5)
    await bus.js.add_consumer(durable.stream.value, earlier)
    await provision(bus)
    info = await bus.js.consumer_info(durable.stream.value, durable.name)
    assert info.config.max_deliver == -1
    assert info.config.opt_start_seq == 7
    await provision(bus)  # nothing more to change
    assert (await bus.js.consumer_info(durable.stream.value, durable.name)).config.max_deliver == -1
