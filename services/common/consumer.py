"""Durable pull consumers: one event at a time, in order, explicit ack, bounded redelivery.

A message whose body is not a valid event goes to the dead-letter stream at once; one whose handler
keeps failing goes there after ``max_deliver`` attempts. Either way it is terminated so it never
blocks the stream, and the service keeps running. An event of a schema version newer than this build's on a
stream that fails closed is the exception: the consumer stops at it (``NewerSchema``), unacked, for a build that
reads it; the server redelivers without limit (its ``max_deliver`` is unlimited: the consumer counts a
handler's failures itself), so no restart of an old build skips it. ``stop()`` lets the message in hand finish,
naks what was fetched but not started (for immediate redelivery), and returns. While the bus cannot
answer (a NATS server lost, the durable electing its leader) the consumer waits and binds again, with
a warning each time, rather than dying of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry import trace

from schemas.refusal import Refused
from services.common.bus import Bus, Received
from services.common.errors import ConnectionClosed, NotFound, RequestTimeout, RetryableError
from services.common.inbound import read_stream_message, stop_at_newer_schema
from services.common.nats_errors import translated
from services.common.subjects import DurableSpec, StreamName
from services.common.supervision import Backoff
from services.common.tracing import extract_context, tracer

log = logging.getLogger(__name__)

Handler = Callable[[Received], Awaitable[None]]

#: The server's redelivery bound: none (the consumer dead-letters a message whose handler failed ``max_deliver``
#: times itself; one it stopped at, or never finished, must come again however often the process restarts).
UNLIMITED = -1
#: Pauses while the durable cannot be reached (0.1 s doubling to 5 s).
RETRY_BACKOFF = Backoff(limit=5.0)


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    stream: StreamName
    durable: str
    subjects: Sequence[str] = ()
    max_deliver: int = 5
    ack_wait: float = 30.0
    batch: int = 100
    #: Redelivery delay after a handler failure, growing with each attempt.
    retry_delay: float = 0.2


def durable_config(durable: DurableSpec, *, start_sequence: int) -> api.ConsumerConfig:
    """How a durable consumer is created (by the administrative step, or by its owner when missing):
    delivering from ``start_sequence``, acked one by one, redelivered until acked or terminated."""
    spec = ConsumerSpec(durable.stream, durable.name, durable.subjects)
    return api.ConsumerConfig(
        name=durable.name, durable_name=durable.name, ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_sequence,
        max_deliver=UNLIMITED, ack_wait=spec.ack_wait, filter_subjects=list(durable.subjects),
        max_ack_pending=max(spec.batch * 10, 1000),
    )


async def durable_ack_floor(bus: Bus, durable: DurableSpec) -> int | None:
    """The stream sequence up to which ``durable`` has handled everything; None when it does not exist."""
    try:
        with translated(f"consumer info {durable.stream.value}/{durable.name}"):
            info = await bus.js.consumer_info(durable.stream.value, durable.name)
    except NotFound:
        return None
    return int(info.ack_floor.stream_seq if info.ack_floor else 0)


async def unbound_redelivery(bus: Bus, durable: DurableSpec) -> bool:
    """Give an existing ``durable`` made by an earlier release (redelivered at most 5 times by the server) the
    unlimited redelivery this one wants, its position kept; True when it changed it."""
    with translated(f"consumer info {durable.stream.value}/{durable.name}"):
        info = await bus.js.consumer_info(durable.stream.value, durable.name)
    if info.config.max_deliver == UNLIMITED:
        return False
    config = dataclasses.replace(info.config, max_deliver=UNLIMITED)
    with translated(f"update consumer {durable.stream.value}/{durable.name}"):
        await bus.js.add_consumer(durable.stream.value, config)
    return True


async def create_durable(bus: Bus, durable: DurableSpec, *, start_sequence: int) -> None:
    """Make ``durable`` (see :func:`durable_config`), delivering from ``start_sequence``."""
    with translated(f"create consumer {durable.stream.value}/{durable.name}"):
        await bus.js.add_consumer(durable.stream.value, durable_config(durable, start_sequence=start_sequence))


@dataclass(slots=True)
class ConsumerStats:
    handled: int = 0
    failed: int = 0
    dead_lettered: int = 0


class Consumer:
    def __init__(self, bus: Bus, spec: ConsumerSpec, handler: Handler) -> None:
        self._bus = bus
        self._spec = spec
        self._handler = handler
        self._stopping = asyncio.Event()
        self.stats = ConsumerStats()
        self._tracer = tracer(__name__)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until :meth:`stop`. Creates the durable consumer if it does not exist. While the bus cannot
        answer (its server lost, the consumer electing a leader) it says so and tries again with backoff."""
        spec = self._spec
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            max_deliver=UNLIMITED,
            ack_wait=spec.ack_wait,
            filter_subjects=list(spec.subjects) or None,
            max_ack_pending=max(spec.batch * 10, 1000),
        )
        failures = 0
        while not self._stopping.is_set():
            try:
                with translated(f"consumer {spec.stream.value}/{spec.durable}"):
                    subscription = await self._bus.js.pull_subscribe(
                        "", durable=spec.durable, stream=spec.stream.value, config=config
                    )
            except ConnectionClosed:
                return
            except RetryableError as error:
                failures += 1
                await self._pause("bind", error, failures)
                continue
            try:
                await self._consume(subscription)
            finally:
                with contextlib.suppress(nats.errors.Error):
                    await subscription.unsubscribe()
            return

    async def _consume(self, subscription: JetStreamContext.PullSubscription) -> None:
        """Fetch and handle until stopped; a fetch the bus cannot answer is asked again, after a pause (the
        subscription stays bound: the durable answers as soon as it has a leader again)."""
        spec = self._spec
        failures = 0
        while not self._stopping.is_set():
            try:
                with translated(f"fetch from {spec.stream.value}/{spec.durable}"):
                    messages = await subscription.fetch(spec.batch, timeout=0.5)
            except RequestTimeout:
                continue  # nothing new (or nobody answered: asked again at once)
            except ConnectionClosed:
                return
            except RetryableError as error:
                failures += 1
                await self._pause("fetch", error, failures)
                continue
            failures = 0
            for index, message in enumerate(messages):
                if self._stopping.is_set():
                    for unstarted in messages[index:]:
                        await unstarted.nak()
                    break
                await self._handle(message)

    async def _pause(self, step: str, error: RetryableError, failures: int) -> None:
        """Say why ``step`` (bind, fetch) failed and wait before the next attempt (unless stopped meanwhile)."""
        delay = RETRY_BACKOFF.delay(failures)
        log.warning("consumer cannot reach its durable durable=%s step=%s error=%r retry_in_s=%.1f",
                    self._spec.durable, step, error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _handle(self, message: Msg) -> None:
        metadata = message.metadata
        received = read_stream_message(message, component=self._bus.component)
        if isinstance(received, Refused):
            # an event of a newer schema raises NewerSchema: neither acked nor dead-lettered, the consumer stops
            stop_at_newer_schema(self._spec.stream, received, subject=message.subject,
                                 sequence=metadata.sequence.stream, component=self._bus.component)
            await self._dead_letter(message, f"invalid event: {received}")
            return
        envelope = received.envelope
        with self._tracer.start_as_current_span(
            f"consume {envelope.event.type}",
            context=extract_context(received.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": message.subject,
                "messaging.message.id": envelope.event_id,
                "metalbus.stream.sequence": received.sequence,
            },
        ):
            try:
                await self._handler(received)
            except asyncio.CancelledError:
                await message.nak()
                raise
            except Exception as error:
                self.stats.failed += 1
                if metadata.num_delivered >= self._spec.max_deliver:
                    await self._dead_letter(message, f"handler failed {metadata.num_delivered} times: {error!r}")
                else:
                    log.warning(
                        "handler failed subject=%s seq=%d attempt=%d error=%r",
                        message.subject, received.sequence, metadata.num_delivered, error,
                    )
                    await message.nak(delay=self._spec.retry_delay * metadata.num_delivered)
                return
        await message.ack()
        self.stats.handled += 1

    async def _dead_letter(self, message: Msg, reason: str) -> None:
        """Keep the message for inspection and terminate it so it is never delivered again."""
        await self._bus.dead_letter(message, consumer=self._spec.durable, reason=reason)
        await message.term()
        self.stats.dead_lettered += 1
