"""Whether this announcer still has the bus: a PING/PONG round trip with its server every `ROUND_TRIP_EVERY`.

The NATS client notices a dead TCP path only after minutes of missed pings; a round trip with the server
goes out every 100 ms, so no answer for `stale_after` (0.3 s: less than the second after which the server
closes a silent connection and the ipam moves this node's IPs) means the ipam no longer hears this node
either. Timer-driven (no polling): each answer re-arms one timer; when it fires, `on_lost`; the first
answer after that, `on_back`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from services.announcer.agents.layer2_ownership import Connectivity, connectivity
from services.common.bus import Bus
from services.common.errors import MetalbusError

log = logging.getLogger(__name__)

#: How often the announcer makes a round trip with its server.
ROUND_TRIP_EVERY = 0.1


class BusContact:
    def __init__(
        self,
        *,
        stale_after: float,
        clock: Callable[[], float],
        on_lost: Callable[[], None],
        on_back: Callable[[], None],
    ) -> None:
        self.stale_after = stale_after
        self.partitioned = False
        self.back = asyncio.Event()  # set while the server answers
        self._clock = clock
        self._on_lost = on_lost
        self._on_back = on_back
        self._last: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def answered(self) -> None:
        """The server answered a round trip (or the connection was just made)."""
        self._last = self._clock()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.stale_after, self._stale)
        self.back.set()
        if self.partitioned:
            self.partitioned = False
            self._on_back()

    def connectivity(self, *, connected: bool) -> Connectivity:
        """Now, also between timer ticks: the client must be connected and the last answer recent."""
        if self.partitioned:
            return Connectivity.PARTITIONED
        return connectivity(connected=connected, last_contact=self._last, now=self._clock(),
                            stale_after=self.stale_after)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stale(self) -> None:
        self._timer = None
        if not self.partitioned:
            self.partitioned = True
            self.back.clear()
            self._on_lost()


async def keep_in_contact(bus: Bus, contact: BusContact, *, every: float = ROUND_TRIP_EVERY) -> None:
    """A round trip with the server every ``every`` seconds, each answer told to ``contact``; runs until
    cancelled. A round trip that takes long delays the next one: never more than one is in flight."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await bus.flush(within=1)
        except MetalbusError as error:  # disconnected or unanswered: the timer tells, not this
            log.debug("round trip with the bus failed error=%r", error)
        else:
            contact.answered()
        await asyncio.sleep(max(every - (loop.time() - started), 0.0))  # the round trip's period, not a poll
