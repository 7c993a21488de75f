"""Whether this announcer still has the bus: its own heartbeats coming back through the server.

The NATS client notices a dead TCP path only after minutes of missed pings; a heartbeat goes out about every
100 ms, so an echo older than `stale_after` (less than the ipam's liveness timeout) means the ipam no longer
hears this node either. Timer-driven (no polling): each echo re-arms one timer; when it fires, `on_lost`; the
first echo after that, `on_back`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from services.announcer.agents.layer2_ownership import Connectivity, connectivity


class EchoWatch:
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
        self.back = asyncio.Event()  # set while the echo comes back
        self._clock = clock
        self._on_lost = on_lost
        self._on_back = on_back
        self._last: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def heard(self) -> None:
        """Our own heartbeat came back (or the connection was just made)."""
        self._last = self._clock()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.stale_after, self._stale)
        self.back.set()
        if self.partitioned:
            self.partitioned = False
            self._on_back()

    def connectivity(self, *, connected: bool) -> Connectivity:
        """Now, also between timer ticks: the client must be connected and the last echo recent."""
        if self.partitioned:
            return Connectivity.PARTITIONED
        return connectivity(connected=connected, last_echo=self._last, now=self._clock(), stale_after=self.stale_after)

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
