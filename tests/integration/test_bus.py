"""The bus layer against a real nats-server with JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.events import (
    IPAllocated,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
    ServiceId,
    ServiceObserved,
)
from services.common.bus import DRAIN_AT_MOST, Append, Bus, BusSettings, Header, Received
from services.common.consumer import Consumer, ConsumerSpec
from services.common.errors import RetryableError, WrongLastSequence
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import (
    IPAM_ALLOCATIONS,
    StreamName,
    dead_letter_subject,
    ipam_allocation_subject,
    k8s_subject,
)
from services.common.tracing import setup_tracing
from tests.integration.connections import pause_reading, server_closures
from tests.waiting import async_wait_until


def allocated(name: str, ip: str = "10.0.0.1") -> IPAllocated:
    return IPAllocated(service=ServiceId(namespace="default", name=name), ips=(ip,), pool="lan", reason="test")


def observed(name: str, version: str) -> ServiceObserved:
    return ServiceObserved(
        ref=ObjectRef(namespace="default", name=name, uid=f"uid-{name}", resource_version=version),
        service_type="LoadBalancer",
    )


class Recorder:
    """A consumer handler that keeps what it saw."""

    def __init__(self, *, fail_on: frozenset[str] = frozenset()) -> None:
        self.seen: list[Received] = []
        self.fail_on = fail_on

    async def __call__(self, message: Received) -> None:
        event = message.event
        if isinstance(event, IPAllocated) and event.service.name in self.fail_on:
            raise RuntimeError(f"cannot handle {event.service.name}")
        self.seen.append(message)

    def names(self) -> list[str]:
        return [m.event.service.name for m in self.seen if isinstance(m.event, IPAllocated)]


@contextlib.asynccontextmanager
async def running(consumer: Consumer):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)


async def stream_messages(bus: Bus, stream: StreamName) -> int:
    return int((await bus.js.stream_info(stream.value)).state.messages)


async def read_all(bus: Bus, stream: StreamName) -> list[Received]:
    return [received async for received in bus.read(stream)]


async def test_streams_can_be_ensured_again_without_change(bus: Bus) -> None:
    await bus.publish(ipam_allocation_subject("default", "web"), allocated("web"))
    await provision(bus)
    assert await stream_messages(bus, StreamName.IPAM) == 1


async def test_duplicate_publish_is_stored_once(bus: Bus) -> None:
    subject = k8s_subject(ObjectKind.SERVICE, "default", "web")
    first = await bus.publish(subject, observed("web", "7"), msg_id="uid-web/7")
    again = await bus.publish(subject, observed("web", "7"), msg_id="uid-web/7")
    assert not first.duplicate
    assert again.duplicate and again.sequence == first.sequence
    assert await stream_messages(bus, StreamName.K8S) == 1


async def test_expected_last_sequence_mismatch_is_rejected(bus: Bus) -> None:
    first = await bus.publish(ipam_allocation_subject("default", "a"), allocated("a"), expected_last_sequence=0)
    await bus.publish(ipam_allocation_subject("default", "b"), allocated("b"), expected_last_sequence=first.sequence)
    with pytest.raises(WrongLastSequence):  # a deposed writer still believing the stream ends at `first`
        await bus.publish(ipam_allocation_subject("default", "c"), allocated("c"),
                          expected_last_sequence=first.sequence)
    assert await stream_messages(bus, StreamName.IPAM) == 2


async def test_fenced_appends_land_all_in_order_or_none_after_a_refused_one(bus: Bus) -> None:
    def batch(names: str, after: int) -> list[Append]:
        return [Append(ipam_allocation_subject("default", name), allocated(name), after + offset)
                for offset, name in enumerate(names)]  # fmt: skip

    first = batch("abcde", 0)
    assert list(await bus.append_fenced(first)) == [1, 2, 3, 4, 5]
    assert [r.event for r in await read_all(bus, StreamName.IPAM)] == [item.event for item in first]
    # a batch whose third append is fenced wrong (only the first and the last are acked): the third is
    # refused, so are the fourth and the fifth, and the writer learns it
    wrong = batch("fghij", 5)
    wrong[2] = Append(wrong[2].subject, wrong[2].event, 99)
    with pytest.raises(WrongLastSequence):
        await bus.append_fenced(wrong)
    names = [r.event.service.name for r in await read_all(bus, StreamName.IPAM)]  # type: ignore[attr-defined]
    assert names == ["a", "b", "c", "d", "e", "f", "g"]
    # another writer appending in between: the whole stale batch is refused, the other's message stays
    await bus.publish(ipam_allocation_subject("default", "other"), allocated("other"))
    with pytest.raises(WrongLastSequence):
        await bus.append_fenced(batch("xyz", 7))
    assert list(await bus.append_fenced(batch("x", 8))) == [9]
    assert await stream_messages(bus, StreamName.IPAM) == 9


async def test_appends_given_up_on_leave_no_unread_refusal_behind(bus: Bus) -> None:
    """A writer that steps down drops the appends it had sent and not confirmed; their refusals arrive
    later and are nobody's business (asyncio would report each one as an error nobody read)."""
    unread: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unread.append(context["message"]))
    try:
        given_up = await bus.send_fenced([Append(ipam_allocation_subject("default", "a"), allocated("a"), 99)])
        del given_up
        # acks are read in order: once the next append is confirmed, the refusal has been read too
        await bus.append_fenced([Append(ipam_allocation_subject("default", "b"), allocated("b"), 0)])
        gc.collect()
        assert unread == []
    finally:
        loop.set_exception_handler(None)


async def test_expected_last_subject_sequence_fences_one_subject(bus: Bus) -> None:
    subject = ipam_allocation_subject("default", "a")
    await bus.publish(subject, allocated("a"), expected_last_subject_sequence=0)
    with pytest.raises(WrongLastSequence):  # 0 means "the subject must be empty"
        await bus.publish(subject, allocated("a", "10.0.0.2"), expected_last_subject_sequence=0)


async def test_compacted_stream_reads_back_the_current_world_with_tombstones(bus: Bus) -> None:
    await bus.publish(k8s_subject(ObjectKind.SERVICE, "default", "web"), observed("web", "1"))
    await bus.publish(k8s_subject(ObjectKind.SERVICE, "default", "web"), observed("web", "2"))
    await bus.publish(k8s_subject(ObjectKind.SERVICE, "default", "db"), observed("db", "3"))
    await bus.publish(k8s_subject(ObjectKind.SERVICE, "default", "db"),
                      ObjectDeleted(kind=ObjectKind.SERVICE, namespace="default", name="db"))
    world = [m.event async for m in bus.read(StreamName.K8S, last_per_subject=True)]
    assert len(world) == 2
    services = [e for e in world if isinstance(e, ServiceObserved)]
    assert [(s.ref.name, s.ref.resource_version) for s in services] == [("web", "2")]
    assert any(isinstance(e, ObjectDeleted) and e.name == "db" for e in world)
    last = await bus.last_value(StreamName.K8S, k8s_subject(ObjectKind.SERVICE, "default", "web"))
    assert last is not None and isinstance(last.event, ServiceObserved) and last.event.ref.resource_version == "2"


async def test_read_from_a_sequence_replays_history_in_order(bus: Bus) -> None:
    for index in range(10):
        await bus.publish(ipam_allocation_subject("default", f"s{index}"), allocated(f"s{index}"))
    sequences = [m.sequence async for m in bus.read(StreamName.IPAM, start_sequence=4)]
    assert sequences == list(range(4, 11))
    assert [m async for m in bus.read(StreamName.ANNOUNCE)] == []


async def test_consumer_handles_events_in_order_and_resumes_after_restart(bus: Bus) -> None:
    spec = ConsumerSpec(stream=StreamName.IPAM, durable="resume", subjects=[IPAM_ALLOCATIONS])
    for index in range(5):
        await bus.publish(ipam_allocation_subject("default", f"s{index}"), allocated(f"s{index}"))
    first = Recorder()
    async with running(Consumer(bus, spec, first)):
        await async_wait_until(lambda: len(first.seen) == 5, what="first five events")
    for index in range(5, 8):
        await bus.publish(ipam_allocation_subject("default", f"s{index}"), allocated(f"s{index}"))
    second = Recorder()
    async with running(Consumer(bus, spec, second)):
        await async_wait_until(lambda: len(second.seen) == 3, what="the three new events")
    assert first.names() == [f"s{i}" for i in range(5)]
    assert second.names() == ["s5", "s6", "s7"]


async def test_a_consumer_waits_for_a_server_that_cannot_answer_and_carries_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started while its server is down (as during a server's loss in a cluster), a durable consumer says so
    and binds once the server answers again, instead of dying of it."""
    server = EmbeddedNats(store_dir=tmp_path / "store").start()
    try:
        bus = await Bus.connect(BusSettings(url=server.url, reconnect_wait=0.1), producer="test/consumer")
        async with bus:
            await provision(bus)
            await bus.publish(ipam_allocation_subject("default", "a"), allocated("a"))
            server.kill()
            recorder = Recorder()
            spec = ConsumerSpec(stream=StreamName.IPAM, durable="patient", subjects=[IPAM_ALLOCATIONS])
            async with running(Consumer(bus, spec, recorder)) as consumer:
                await async_wait_until(lambda: "cannot reach its durable durable=patient" in caplog.text,
                                       timeout=15, what="the consumer saying it cannot reach its durable")
                server.start()  # same port, same store

                async def published() -> bool:
                    try:
                        await bus.publish(ipam_allocation_subject("default", "b"), allocated("b"), msg_id="b")
                    except RetryableError:
                        return False
                    return True

                await async_wait_until(published, timeout=20, what="a publish once the server is back")
                await async_wait_until(lambda: len(recorder.seen) == 2, timeout=20, what="both events handled")
                assert consumer.stats.handled == 2
            assert recorder.names() == ["a", "b"]
    finally:
        server.stop()


async def test_killed_consumer_process_resumes_without_loss(bus: Bus, nats_server: EmbeddedNats,
                                                            tmp_path: Path) -> None:
    total = 300
    await bus.publish_many(
        (ipam_allocation_subject("default", f"s{i}"), allocated(f"s{i}"), None) for i in range(total)
    )
    record = tmp_path / "handled"
    record.touch()
    command = [sys.executable, "-m", "tests.integration.consumer_process", nats_server.url, "killme",
               str(record), "--ack-wait", "1"]

    def handled() -> set[int]:
        return {int(line) for line in record.read_text().split()}

    victim = subprocess.Popen(command)
    try:
        await async_wait_until(lambda: len(handled()) >= 20, what="the first consumer to handle some events")
    finally:
        victim.kill()
        victim.wait()
    assert len(handled()) < total, "the consumer finished before it could be killed"
    survivor = subprocess.Popen(command)
    try:
        await async_wait_until(lambda: handled() == set(range(1, total + 1)), timeout=30,
                               what="every event handled")
    finally:
        survivor.terminate()
        assert await asyncio.to_thread(survivor.wait, 10) == 0


async def test_poison_message_is_dead_lettered_and_the_rest_still_flows(bus: Bus) -> None:
    await bus.publish(ipam_allocation_subject("default", "before"), allocated("before"))
    await bus.js.publish(ipam_allocation_subject("default", "poison"), b'{"not": "an event"}')
    await bus.publish(ipam_allocation_subject("default", "after"), allocated("after"))
    recorder = Recorder()
    spec = ConsumerSpec(stream=StreamName.IPAM, durable="poisoned")
    async with running(Consumer(bus, spec, recorder)) as consumer:
        await async_wait_until(lambda: recorder.names() == ["before", "after"], what="valid events around poison")
        await async_wait_until(lambda: consumer.stats.dead_lettered == 1, what="the dead letter")
    dead = await bus.js.get_last_msg(StreamName.DEAD_LETTER.value, dead_letter_subject(StreamName.IPAM, "poisoned"))
    assert dead.data == b'{"not": "an event"}'
    assert dead.headers is not None
    assert dead.headers[Header.ORIGINAL_SUBJECT] == ipam_allocation_subject("default", "poison")
    assert "schema_version" in dead.headers[Header.ERROR]


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_bounded_retries(bus: Bus) -> None:
    await bus.publish(ipam_allocation_subject("default", "cursed"), allocated("cursed"))
    await bus.publish(ipam_allocation_subject("default", "fine"), allocated("fine"))
    recorder = Recorder(fail_on=frozenset({"cursed"}))
    spec = ConsumerSpec(stream=StreamName.IPAM, durable="retrying", max_deliver=3, retry_delay=0.05)
    async with running(Consumer(bus, spec, recorder)) as consumer:
        await async_wait_until(lambda: consumer.stats.dead_lettered == 1, what="cursed to be dead-lettered")
        await async_wait_until(lambda: recorder.names() == ["fine"], what="the healthy event")
    assert consumer.stats.failed == 3
    dead = await bus.js.get_last_msg(StreamName.DEAD_LETTER.value, dead_letter_subject(StreamName.IPAM, "retrying"))
    assert dead.headers is not None and "failed 3 times" in dead.headers[Header.ERROR]


async def test_trace_context_survives_a_hop(bus: Bus) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("metalbus-test", extra_processor=SimpleSpanProcessor(exporter))
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("watcher observes") as producer_span:
        await bus.publish(ipam_allocation_subject("default", "traced"), allocated("traced"))
    seen_trace: list[int] = []

    async def handler(message: Received) -> None:
        seen_trace.append(trace.get_current_span().get_span_context().trace_id)

    spec = ConsumerSpec(stream=StreamName.IPAM, durable="traced")
    async with running(Consumer(bus, spec, handler)):
        await async_wait_until(lambda: len(seen_trace) == 1, what="the traced event")
    producer_context = producer_span.get_span_context()
    assert seen_trace == [producer_context.trace_id]
    consume_spans = [s for s in exporter.get_finished_spans() if s.name == "consume IPAllocated"]
    assert consume_spans and consume_spans[0].parent is not None
    assert consume_spans[0].parent.span_id == producer_context.span_id


async def test_stop_naks_fetched_but_unstarted_messages(bus: Bus) -> None:
    for index in range(20):
        await bus.publish(ipam_allocation_subject("default", f"s{index}"), allocated(f"s{index}"))
    seen: list[str] = []
    consumer: Consumer

    async def stop_after_three(message: Received) -> None:
        assert isinstance(message.event, IPAllocated)
        seen.append(message.event.service.name)
        if len(seen) == 3:
            consumer.stop()

    spec = ConsumerSpec(stream=StreamName.IPAM, durable="graceful", batch=20, ack_wait=30)
    consumer = Consumer(bus, spec, stop_after_three)
    await asyncio.wait_for(consumer.run(), 10)
    rest = Recorder()
    async with running(Consumer(bus, spec, rest)):  # nak'd messages come back at once, not after ack_wait
        await async_wait_until(lambda: len(rest.seen) == 17, timeout=5, what="the unstarted messages")
    assert seen + rest.names() == [f"s{i}" for i in range(20)]


async def test_replay_folds_history_in_order_and_says_where_it_ended(bus: Bus) -> None:
    for index in range(50):
        await bus.publish(ipam_allocation_subject("default", f"s{index % 10}"), allocated(f"s{index % 10}"))
    await bus.js.publish(ipam_allocation_subject("default", "junk"), b"junk")
    folded: list[int] = []
    invalid: list[str] = []
    end = await bus.replay(StreamName.IPAM, lambda r: folded.append(r.sequence),
                           on_invalid=lambda m, e: invalid.append(m.subject))
    assert folded == list(range(1, 51)) and end == 51 and len(invalid) == 1
    latest: list[str] = []
    await bus.replay(StreamName.IPAM, lambda r: latest.append(r.subject), subjects=[IPAM_ALLOCATIONS],
                     last_per_subject=True)
    assert len(latest) == 10
    assert await bus.replay(StreamName.ANNOUNCE, folded.append) == 0
    assert await bus.replay(StreamName.IPAM, folded.append, subjects=["ipam.placement.>"]) == 0


async def test_a_client_that_falls_behind_reading_keeps_its_connection(nats_server: EmbeddedNats) -> None:
    """The server closes as stale a client that leaves its pings unanswered for about 1.25 s. A busy metalbus
    process whose reading falls that far behind stays connected: it pings the server itself, and the server
    pings (and judges) only a client it has not heard from. One that does not ping (nats-py's defaults) is
    closed, and the server says so on ``connections.closed``."""
    async with server_closures(nats_server.url) as (watching, reports):
        pinging = await Bus.connect(BusSettings(url=nats_server.url), producer="test/pinging")
        quiet = await nats.connect(nats_server.url, name="test/quiet", allow_reconnect=False)
        try:
            pause_reading(pinging.client)
            pause_reading(quiet)
            await async_wait_until(lambda: any(r.client.id == quiet.client_id for r in reports), timeout=10,
                                   what="the quiet client closed by the server")
            assert [r.reason for r in reports if r.client.id == quiet.client_id] == ["Stale Connection"]
            await asyncio.sleep(1.5)  # the pinging one, unread as long as the quiet one was, and 1.5 s more
            await watching.flush(within=2)
            assert not [r for r in reports if r.client.id == pinging.client.client_id]
            assert pinging.client.is_connected
        finally:
            with contextlib.suppress(Exception):
                await quiet.close()
            pause_reading(pinging.client, paused=False)
            await pinging.close()


async def test_closing_with_a_backlog_of_delivered_messages_ends_within_the_drain_bound(
        nats_server: EmbeddedNats) -> None:
    """A process asked to stop while its subscriptions hold a backlog (it was frozen while messages kept
    coming) closes its connection after handling them for ``DRAIN_AT_MOST`` seconds at most, not the 30 s of
    nats-py's default: it stops within its grace period."""
    bus = await Bus.connect(BusSettings(url=nats_server.url), producer="test/backlogged")
    sender = await Bus.connect(BusSettings(url=nats_server.url), producer="test/sender")
    handled: list[bytes] = []

    async def slow(message: Msg) -> None:
        handled.append(message.data)
        await asyncio.sleep(0.2)  # a handler's work: 100 messages are 20 s of it

    try:
        await bus.subscribe("test.backlog", cb=slow)
        await bus.flush(within=2)
        for index in range(100):
            await sender.client.publish("test.backlog", str(index).encode())
        await sender.flush(within=2)
        await async_wait_until(lambda: bool(handled), what="the first message handled")
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(bus.close(), DRAIN_AT_MOST + 5)
        assert loop.time() - started < DRAIN_AT_MOST + 1.5 and bus.client.is_closed
        assert len(handled) < 100  # the rest was left, not handled after all
    finally:
        with contextlib.suppress(Exception):
            await bus.close()
        await sender.close()
