"""Follow a stream live from a sequence, for readers that keep their own position.

An ordered push consumer (no acks; the client recreates it from the last delivered sequence after
a gap, a reconnect or a server restart, so nothing is skipped) hands messages to a buffer;
``fetch`` takes them off in batches. ipam folds streams into memory and the announcers follow
placements this way: a restart rebuilds from the stream itself, so nothing needs acknowledging.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import weakref
from collections.abc import Callable, Sequence

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api

from schemas.refusal import Refused
from services.common.bus import Bus, Received
from services.common.inbound import read_stream_message
from services.common.subjects import StreamName

log = logging.getLogger(__name__)


class Follower:
    def __init__(
        self,
        bus: Bus,
        stream: StreamName,
        *,
        start_sequence: int,
        subjects: Sequence[str] = (),
        on_invalid: Callable[[Msg, Refused], None] | None = None,
    ) -> None:
        self._bus = bus
        self._stream = stream
        self._subjects = list(subjects)
        #: The sequence after the last one handed out (or skipped as invalid).
        self.next_sequence = max(start_sequence, 1)
        self._on_invalid = on_invalid
        self._subscription: Subscription | None = None
        self._buffer: collections.deque[Msg] = collections.deque()
        self._arrived = asyncio.Event()
        self._stale = False
        myself = weakref.ref(self)  # the bus must not keep a closed follower alive

        def on_reconnect() -> None:
            follower = myself()
            if follower is not None:
                follower._mark_stale()

        bus.on_reconnect(on_reconnect)

    def _mark_stale(self) -> None:
        """After a reconnection the server may have lost the consumer: recreate it from our position."""
        self._stale = True
        self._arrived.set()

    async def _on_message(self, message: Msg) -> None:
        self._buffer.append(message)
        self._arrived.set()

    async def _subscribe(self) -> None:
        if self._stale:
            self._stale = False
            await self.close()
        if self._subscription is not None:
            return
        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.next_sequence,
            filter_subjects=self._subjects if len(self._subjects) > 1 else None,
        )
        self._subscription = await self._bus.js.subscribe(
            self._subjects[0] if len(self._subjects) == 1 else ">",
            stream=self._stream.value,
            cb=self._on_message,
            ordered_consumer=True,
            config=config,
        )

    async def fetch(self, *, batch: int = 500, wait: float = 0.25) -> list[Received]:
        """The next messages (up to ``batch``), waiting at most ``wait`` seconds for the first one."""
        try:
            await self._subscribe()
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
            log.warning("follower cannot subscribe stream=%s next=%d error=%r", self._stream.value,
                        self.next_sequence, error)
            return []
        if not self._buffer:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                return []
            if self._stale:
                return []  # re-subscribe on the next call
        received: list[Received] = []
        while self._buffer and len(received) < batch:
            message = self._buffer.popleft()
            metadata = message.metadata
            sequence = metadata.sequence.stream
            if sequence < self.next_sequence:
                continue  # a redelivery after the consumer was recreated
            self.next_sequence = sequence + 1
            read = read_stream_message(message, component=self._bus.component)
            if isinstance(read, Refused):
                if self._on_invalid:
                    self._on_invalid(message, read)
                continue
            received.append(read)
        return received

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        self._buffer.clear()
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except (nats.errors.Error, nats.js.errors.Error) as error:
                log.debug("follower unsubscribe failed error=%r", error)
