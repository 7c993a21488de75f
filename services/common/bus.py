"""The NATS JetStream bus: connect, declare streams, publish events, read streams back.

The records it exchanges with callers (settings, appends, received messages) are in
:mod:`services.common.records` and re-exported here.

Consumers that process events one by one (with ack, redelivery and dead letters) live in
:mod:`services.common.consumer`; this module holds the connection and the reads and writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import unquote, urlsplit

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext, api
from nats.nuid import NUID

from schemas.events import BusConnection, Envelope, Event, EventId
from schemas.events.codec import InvalidEvent, encode, wrap
from schemas.refusal import Refused, bounded
from services.common.acks import AckInbox
from services.common.aio import SLICE
from services.common.errors import (
    Conflict,
    MessageTooLarge,
    NewerSchema,
    NotFound,
    RetryableError,
    WrongLastSequence,
)
from services.common.inbound import read_received, read_stream_message, stop_at_newer_schema
from services.common.metrics import DEAD_LETTERS
from services.common.nats_errors import is_wrong_last_sequence, translated
from services.common.permissions import inbox_prefix
from services.common.records import (
    Append,
    BusSettings,
    Header,
    PendingAppends,
    Published,
    PublishItem,
    Received,
)
from services.common.subjects import STREAMS, StreamName, StreamSpec, dead_letter_subject, stream_spec
from services.common.subscription import Subscription
from services.common.tracing import inject_context

log = logging.getLogger(__name__)

#: Bytes of a message's ``max_payload`` left for its headers (message id, trace context, fences).
HEADER_ALLOWANCE = 4096

__all__ = [
    "Append",
    "Bus",
    "BusSettings",
    "Header",
    "PendingAppends",
    "PublishItem",
    "Published",
    "Received",
]


#: Appends encoded and handed to the connection between two turns of the loop (about 10 ms of work).
SEND_SLICE = 500


#: The client gives its connection up (and connects again) after this long without an answer to its pings.
KEEPALIVE_PATIENCE = 10.0

#: Closing, the messages already delivered to subscriptions are handled for at most this long (seconds; nats-py
#: waits 30 s by default) before the connection closes: a process stopping with a backlog (one that was frozen
#: while its decisions kept coming) is stopped within its grace period; what it leaves, durable consumers give
#: to the next instance, and followers read again.
DRAIN_AT_MOST = 2


class Bus:
    """A connection to NATS with JetStream, stamping every event it publishes with ``producer``."""

    def __init__(
        self,
        client: NatsClient,
        *,
        producer: str,
        settings: BusSettings,
        reconnect_listeners: list[Callable[[], None]] | None = None,
    ) -> None:
        self._reconnect_listeners = reconnect_listeners if reconnect_listeners is not None else []
        self.client = client
        self.js: JetStreamContext = client.jetstream(timeout=settings.request_timeout)
        self._acks = AckInbox(client)
        self.producer = producer
        self.settings = settings

    @property
    def component(self) -> str:
        """The service this connection belongs to (``producer`` without its instance): a metric label."""
        return self.producer.partition("/")[0]

    @classmethod
    async def connect(
        cls,
        settings: BusSettings,
        *,
        producer: str,
        on_disconnect: Callable[[], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> Self:
        """Connect (retrying with backoff), then reconnect for ever whenever the connection drops."""

        connection: list[NatsClient] = []

        async def disconnected() -> None:
            if connection and (connection[0].is_draining or connection[0].is_closed):
                return  # our own close
            log.warning("bus disconnected url=%s", redacted(settings.url))
            if on_disconnect:
                on_disconnect()

        listeners: list[Callable[[], None]] = []

        async def reconnected() -> None:
            for listener in listeners:
                listener()
            log.info("bus reconnected url=%s", redacted(settings.url))
            if on_reconnect:
                on_reconnect()

        last_error: list[Exception] = []

        async def error(exc: Exception) -> None:
            last_error[:] = [exc]  # why an attempt failed (a refused password, a bad certificate, ...)
            log.debug("bus error error=%r", exc)  # reconnect attempts; disconnects are logged above

        urls = server_urls(settings.url)
        # The client itself retries its servers for ever (it reconnects for ever once connected): one attempt
        # here is bounded so that a first connection can fail, and say why.
        attempt_timeout = settings.connect_timeout * len(urls) + settings.reconnect_wait + 1.0
        delay = settings.reconnect_wait
        attempt = 0
        while True:
            attempt += 1
            try:
                connecting = nats.connect(
                    urls,
                    name=producer,
                    connect_timeout=settings.connect_timeout,
                    reconnect_time_wait=settings.reconnect_wait,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                    ping_interval=settings.keepalive,
                    max_outstanding_pings=max(round(KEEPALIVE_PATIENCE / settings.keepalive), 1),
                    drain_timeout=DRAIN_AT_MOST,
                    **connection_options(settings),
                )
                client = await asyncio.wait_for(connecting, attempt_timeout)
                connection.append(client)
                break
            except (nats.errors.NoServersError, OSError, TimeoutError) as failure:
                cause = last_error[0] if last_error else failure
                if settings.initial_attempts and attempt >= settings.initial_attempts:
                    raise RetryableError(f"cannot connect to NATS at {redacted(settings.url)}: {cause!r}") from failure
                log.warning("bus not reachable url=%s attempt=%d retry_in_s=%.1f error=%r", redacted(settings.url),
                            attempt, delay, cause)
                await asyncio.sleep(delay)  # backoff between connection attempts
                delay = min(delay * 2, 5.0)
        return cls(client, producer=producer, settings=settings, reconnect_listeners=listeners)

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every reconnection (server-side consumers may be gone by then)."""
        self._reconnect_listeners.append(listener)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if not self.client.is_closed:
            try:
                await self.client.drain()
            except (nats.errors.Error, TimeoutError):  # closed, or still reconnecting: nothing to drain to
                with contextlib.suppress(nats.errors.Error, OSError):  # a lost connection is closed either way
                    await self.client.close()

    # --- streams -----------------------------------------------------------------------------

    async def missing_streams(self, specs: Iterable[StreamSpec] = STREAMS) -> list[StreamName]:
        """The streams that do not exist (yet): the administrative step has not run."""
        missing = []
        for spec in specs:
            try:
                with translated(f"stream info {spec.name.value}"):
                    await self.js.stream_info(spec.name.value)
            except NotFound:
                missing.append(spec.name)
        return missing

    async def last_sequence(self, stream: StreamName) -> int:
        with translated(f"stream info {stream.value}"):
            info = await self.js.stream_info(stream.value)
        return int(info.state.last_seq)

    # --- writing ----------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        event: Event,
        *,
        causation_id: EventId | None = None,
        msg_id: str | None = None,
        expected_last_sequence: int | None = None,
        expected_last_subject_sequence: int | None = None,
    ) -> Published:
        """Append one event to the stream that holds ``subject``.

        ``msg_id`` makes the publish idempotent within the stream's duplicate window.
        ``expected_last_*`` fence the write: a mismatch raises :class:`WrongLastSequence`.
        """
        envelope = wrap(event, producer=self.producer, causation_id=causation_id)
        headers = _headers(msg_id, expected_last_sequence, expected_last_subject_sequence)
        try:
            with translated(f"publish to {subject}"):
                ack = await self.js.publish(subject, encode(envelope), headers=headers)
        except Conflict as error:
            refusal = error.__cause__
            if not is_wrong_last_sequence(refusal):
                raise
            expected = expected_last_sequence
            if expected is None:
                expected = expected_last_subject_sequence or 0
            raise WrongLastSequence(subject, expected, refusal.description or "") from None
        return Published(sequence=ack.seq, duplicate=bool(ack.duplicate), envelope=envelope)

    async def publish_many(
        self, items: Iterable[PublishItem], *, too_large: Callable[[PublishItem, int, int], None] | None = None
    ) -> list[Published]:
        """Publish many events without waiting for each ack in turn: (subject, event, msg_id), or
        (subject, event, msg_id, trace_headers) for an item that carries its own trace context.

        An item whose message would not fit the server's ``max_payload`` is not sent: it goes to
        ``too_large(item, size, limit)`` and the others are published, or, without ``too_large``,
        :class:`MessageTooLarge` is raised before anything is sent."""
        limit = self.client.max_payload - HEADER_ALLOWANCE
        encoded: list[tuple[PublishItem, Envelope, bytes]] = []
        for item in items:
            envelope = wrap(item[1], producer=self.producer)
            data = encode(envelope)
            if len(data) <= limit:
                encoded.append((item, envelope, data))
            elif too_large is not None:
                too_large(item, len(data), limit)
            else:
                raise MessageTooLarge(item[0], len(data), limit)
        envelopes: list[Envelope] = []
        futures = []
        for item, envelope, data in encoded:
            envelopes.append(envelope)
            headers = _headers(item[2], None, None)
            if len(item) == 4 and item[3]:
                headers.update(item[3])
            futures.append(await self._publish_acked(item[0], data, headers))
        try:
            async with asyncio.timeout(self.settings.request_timeout):
                with translated(f"publish {len(futures)} messages"):
                    acks = await asyncio.gather(*futures)
        except TimeoutError as error:
            raise RetryableError(f"no acknowledgement for {len(futures)} publishes in time") from error
        return [
            Published(sequence=ack.seq, duplicate=bool(ack.duplicate), envelope=envelope)
            for ack, envelope in zip(acks, envelopes, strict=True)
        ]

    async def append_fenced(self, items: Sequence[Append]) -> range:
        """Append events in order, each fenced on the sequence before it, and wait until they landed (the
        sequences they landed at, in order).

        Either all land at the sequences their fences name, or :class:`WrongLastSequence` is raised
        (a refused append makes every later one refused too, so nothing lands out of order).
        Meant for a single writer that knows the stream's last sequence.
        """
        return await (await self.send_fenced(items)).confirmed()

    async def send_fenced(self, items: Sequence[Append]) -> PendingAppends:
        """Send fenced appends without waiting for them: confirm later with
        :meth:`PendingAppends.confirmed`, so the next batch can be prepared meanwhile.

        Only the first and the last append ask for an ack. Every append is fenced on the sequence
        before it and carries its event id as ``Nats-Msg-Id``; every one after the first also names the
        id of the one before it (``Nats-Expected-Last-Msg-Id``). A refused append is dropped, and then
        so is every later one (the stream's last message is not the one they name), the last included:
        so the last one's ack says that all of them landed, in order, with nothing in between. (The
        first is fenced on the sequence alone and acked: a restarted server forgets the last id.)
        """
        acks: list[asyncio.Future[api.PubAck]] = []
        previous_id: str | None = None
        for index, item in enumerate(items):
            envelope = wrap(item.event, producer=self.producer, causation_id=item.causation_id)
            headers = {
                Header.EXPECTED_LAST_SEQUENCE.value: str(item.expected_last_sequence),
                Header.MSG_ID.value: envelope.event_id,
            }
            if previous_id is not None:
                headers[Header.EXPECTED_LAST_MSG_ID.value] = previous_id
            headers.update(item.trace_headers or {})
            if index in (0, len(items) - 1):
                acks.append(await self._publish_acked(item.subject, encode(envelope), headers))
            else:
                with translated(f"publish to {item.subject}"):
                    await self.client.publish(item.subject, encode(envelope), headers=headers)
            previous_id = envelope.event_id
            if index % SEND_SLICE == SEND_SLICE - 1:  # 90 000 placements encode for seconds: the loop turns
                await asyncio.sleep(0)
        return PendingAppends(items, acks, self.settings.request_timeout)

    async def _publish_acked(self, subject: str, data: bytes, headers: dict[str, str]) -> asyncio.Future[api.PubAck]:
        """Send one JetStream publish now; the future resolves with its ack, or its refusal."""
        with translated(f"publish to {subject}"):
            reply, ack = await self._acks.expect()
            await self.client.publish(subject, data, reply=reply, headers=headers)
        return ack

    async def dead_letter(self, message: Msg, *, consumer: str, reason: str) -> None:
        """Set a message aside on the dead-letter stream, with why and where it came from."""
        metadata = message.metadata
        stream = StreamName(metadata.stream)
        headers = {
            Header.ERROR.value: bounded(reason, 1024),
            Header.ORIGINAL_SUBJECT.value: message.subject,
            Header.ORIGINAL_STREAM.value: stream.value,
            Header.ORIGINAL_SEQUENCE.value: str(metadata.sequence.stream),
        }
        log.error("dead-lettered subject=%s seq=%d consumer=%s reason=%s", message.subject,
                  metadata.sequence.stream, consumer, bounded(reason, 1024))
        DEAD_LETTERS.labels(stream=stream.value, consumer=consumer).inc()
        with translated(f"dead-letter {message.subject}"):
            await self.js.publish(dead_letter_subject(stream, consumer), message.data, headers=headers)

    async def notify(self, subject: str, event: Event) -> None:
        """Plain (not stored) publish, for heartbeats."""
        with translated(f"notify {subject}"):
            await self.client.publish(subject, encode(wrap(event, producer=self.producer)))

    async def subscribe(
        self, subject: str, *, queue: str = "", cb: Callable[[Msg], Awaitable[None]] | None = None
    ) -> Subscription:
        """A plain (not stored) subscription: messages go to ``cb``, or wait in it for
        :meth:`Subscription.next`."""
        with translated(f"subscribe to {subject}"):
            return Subscription(await self.client.subscribe(subject, queue=queue, cb=cb), subject=subject)

    @property
    def connection(self) -> BusConnection:
        """This connection as its server names it (the server's id, the client id it gave us; empty while
        not yet connected): what a heartbeat carries, and what the server's report of a close names."""
        info = self.client._server_info
        return BusConnection(server_id=str(info.get("server_id", ""))[:128], client_id=self.client.client_id or 0)

    def messages_received(self) -> int:
        """How many messages the client has read from its server so far (on every connection)."""
        return int(self.client.stats["in_msgs"])

    async def flush(self, *, within: int) -> None:
        """A round trip to the server, answered within ``within`` seconds: what was sent before has
        reached it, and what it sent before has been read. Raises ``RetryableError`` while disconnected (the
        client would only write its buffer out, with no round trip)."""
        if not self.client.is_connected:
            raise RetryableError("flush: not connected, no round trip")
        # The client pairs each PONG with the oldest PING waiting; a PING given up (its future cancelled, as
        # the client's own flush timeout does) crashes the client's reader when its PONG comes late after all
        # (nats-py 2.16: InvalidStateError, the connection dropped and made anew). So the round trip is never
        # given up, only no longer waited for; a reconnect forgets it.
        round_trip = asyncio.ensure_future(self.client.flush(timeout=_PONG_PATIENCE))
        round_trip.add_done_callback(_outcome_seen)
        with translated("flush"):
            await asyncio.wait_for(asyncio.shield(round_trip), within)
        if not self.client.is_connected:  # lost meanwhile: the answer, if any, came from no server
            raise RetryableError("flush: disconnected during the round trip")

    # --- reading back -----------------------------------------------------------------------

    async def last_value(self, stream: StreamName, subject: str) -> Received | None:
        """The newest message on ``subject``, or None if the subject holds nothing; a body that is not an
        event (counted) raises ``InvalidEvent``, for the caller who asked for this one value to decide."""
        try:
            with translated(f"last message of {subject}"):
                raw = await self.js.get_last_msg(stream.value, subject)
        except NotFound:
            return None
        received = read_received(subject=raw.subject or subject, sequence=raw.seq or 0, data=raw.data or b"",
                                 headers=raw.headers, component=self.component)
        if isinstance(received, Refused):
            stop_at_newer_schema(stream, received, subject=subject, sequence=raw.seq or 0, component=self.component)
            raise InvalidEvent(received)
        return received

    async def replay(
        self,
        stream: StreamName,
        fold: Callable[[Received], None],
        *,
        subjects: Iterable[str] = (),
        last_per_subject: bool = False,
        start_sequence: int = 1,
        on_invalid: Callable[[Msg, Refused], None] | None = None,
        stall_timeout: float = 10.0,
    ) -> int:
        """Fold every message of ``stream`` (as :meth:`read` selects them) through ``fold``, in order,
        up to the end as it is when the replay starts. Returns the sequence of the last message
        delivered (valid or not; 0 if none), the position to follow on from.

        Uses an ordered push consumer: several times faster than fetching, for rebuilding state. The loop
        turns after every slice (``aio.SLICE``) of folding, however many messages are buffered.
        """
        filters = list(subjects)
        if last_per_subject and not filters:
            filters = list(stream_spec(stream).subjects)
        if last_per_subject:
            policy = api.DeliverPolicy.LAST_PER_SUBJECT
        elif start_sequence > 1:
            policy = api.DeliverPolicy.BY_START_SEQUENCE
        else:
            policy = api.DeliverPolicy.ALL
        with translated(f"stream info {stream.value}"):
            info = await self.js.stream_info(stream.value)
        end = int(info.state.last_seq)
        if end < start_sequence or info.state.messages == 0:
            return 0
        state = _Replay(stream, fold, on_invalid, target=end if not filters else None, component=self.component)
        config = api.ConsumerConfig(
            deliver_policy=policy,
            opt_start_seq=start_sequence if policy == api.DeliverPolicy.BY_START_SEQUENCE else None,
            filter_subjects=filters if len(filters) > 1 else None,
            name=filtered_consumer_name(filters),
        )
        with translated(f"replay of {stream.value}"):
            subscription = await self.js.subscribe(
                filters[0] if len(filters) == 1 else ">", stream=stream.value, cb=state.on_message,
                ordered_consumer=True, config=config, deliver_policy=policy,
            )
        try:
            with translated(f"replay of {stream.value}"):
                consumer = await subscription.consumer_info()
            delivered = consumer.delivered.consumer_seq if consumer.delivered else 0
            if consumer.num_pending == 0 and not delivered and state.count == 0:
                return 0  # nothing matches the filter
            seen = -1
            while not state.done.is_set():
                try:
                    await asyncio.wait_for(state.done.wait(), stall_timeout)
                except TimeoutError as error:
                    if state.count == seen:
                        raise RetryableError(
                            f"replay of {stream.value} stalled after {state.count} messages"
                        ) from error
                    seen = state.count
            if state.failure is not None:
                raise state.failure
            return state.last_sequence
        finally:
            with translated(f"replay of {stream.value}"):
                await subscription.unsubscribe()

    async def read(
        self,
        stream: StreamName,
        *,
        subjects: Iterable[str] = (),
        last_per_subject: bool = False,
        start_sequence: int = 1,
        batch: int = 1000,
        on_invalid: Callable[[Msg, Refused], None] | None = None,
        skim: Callable[[str, bytes], bool] | None = None,
    ) -> AsyncIterator[Received]:
        """Every message of ``stream`` (matching ``subjects``) from ``start_sequence`` up to the end
        as it is when the read starts; with ``last_per_subject`` only the newest per subject
        (the current world of a compacted stream). Invalid bodies go to ``on_invalid``, not the caller; an event
        of a newer schema on a stream that fails closed raises ``NewerSchema`` instead (as ``replay`` does).

        ``skim(subject, body)`` first looks at each message: True when it needs nothing of it (see
        ``schemas/events/gist.py``), so the message is not read in full nor yielded — nor is its metadata
        (only its position), which costs nats-py more than the message itself.

        Pulled ``batch`` messages at a time: at most one batch is on its way, so a round trip with the
        server (the client's PONG, the liveness check's) never waits behind a whole stream in the socket,
        as it does behind an ordered push consumer's flood (:meth:`replay`). For reads of tens of thousands
        of messages by a process that must stay in contact meanwhile.
        """
        if last_per_subject:
            policy = api.DeliverPolicy.LAST_PER_SUBJECT
        elif start_sequence > 1:
            policy = api.DeliverPolicy.BY_START_SEQUENCE
        else:
            policy = api.DeliverPolicy.ALL
        filters = list(subjects)
        if last_per_subject and not filters:  # JetStream wants a filter with this policy
            filters = list(stream_spec(stream).subjects)
        config = api.ConsumerConfig(
            deliver_policy=policy,
            opt_start_seq=start_sequence if policy == api.DeliverPolicy.BY_START_SEQUENCE else None,
            ack_policy=api.AckPolicy.NONE,
            filter_subjects=filters or None,
            inactive_threshold=30.0,
            max_waiting=1,
            mem_storage=True,
        )
        # Unnamed, so the server names it: services may create ephemeral readers, never a consumer
        # of a name they choose (that could be somebody's durable; see permissions.py).
        with translated(f"reader on {stream.value}"):
            info = await self.js.add_consumer(stream.value, config)
        reader = info.name
        batches = _Batches()
        inbox = self.client.new_inbox()
        subscription: NatsSubscription | None = None
        try:
            with translated(f"reader on {stream.value}"):
                subscription = await self.client.subscribe(inbox, cb=batches.on_message)
            next_messages = f"{api.DEFAULT_PREFIX}.CONSUMER.MSG.NEXT.{stream.value}.{reader}"
            remaining = info.num_pending or 0
            while remaining > 0:
                batches.expect(min(batch, remaining))
                with translated(f"reading {stream.value}"):
                    await self.client.publish(next_messages, batches.request(), reply=inbox)
                    try:
                        await asyncio.wait_for(batches.complete.wait(), 5.0)
                    except TimeoutError as error:
                        raise RetryableError(f"reading {stream.value}: no messages in time") from error
                messages = batches.take()
                if not messages:
                    break  # the server has no more for this reader (the stream was cut short meanwhile)
                for message, pending in messages:
                    remaining = pending
                    if skim is not None and skim(message.subject, message.data):
                        continue
                    received = read_stream_message(message, component=self.component)
                    if isinstance(received, Refused):
                        stop_at_newer_schema(stream, received, subject=message.subject,
                                             sequence=delivery_position(message).stream, component=self.component)
                        if on_invalid:
                            on_invalid(message, received)
                        continue
                    yield received
        finally:
            if subscription is not None:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await subscription.unsubscribe()
            # An ephemeral reader would otherwise linger for its inactivity threshold: reads in a loop
            # (a poll, explain, a resync) would pile them up on the server.
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await self.js.delete_consumer(stream.value, reader)


class _Batches:
    """The messages of one pull request of :meth:`Bus.read`, handed over by the client's callback as they
    arrive (its own ``fetch`` waits on a task per message: ten times the cost of the message itself)."""

    def __init__(self) -> None:
        self.complete = asyncio.Event()
        self._wanted = 0
        self._messages: list[tuple[Msg, int]] = []  # each with the messages still pending after it

    def expect(self, count: int) -> None:
        self._wanted, self._messages = count, []
        self.complete.clear()

    def request(self) -> bytes:
        return json.dumps({"batch": self._wanted, "no_wait": True}).encode()

    def take(self) -> list[tuple[Msg, int]]:
        messages, self._messages = self._messages, []
        return messages

    async def on_message(self, message: Msg) -> None:
        if message.headers is not None and message.headers.get(api.Header.STATUS):
            self.complete.set()  # no (more) messages, or the request expired: this batch is what came
            return
        pending = delivery_pending(message)
        self._messages.append((message, pending))
        if len(self._messages) >= self._wanted or pending == 0:
            self.complete.set()


#: Tokens of a JetStream delivery's reply subject, the first format (``$JS.ACK.<stream>.<consumer>.<delivered>.
#: <stream seq>.<consumer seq>.<time>.<pending>``); the other formats are read by nats-py.
_V1_ACK_TOKENS = 9


class DeliveryPosition(NamedTuple):
    """Where a JetStream delivery stands: its stream and consumer sequences, the messages pending after it."""

    stream: int
    consumer: int
    pending: int


def delivery_position(message: Msg) -> DeliveryPosition:
    """Read off the delivery's reply subject alone: nats-py's full metadata (a time, two objects) costs more
    than a message passed over unread. Raises as nats-py does for a message that is no delivery."""
    tokens = message.reply.split(".") if message.reply else []
    if len(tokens) == _V1_ACK_TOKENS and tokens[0] == "$JS" and tokens[1] == "ACK":
        with contextlib.suppress(ValueError):
            return DeliveryPosition(stream=int(tokens[5]), consumer=int(tokens[6]), pending=int(tokens[8]))
    metadata = message.metadata
    return DeliveryPosition(stream=metadata.sequence.stream, consumer=metadata.sequence.consumer,
                            pending=metadata.num_pending)  # fmt: skip


def delivery_pending(message: Msg) -> int:
    """The messages pending after a delivery: the last token of a first-format reply subject (read off its end:
    a start-up read passes over most of what it is sent, and splitting every subject cost it more than the
    rest of its look at a message), else as :func:`delivery_position` reads it."""
    reply = message.reply
    if reply and reply.startswith("$JS.ACK.") and reply.count(".") == _V1_ACK_TOKENS - 1:
        with contextlib.suppress(ValueError):
            return int(reply[reply.rindex(".") + 1:])
    return delivery_position(message).pending


#: How long a round trip no longer waited for stays with the client (seconds): far beyond the ~1.25 s after
#: which the server closes a silent connection (the reconnect forgets it).
_PONG_PATIENCE = 600


def _outcome_seen(round_trip: asyncio.Future[None]) -> None:
    """A round trip nobody waits for any more may end in an error: seen here, not logged as never retrieved."""
    if not round_trip.cancelled():
        round_trip.exception()


class _Replay:
    """State of one :meth:`Bus.replay`: folds each message in, notices the end and failures."""

    def __init__(self, stream: StreamName, fold: Callable[[Received], None],
                 on_invalid: Callable[[Msg, Refused], None] | None, target: int | None, component: str) -> None:
        self.stream = stream
        self.fold = fold
        self.component = component
        self.on_invalid = on_invalid
        self.target = target
        self.last_sequence = 0
        self.count = 0
        self.done = asyncio.Event()
        self.failure: BaseException | None = None
        self._slice_ends = time.perf_counter() + SLICE

    async def on_message(self, message: Msg) -> None:
        if self.done.is_set():
            return
        if time.perf_counter() >= self._slice_ends:
            # The client hands over every buffered message without the loop turning in between: tens of
            # thousands at start would hold timers, round trips and the server's pings for seconds.
            await asyncio.sleep(0)  # one turn of the loop per slice of folding, not a poll
            self._slice_ends = time.perf_counter() + SLICE
        metadata = message.metadata
        sequence = metadata.sequence.stream
        received = read_stream_message(message, component=self.component)
        if isinstance(received, Refused):
            try:
                stop_at_newer_schema(self.stream, received, subject=message.subject, sequence=sequence,
                                     component=self.component)
            except NewerSchema as stop:  # surfaced by replay(): the replay ends before this message
                self.failure = stop
                self.done.set()
                return
            if self.on_invalid:
                self.on_invalid(message, received)
        else:
            try:
                self.fold(received)
            except Exception as error:  # surfaced by replay(), not swallowed by the client
                self.failure = error
                self.done.set()
                return
        self.count += 1
        self.last_sequence = sequence
        if metadata.num_pending == 0 or (self.target is not None and sequence >= self.target):
            self.done.set()


def filtered_consumer_name(subjects: Sequence[str]) -> str | None:
    """A new name for an ephemeral consumer of one literal subject; None (the server names it) otherwise.

    The client creates a named consumer with one filter on ``CONSUMER.CREATE.<stream>.<name>.<filter>``:
    the filter is in the request's subject, which the server checks against the configuration, so NATS
    permissions can grant reading one subject of a stream alone (an announcer's own Node in ``K8S``, see
    ``permissions.py``). Unnamed, the subject names no filter. Named only for a literal subject: nats-py's
    ordered consumer makes its consumer again under the same name after a gap or missed heartbeats, which
    the server refuses (its start cannot change), so that replay stalls and fails as retryable; a replay of
    one literal subject is a message or a few, a wildcard's may be a whole stream."""
    if len(subjects) != 1 or any(token in ("*", ">") for token in subjects[0].split(".")):
        return None
    return NUID().next().decode()


def _headers(
    msg_id: str | None, expected_last_sequence: int | None, expected_last_subject_sequence: int | None
) -> dict[str, str]:
    headers: dict[str, str] = {}
    if msg_id is not None:
        headers[Header.MSG_ID] = msg_id
    if expected_last_sequence is not None:
        headers[Header.EXPECTED_LAST_SEQUENCE] = str(expected_last_sequence)
    if expected_last_subject_sequence is not None:
        headers[Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected_last_subject_sequence)
    inject_context(headers)
    return headers


def stream_config(spec: StreamSpec, replicas: int) -> api.StreamConfig:
    """The JetStream configuration of one of metalbus's streams."""
    return api.StreamConfig(
        name=spec.name.value,
        description=spec.description,
        subjects=list(spec.subjects),
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=replicas,
        max_msgs_per_subject=spec.per_subject,
        max_msgs=spec.max_msgs,
        max_age=spec.max_age_seconds,
        duplicate_window=spec.duplicate_window_seconds,
        max_bytes=spec.max_bytes,
        discard=api.DiscardPolicy.NEW if spec.discard_new else api.DiscardPolicy.OLD,
        deny_delete=spec.sealed_history,
        deny_purge=spec.sealed_history,
        allow_direct=True,
    )


def redacted(url: str) -> str:
    """``url`` (one or several, comma-separated) with any password replaced, for logs and messages."""
    return ",".join(_USERINFO_PASSWORD.sub(r"\1***@", part) for part in url.split(","))


_USERINFO_PASSWORD = re.compile(r"^([a-z]+://[^:/@]*:)[^@]*@")


def connection_options(settings: BusSettings) -> dict[str, Any]:
    """nats-py's options for who we are on the bus: credentials, the private inbox, TLS."""
    options: dict[str, Any] = {}
    user = settings.user or _url_user(settings.url)
    if settings.user is not None:
        options["user"] = settings.user
    if settings.password_file is not None:
        path = Path(settings.password_file)
        options["password"] = lambda: path.read_text().strip()
    elif settings.user is None:
        options |= _url_credentials(settings.url)
    if user:
        options["inbox_prefix"] = inbox_prefix(user)
    if settings.tls_ca_file is not None:
        options["tls"] = ssl.create_default_context(cafile=settings.tls_ca_file)
    return options


def server_urls(url: str) -> list[str]:
    """The servers of ``url``: one, or several comma-separated (every server of a cluster)."""
    return [part.strip() for part in url.split(",") if part.strip()]


def _url_user(url: str) -> str | None:
    parsed = urlsplit(url.split(",")[0].strip())
    return unquote(parsed.username) if parsed.username else None


def _url_credentials(url: str) -> dict[str, str]:
    """The user and password of ``url`` as options, so that every server is given them — those the cluster
    advertises too (nats-py would reconnect to those without credentials, and be refused)."""
    parsed = urlsplit(url.split(",")[0].strip())
    if parsed.username is None or parsed.password is None:
        return {}
    return {"user": unquote(parsed.username), "password": unquote(parsed.password)}
