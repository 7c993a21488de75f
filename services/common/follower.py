"""Follow a stream live from a sequence, for readers that keep their own position.

An ordered push consumer (no acks, one delivery at a time in order, the server's idle heartbeats and
flow control) hands messages to a buffer; ``fetch`` takes them off in batches. ipam folds streams into
memory and the announcers follow placements this way: a restart rebuilds from the stream itself, so
nothing needs acknowledging.

What waits to be fetched is bounded: a flow control request that arrives with ``max_buffered`` messages
or more waiting is answered only once ``fetch`` has taken them below that, so the server holds back the
rest (in its stream, not in this process's memory: a burst of 100 000 observations is not 100 000
messages here) and never has a pile of deliveries to push that a busy reader is slow to read.

The follower keeps its own consumer alive. It is made again from the position reached (so nothing is
skipped, nothing handed out twice) when the connection comes back (the server may have lost it), when
a delivery is missing (a gap), or when neither a message nor a heartbeat came for ``MISSED_HEARTBEATS``
heartbeats (its server is gone while this connection lives on). A consumer that cannot be made (no
answer, a stream electing its leader) is tried again with backoff until it is. A stream found made again
since it was first followed (another creation time, or fewer messages than were read) cannot be followed
on: ``fetch`` raises :class:`StreamReplaced`, and the reader reads the stream again from the start. While it
does not follow it says so: a warning, ``metalbus_followers_lapsed{component,stream}``, and, given the
service's ``Health``, not ready.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import logging
import time
import weakref
from collections.abc import Callable, Sequence
from enum import StrEnum

import nats.errors
from nats.aio.msg import Msg
from nats.js import api
from prometheus_client import Counter, Gauge

from schemas.refusal import Refused
from services.common.bus import Bus, Received, delivery_position, filtered_consumer_name
from services.common.errors import MetalbusError, NewerSchema, StreamReplaced
from services.common.health import Health
from services.common.inbound import read_stream_message, stop_at_newer_schema
from services.common.nats_errors import translated
from services.common.subjects import StreamName
from services.common.subscription import Subscription
from services.common.supervision import Backoff

log = logging.getLogger(__name__)

#: Seconds between the idle heartbeats the server sends on a quiet consumer.
HEARTBEAT = 1.0
#: Heartbeats missed in a row (nor any message) after which the consumer is taken for gone.
MISSED_HEARTBEATS = 3
#: Pauses between attempts to make the consumer again (0.1 s doubling to 5 s).
RESUBSCRIBE_BACKOFF = Backoff(limit=5.0)
#: The server's status of heartbeats and flow control requests.
_CONTROL_STATUS = "100"

LAPSED = Gauge(
    "metalbus_followers_lapsed",
    "Followers of a stream not following it now (their consumer lost or being made again)",
    ["component", "stream"],
)
LAPSES = Counter(
    "metalbus_follower_lapses_total",
    "Times a follower stopped following its stream, by why (then it makes its consumer again)",
    ["component", "stream", "reason"],
)


#: Messages a follower holds before it holds back the server's flow control (a few batches' worth).
MAX_BUFFERED = 2000


class Lapse(StrEnum):
    """Why a follower is not following (its consumer is made again)."""

    RECONNECTED = "reconnected"  # the connection came back: the server may have lost the consumer
    SILENT = "silent"  # neither messages nor heartbeats: the consumer (or its server) is gone
    GAP = "gap"  # a delivery is missing
    REFUSED = "refused"  # the consumer could not be made
    REPLACED = "replaced"  # the stream was made again: the reader reads it from the start


class Follower:
    def __init__(
        self,
        bus: Bus,
        stream: StreamName,
        *,
        start_sequence: int,
        subjects: Sequence[str] = (),
        on_invalid: Callable[[Msg, Refused], None] | None = None,
        health: Health | None = None,
        max_buffered: int = MAX_BUFFERED,
        skim: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        """``skim(subject, body)``: True for a message its reader needs nothing of (as ``Bus.read``'s), which
        ``fetch`` then passes over unread (no model built, no trace context read)."""
        self._bus = bus
        self._skim = skim
        self._max_buffered = max_buffered
        #: A flow control request held back while the buffer is full (answered when it drains).
        self._held_flow_control: str | None = None
        self._stream = stream
        self._subjects = list(subjects)
        #: The sequence after the last one handed out (or skipped as invalid).
        self.next_sequence = max(start_sequence, 1)
        self._on_invalid = on_invalid
        self._health = health
        self._subscription: Subscription | None = None
        #: The name the server gave the current consumer.
        self.consumer: str | None = None
        self._generation = 0  # of the subscription: deliveries to an earlier one are dropped
        self._delivered = 0  # the consumer's sequence of the last delivery taken
        self._heard = 0.0  # monotonic time of the last delivery or heartbeat
        self._buffer: collections.deque[Msg] = collections.deque()
        self._arrived = asyncio.Event()
        self._lapse: Lapse | None = None
        self._counted = False  # in metalbus_followers_lapsed
        self._failures = 0  # attempts to make the consumer that failed in a row
        self._retry_at = 0.0
        self._since = time.monotonic()  # when it stopped following (or was made)
        self._created: datetime.datetime | None = None  # when the stream followed was made (its identity)
        self._closed = False
        myself = weakref.ref(self)  # the bus must not keep a closed follower alive

        def on_reconnect() -> None:
            follower = myself()
            if follower is None:
                return
            if follower.following:
                follower._lose(Lapse.RECONNECTED, "the connection came back")
            else:  # waiting to try again: a connection back is worth trying at once
                follower._retry_at = 0.0
                follower._arrived.set()

        bus.on_reconnect(on_reconnect)

    @property
    def following(self) -> bool:
        """Whether the stream is followed live now (not before the first ``fetch``)."""
        return self._subscription is not None and self._lapse is None

    def not_following_for(self) -> float:
        """Seconds since the stream was last followed (since this follower was made, if never); 0 while it is."""
        return 0.0 if self.following else time.monotonic() - self._since

    async def fetch(self, *, batch: int = 500, wait: float = 0.25) -> list[Received]:
        """The next messages (up to ``batch``), waiting at most ``wait`` seconds for the first one. A closed
        follower hands out nothing (and makes no consumer again)."""
        if self._closed:
            await asyncio.sleep(wait)  # as long as a fetch may wait: a reader looping on it does not spin
            return []
        if not await self._follow():
            with contextlib.suppress(TimeoutError):  # the next attempt, unless told to stop waiting
                await asyncio.wait_for(self._arrived.wait(), max(0.0, min(wait, self._retry_at - time.monotonic())))
            self._arrived.clear()
            return []
        if not self._buffer:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), wait)
            if not self._buffer or self._lapse is not None:
                self._check_heard()
                return []
        else:  # a reader draining a backlog batch after batch lets the loop turn between batches
            await asyncio.sleep(0)
        received: list[Received] = []
        while self._buffer and len(received) < batch:
            message = self._buffer.popleft()
            sequence = delivery_position(message).stream
            if sequence < self.next_sequence:
                continue  # delivered again by a consumer made again
            self.next_sequence = sequence + 1
            if self._skim is not None and self._skim(message.subject, message.data):
                continue
            read = read_stream_message(message, component=self._bus.component)
            if isinstance(read, Refused):
                try:
                    stop_at_newer_schema(self._stream, read, subject=message.subject, sequence=sequence,
                                         component=self._bus.component)
                except NewerSchema:
                    # stop at it, kept first in line: what came before is handed out, each later fetch raises
                    self._buffer.appendleft(message)
                    self.next_sequence = sequence
                    if not received:
                        raise
                    break
                if self._on_invalid:
                    self._on_invalid(message, read)
                continue
            received.append(read)
        if self._held_flow_control is not None and len(self._buffer) < self._max_buffered:
            held, self._held_flow_control = self._held_flow_control, None
            await self._answer_flow_control(held)
        return received

    async def close(self) -> None:
        """Stop following for good (a closed follower holds no readiness back)."""
        self._closed = True
        await self._drop()
        self._lapse = None
        self._count_lapsed(False)
        if self._health is not None:
            self._health.set_ready(self._check_name, True)

    async def _drop(self) -> None:
        """Unsubscribe, and ask the server to delete the consumer now rather than after its inactivity
        threshold (without waiting for the answer: a lost server cannot hold this up). What was delivered
        and not handed out yet is delivered again to the next consumer."""
        self._generation += 1
        subscription, self._subscription = self._subscription, None
        consumer, self.consumer = self.consumer, None
        self._buffer.clear()
        self._held_flow_control = None
        try:
            if subscription is not None:
                await subscription.close()
            if consumer is not None:
                with translated(f"delete consumer {self._stream.value}/{consumer}"):
                    await self._bus.client.publish(f"$JS.API.CONSUMER.DELETE.{self._stream.value}.{consumer}")
        except MetalbusError as error:
            log.debug("follower unsubscribe failed stream=%s error=%r", self._stream.value, error)

    # --- keeping the consumer alive ---------------------------------------------------------

    async def _follow(self) -> bool:
        """Whether the consumer is there and heard from; made (again) when due."""
        self._check_heard()
        if self.following:
            return True
        if time.monotonic() < self._retry_at:
            return False
        lapsed = self._lapse is not None
        try:
            await self._subscribe()
        except StreamReplaced:
            raise
        except MetalbusError as error:
            self._failures += 1
            delay = RESUBSCRIBE_BACKOFF.delay(self._failures)
            self._retry_at = time.monotonic() + delay
            self._lose(Lapse.REFUSED, f"cannot make its consumer: {error}", retry_in=delay)
            return False
        self._failures = 0
        if lapsed:
            log.info("follower following again stream=%s next=%d", self._stream.value, self.next_sequence)
        if self._health is not None:
            self._health.set_ready(self._check_name, True)
        return True

    async def _subscribe(self) -> None:
        """A new consumer delivering from ``next_sequence`` to a new inbox (the previous one dropped)."""
        await self._drop()
        await self._check_same_stream()
        generation = self._generation
        self._delivered = 0
        inbox = self._bus.client.new_inbox()
        subscription = await self._bus.subscribe(inbox, cb=functools.partial(self._on_message, generation))
        config = api.ConsumerConfig(
            deliver_subject=inbox,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.next_sequence,
            ack_policy=api.AckPolicy.NONE,
            max_deliver=1,
            flow_control=True,
            idle_heartbeat=HEARTBEAT,
            mem_storage=True,
            num_replicas=1,
            filter_subject=self._subjects[0] if len(self._subjects) == 1 else None,
            filter_subjects=self._subjects if len(self._subjects) > 1 else None,
            name=filtered_consumer_name(self._subjects),  # permissions may grant one subject alone
        )
        try:
            with translated(f"follow {self._stream.value}"):
                info = await self._bus.js.add_consumer(self._stream.value, config)
        except BaseException:
            with contextlib.suppress(MetalbusError):
                await subscription.close()
            raise
        self._subscription = subscription
        self.consumer = info.name
        if self._closed:  # closed while the consumer was being made: it is given up at once
            await self._drop()
            return
        self._heard = time.monotonic()
        self._lapse = None
        self._count_lapsed(False)

    async def _check_same_stream(self) -> None:
        """Raise :class:`StreamReplaced` when the stream is not the one followed so far."""
        with translated(f"stream info {self._stream.value}"):
            info = await self._bus.js.stream_info(self._stream.value)
        last = int(info.state.last_seq)
        if self._created is None:
            self._created = info.created
        if info.created != self._created or last < self.next_sequence - 1:
            self._lose(Lapse.REPLACED, f"the stream was made again (it ends at {last})")
            raise StreamReplaced(f"{self._stream.value} was made again: it ends at {last}, "
                                 f"{self.next_sequence - 1} were read")

    async def _on_message(self, generation: int, message: Msg) -> None:
        if generation != self._generation:
            return  # a delivery to a consumer given up
        self._heard = time.monotonic()
        headers = message.headers or {}
        if headers.get(api.Header.STATUS) == _CONTROL_STATUS:
            await self._on_control(headers, message.reply)
            return
        try:
            delivered = delivery_position(message).consumer
        except (nats.errors.Error, ValueError, IndexError):
            return  # not a delivery of the consumer
        if delivered != self._delivered + 1:
            self._lose(Lapse.GAP, f"delivery {delivered} after {self._delivered}")
            return
        self._delivered = delivered
        self._buffer.append(message)
        self._arrived.set()

    async def _on_control(self, headers: dict[str, str], reply: str) -> None:
        """A heartbeat (which names the last delivery: one missing is a gap) or a flow control request
        (answered at once: whatever came before it is in the buffer already)."""
        if reply:
            await self._flow_control(reply)
            return
        stalled = headers.get(api.Header.CONSUMER_STALLED)
        if stalled:
            await self._flow_control(stalled)
        last = headers.get(api.Header.LAST_CONSUMER)
        if last is not None and last != str(self._delivered):
            self._lose(Lapse.GAP, f"the server delivered up to {last}, {self._delivered} arrived")

    async def _flow_control(self, subject: str) -> None:
        """Let the server send more now, or once ``fetch`` has taken the buffer below ``max_buffered``."""
        if len(self._buffer) >= self._max_buffered:
            self._held_flow_control = subject
            return
        self._held_flow_control = None
        await self._answer_flow_control(subject)

    async def _answer_flow_control(self, subject: str) -> None:
        try:
            with translated(f"flow control of {self._stream.value}"):
                await self._bus.client.publish(subject, b"")
        except MetalbusError as error:  # unanswered, the consumer stalls: its heartbeats ask again
            log.debug("flow control answer failed stream=%s error=%r", self._stream.value, error)

    def _check_heard(self) -> None:
        silence = time.monotonic() - self._heard
        if self.following and silence > HEARTBEAT * MISSED_HEARTBEATS:
            self._lose(Lapse.SILENT, f"nothing heard for {silence:.1f} s")

    def _lose(self, lapse: Lapse, reason: str, *, retry_in: float = 0.0) -> None:
        """Stop following: the consumer is made again at the next ``fetch`` (after ``retry_in``)."""
        LAPSES.labels(component=self._bus.component, stream=self._stream.value, reason=lapse.value).inc()
        log.warning("follower not following stream=%s reason=%s next=%d retry_in_s=%.1f detail=%s",
                    self._stream.value, lapse.value, self.next_sequence, retry_in, reason)
        if self._health is not None:
            self._health.set_ready(self._check_name, False, reason)
        if self.following:
            self._since = time.monotonic()
        self._lapse = lapse
        self._count_lapsed(True)
        self._generation += 1  # what the lost consumer still delivers is dropped
        self._arrived.set()

    def _count_lapsed(self, lapsed: bool) -> None:
        """Keep this follower counted in ``metalbus_followers_lapsed`` exactly while it is lapsed."""
        if lapsed != self._counted:
            self._counted = lapsed
            LAPSED.labels(component=self._bus.component, stream=self._stream.value).inc(1 if lapsed else -1)

    @property
    def _check_name(self) -> str:
        """The readiness check of this follower (the subjects tell two followers of a stream apart)."""
        return " ".join(["following", self._stream.value, *self._subjects])
