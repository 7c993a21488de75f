"""Whether this announcer still has the bus: a PING/PONG round trip with its server every `ROUND_TRIP_EVERY`.

The NATS client notices a dead TCP path only after minutes of missed pings; a round trip with the server
goes out every 100 ms, so no answer for `stale_after` (0.3 s: less than the second after which the server
closes a silent connection and the ipam moves this node's IPs) means the ipam no longer hears this node
either. Timer-driven (no polling): each answer re-arms one timer; when it fires, `on_lost`; the first
answer after that, `on_back`.

A missing answer is judged only after the loop has had a turn to read it. When the timer fires late (the
loop was held: a long fold, a loaded machine) by more than `LATE_FRACTION` of the window, the answer may be
sitting unread in the socket's buffer (I/O is read on the turn after a late timer fires): the window is
re-armed from now instead, and the silence counts only if it lasts a window of a loop that wakes on time.
The same when the loop was that late at any point of the window (the round trip task's own wakeups, told
by `loop_was_late`): a stall in the middle of the window delays the next round trip's send and its answer
though the timer then fires on time.
Likewise when messages from the server arrived during the window (`heard`, the client's count of messages
received): the server is talking to this node, and its answer waits behind what it sent (tens of thousands
of placements and BGP decisions at a cold start, on a loaded machine). That holds however long it lasts:
nothing arrives through a cut, and a connection that can no longer reach the server falls silent to the server,
which closes it within 1.5 s (its pings unanswered), after which nothing arrives either. A real cut with a free
loop is still told `stale_after` after the last answer, or after the last message read.

Putting the judgement off for the loop's delay is bounded. Once the silence is longer than `stale_after` +
`PUT_OFF_AT_MOST` (1.5 s), the window armed is the last: when it ends, the silence is judged however late the
loop (a loop held once, for however long, still reads the waiting answer within that last window), unless
the server's messages arrived during it. So a loop permanently late — every timer more than a third of its
window behind, for good — with nothing arriving has a real cut declared within about 2 s, where before it was
put off for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from services.announcer.agents.layer2_ownership import Connectivity, connectivity
from services.common.bus import Bus
from services.common.errors import MetalbusError

log = logging.getLogger(__name__)

#: How often the announcer begins a round trip with its server.
ROUND_TRIP_EVERY = 0.1
#: How long a round trip's answer is waited for (seconds), and how many may wait at once.
ANSWER_WITHIN = 1
MOST_IN_FLIGHT = 20

#: How often the announcer's NATS client pings its server besides (``BusSettings.keepalive``): the round trips
#: above already tell the server every 100 ms that this node is there, so that the server does not judge it by
#: pings of its own while the answers wait behind a burst of placements; 5 000 nodes pinging twice as often
#: would only double the server's work.
CLIENT_KEEPALIVE = 1.0

#: A timer that fires later than this fraction of its window woke on a held loop: it is re-armed.
LATE_FRACTION = 1 / 3

#: Seconds of silence beyond `stale_after` after which a window is judged, however late the loop: by then the
#: server has closed a connection that silent (5 pings of 250 ms unanswered) and the ipam has moved its IPs.
PUT_OFF_AT_MOST = 1.2


class BusContact:
    def __init__(
        self,
        *,
        stale_after: float,
        clock: Callable[[], float],
        on_lost: Callable[[], None],
        on_back: Callable[[], None],
        heard: Callable[[], int] = lambda: 0,
        put_off_at_most: float = PUT_OFF_AT_MOST,
    ) -> None:
        self.stale_after = stale_after
        self.put_off_at_most = put_off_at_most
        self.partitioned = False
        self.back = asyncio.Event()  # set while the server answers
        self._clock = clock
        self._on_lost = on_lost
        self._on_back = on_back
        self._last: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._heard = heard
        self._due = 0.0  # when the timer should fire, on `clock`
        self._heard_when_armed = 0
        self._last_window = False  # the window armed is judged whatever the loop's delay
        self._lag_in_window = 0.0  # the loop's largest lag seen during the window armed (seconds)
        self.late_wakeups = 0  # expiries put off because the loop woke late
        self.heard_meanwhile = 0  # expiries put off because the server's messages arrived meanwhile

    def answered(self) -> None:
        """The server answered a round trip (or the connection was just made)."""
        self._last = self._clock()
        self._last_window = False
        self._arm()
        self.back.set()
        if self.partitioned:
            self.partitioned = False
            self._on_back()

    def connectivity(self, *, connected: bool) -> Connectivity:
        """Now, also between timer ticks: the client must be connected and the last answer recent (or the
        window re-armed after a held loop recent: that silence is not judged yet)."""
        if self.partitioned:
            return Connectivity.PARTITIONED
        window_start = None if self._last is None else self._due - self.stale_after
        return connectivity(
            connected=connected, last_contact=window_start, now=self._clock(), stale_after=self.stale_after
        )

    def loop_was_late(self, lag: float) -> None:
        """A wakeup of the round trip task came ``lag`` seconds late: the loop was held meanwhile."""
        self._lag_in_window = max(self._lag_in_window, lag)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._due = self._clock() + self.stale_after
        self._heard_when_armed = self._heard()
        self._lag_in_window = 0.0
        self._timer = asyncio.get_running_loop().call_later(self.stale_after, self._stale)

    def _loop_was_held(self) -> bool:
        """Whether the answer may be waiting unread behind the loop's own delay."""
        lag = max(self._clock() - self._due, self._lag_in_window)
        if lag > self.stale_after * LATE_FRACTION:
            self.late_wakeups += 1
            log.info("round trip judged later lag_ms=%.0f window_ms=%.0f", lag * 1000, self.stale_after * 1000)
            return True
        return False

    def _server_talked(self) -> bool:
        """Whether the server's messages arrived during the window: its answer is behind them."""
        if self._heard() != self._heard_when_armed:
            self.heard_meanwhile += 1
            log.debug("round trip judged later reason=server_messages_arrived")
            return True
        return False

    def _past_bound(self) -> bool:
        """Silent for longer than the judgement may be put off."""
        return self._last is not None and self._clock() - self._last > self.stale_after + self.put_off_at_most

    def _stale(self) -> None:
        self._timer = None
        if self._last_window:
            if self._server_talked():  # nothing arrives through a cut: the last window again
                self._arm()
                return
        elif self._loop_was_held() or self._server_talked():
            self._last_window = self._past_bound()
            if self._last_window:
                log.info("round trip judged at the end of a last window silence_ms=%.0f",
                         (self._clock() - (self._last or 0.0)) * 1000)  # fmt: skip
            self._arm()
            return
        if not self.partitioned:
            self.partitioned = True
            self.back.clear()
            self._on_lost()


async def keep_in_contact(bus: Bus, contact: BusContact, *, every: float = ROUND_TRIP_EVERY) -> None:
    """A round trip with the server begun every ``every`` seconds, each answer told to ``contact``; runs until
    cancelled. One is begun every period even while earlier ones wait for their answers (at most
    ``MOST_IN_FLIGHT``, each waited for ``ANSWER_WITHIN`` at most): the PINGs going out every 100 ms tell the
    server this node is there while the answers wait behind a burst of deliveries. A round trip that waited
    for the one before sent nothing for as long as that answer took, and the server closes as stale a client
    it has not heard from while its own pings go unanswered for 1.25 s."""
    loop = asyncio.get_running_loop()
    in_flight: set[asyncio.Future[None]] = set()

    def told(round_trip: asyncio.Future[None]) -> None:
        in_flight.discard(round_trip)
        if round_trip.cancelled():
            return
        error = round_trip.exception()
        if error is None:
            contact.answered()
        elif isinstance(error, MetalbusError):  # disconnected or unanswered: the timer tells, not this
            log.debug("round trip with the bus failed error=%r", error)
        else:
            log.warning("round trip with the bus failed error=%r", error)

    try:
        while True:
            due = loop.time() + every
            if len(in_flight) < MOST_IN_FLIGHT:
                round_trip: asyncio.Future[None] = asyncio.ensure_future(bus.flush(within=ANSWER_WITHIN))
                in_flight.add(round_trip)
                round_trip.add_done_callback(told)
            await asyncio.sleep(max(due - loop.time(), 0.0))  # the round trips' period, not a poll
            contact.loop_was_late(loop.time() - due)
    finally:
        for round_trip in list(in_flight):
            round_trip.cancel()
