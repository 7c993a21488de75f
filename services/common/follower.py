"""Follow a stream live from a sequence: an ack-less, ephemeral pull consumer that survives restarts.

Used where the reader keeps its own position (ipam folds streams into memory; a restart rebuilds
from the stream itself), so nothing needs acknowledging. If the consumer vanishes (server restart,
inactivity), it is recreated from the sequence after the last one delivered: nothing is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from schemas.events.codec import InvalidEvent, decode
from services.common.bus import Bus, Received
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
        on_invalid: Callable[[Msg, InvalidEvent], None] | None = None,
    ) -> None:
        self._bus = bus
        self._stream = stream
        self._subjects = list(subjects)
        self.next_sequence = max(start_sequence, 1)
        self._on_invalid = on_invalid
        self._subscription: JetStreamContext.PullSubscription | None = None

    async def _subscribe(self) -> JetStreamContext.PullSubscription:
        if self._subscription is None:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.next_sequence,
                ack_policy=api.AckPolicy.NONE,
                filter_subjects=self._subjects or None,
                inactive_threshold=60.0,
                mem_storage=True,
            )
            self._subscription = await self._bus.js.pull_subscribe("", stream=self._stream.value, config=config)
        return self._subscription

    async def fetch(self, *, batch: int = 500, wait: float = 0.25) -> list[Received]:
        """The next messages (up to ``batch``), waiting at most ``wait`` seconds for the first one."""
        try:
            subscription = await self._subscribe()
            messages = await subscription.fetch(batch, timeout=wait)
        except TimeoutError:  # nats-py raises both flavours
            return []
        except (nats.js.errors.NotFoundError, nats.errors.ConnectionClosedError, nats.js.errors.APIError) as error:
            log.warning("follower lost its consumer stream=%s next=%d error=%r", self._stream.value,
                        self.next_sequence, error)
            await self.close()
            return []
        received: list[Received] = []
        for message in messages:
            metadata = message.metadata
            sequence = metadata.sequence.stream
            if sequence < self.next_sequence:
                continue  # a redelivery after re-subscribing
            self.next_sequence = sequence + 1
            try:
                envelope = decode(message.data)
            except InvalidEvent as error:
                if self._on_invalid:
                    self._on_invalid(message, error)
                continue
            received.append(
                Received(
                    subject=message.subject,
                    sequence=sequence,
                    envelope=envelope,
                    headers=dict(message.headers or {}),
                    time=metadata.timestamp,
                )
            )
        return received

    async def close(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except (nats.errors.Error, nats.js.errors.Error) as error:
                log.debug("follower unsubscribe failed error=%r", error)
