"""A plain (not stored) NATS subscription, as :meth:`services.common.bus.Bus.subscribe` hands it out:
its client errors come out as the project's (:mod:`services.common.errors`)."""

from __future__ import annotations

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from services.common.errors import RequestTimeout
from services.common.nats_errors import translated


class Subscription:
    def __init__(self, raw: NatsSubscription, *, subject: str) -> None:
        self._raw = raw
        self.subject = subject

    @property
    def pending(self) -> int:
        """Messages received and not taken yet."""
        return self._raw.pending_msgs

    async def next(self, *, wait: float | None) -> Msg | None:
        """The next message, or None when none arrived within ``wait`` seconds (None: wait for one).
        Raises :class:`~services.common.errors.ConnectionClosed` once the connection is closed."""
        try:
            with translated(f"next message on {self.subject}"):
                return await self._raw.next_msg(timeout=wait)
        except RequestTimeout:
            return None

    async def settled(self) -> None:
        """Every message received so far has been handed to the callback and handled (a subscription
        with a callback only)."""
        await self._raw._pending_queue.join()

    async def close(self) -> None:
        """Stop receiving."""
        with translated(f"unsubscribe from {self.subject}"):
            await self._raw.unsubscribe()
