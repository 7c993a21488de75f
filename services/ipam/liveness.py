"""Which announcers are live, from their heartbeats on plain NATS subjects.

``Liveness`` is the pure rule (times are passed in): a node is live from a heartbeat on, and dead
``timeout`` seconds after its last one, or at once on a ``leaving`` heartbeat (a later heartbeat of the
same announcer instance does not bring it back; a new instance does). ``LivenessWatch`` is the asyncio
shell: one task reads every announcer's heartbeat subject and, when the next node's time is up (no
polling), judges. Every replica runs one, the standby too, so a new active replica knows who is alive.

The ipam's own troubles must not look like node deaths:
- heartbeats come on a connection of their own, not queued behind a replay or a burst of observations;
- before judging, a PING/PONG round trip on that connection is a barrier: every heartbeat the server
  sent before it has been read and folded in, however busy (or starved of CPU) the process was;
- while that connection is down, every live node gets a fresh window instead;
- a majority of the live nodes falling silent at once is believed only after it lasts two more windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.msg import Msg

from schemas.refusal import Refused
from services.common.bus import Bus
from services.common.errors import ConnectionClosed, MetalbusError
from services.common.inbound import read_heartbeat
from services.common.subjects import HEARTBEATS
from services.common.subscription import Subscription
from services.common.supervision import OnFailure, supervised
from services.ipam import metrics

log = logging.getLogger(__name__)

#: Judge this much after a deadline, so the expiry it checks has surely passed.
_SLACK = 0.001


class Liveness:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._seen: dict[str, float] = {}
        self._left: dict[str, str] = {}
        self._heard: dict[str, float] = {}  # last heartbeat of every node ever heard, dead or alive
        self._suspect_since: float | None = None

    @property
    def live(self) -> frozenset[str]:
        return frozenset(self._seen)

    def heard(self, node: str, *, instance: str, leaving: bool, now: float) -> bool:
        """Fold one heartbeat in; whether the set of live nodes changed."""
        if leaving:
            self._left[node] = instance
            return self._seen.pop(node, None) is not None
        if self._left.get(node) == instance:
            return False  # a late heartbeat of an announcer that already said goodbye
        self._left.pop(node, None)
        known = node in self._seen
        self._seen[node] = self._heard[node] = now
        return not known

    def expire(self, now: float) -> list[str]:
        """Nodes silent for ``timeout`` or more: they are dead now. A majority falling silent at once
        (two or more) is more likely our own trouble (a starved process, a slow link to the server)
        than theirs: it is believed only once it has lasted twice the timeout more."""
        dead = sorted(node for node, seen in self._seen.items() if now - seen >= self.timeout)
        if len(dead) >= 2 and 2 * len(dead) > len(self._seen):
            if self._suspect_since is None:
                self._suspect_since = now
            if now - self._suspect_since < self.mass_grace:
                return []
        self._suspect_since = None
        for node in dead:
            del self._seen[node]
        return dead

    @property
    def mass_grace(self) -> float:
        return 2 * self.timeout

    def next_deadline(self) -> float | None:
        if not self._seen:
            return None
        deadline = min(self._seen.values()) + self.timeout
        if self._suspect_since is not None:
            deadline = max(deadline, self._suspect_since + self.mass_grace)
        return deadline

    def refresh(self, now: float) -> None:
        """We could not listen for a while: give every live node a fresh window."""
        for node in self._seen:
            self._seen[node] = now

    def recently_dead(self, *, since: float) -> list[str]:
        """Nodes heard since ``since`` that are dead now without having said they were leaving."""
        alive_or_left = self._seen.keys() | self._left.keys()
        return sorted(node for node, heard in self._heard.items() if heard >= since and node not in alive_or_left)

    def revive(self, now: float, *, since: float) -> None:
        """Give a fresh window to every node heard since ``since`` that did not say it was leaving (its
        silence may have been ours); the next ``expire`` after a whole window settles who is live."""
        for node, heard in self._heard.items():
            if heard >= since and node not in self._left:
                self._seen[node] = max(self._seen.get(node, now), now)


class LivenessWatch:
    def __init__(self, bus: Bus, *, timeout: float) -> None:
        self._settings = bus.settings
        self._producer = f"{bus.producer}/liveness"
        self._bus: Bus | None = None
        self.tracker = Liveness(timeout)
        #: Set whenever the live set changes; the active replica clears it when it acts.
        self.changed = asyncio.Event()
        self._deaths: dict[str, float] = {}
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        #: Loop time since which heartbeats have been heard without a break (None: not listening).
        self._listening_since: float | None = None

    @property
    def live(self) -> frozenset[str]:
        return self.tracker.live

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        self._bus = await Bus.connect(self._settings, producer=self._producer)
        self._subscription = await self._bus.subscribe(HEARTBEATS)
        self._listening_since = self.now()
        self._bus.on_reconnect(self._heartbeats_missed)
        bus, subscription = self._bus, self._subscription
        # RESTART: the reader keeps nothing the tracker does not hold, and the subscription outlives it
        # (heartbeats queue up meanwhile); a reader that died would silently stop every failover.
        self._task = supervised(lambda: self._run(bus, subscription), name="ipam-liveness",
                                on_failure=OnFailure.RESTART)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.close()
            except MetalbusError as error:
                log.debug("heartbeat unsubscribe failed error=%r", error)
        bus, self._bus = self._bus, None
        self._listening_since = None
        if bus is not None:
            await bus.close()

    def _heartbeats_missed(self) -> None:
        """The connection was down: what was heard before is no whole window any more."""
        if self._listening_since is not None:
            self._listening_since = self.now()

    async def fresh_window(self, *, memory: float = 10.0) -> None:
        """Settle who is live, on taking over. Nodes a busy standby judged dead in the last ``memory``
        seconds get one whole window to speak, and so does everyone if this replica has not heard
        heartbeats for a whole window without a break; otherwise what it heard stands, at once."""
        now = self.now()
        heard_a_window = self._listening_since is not None and now - self._listening_since > self.tracker.timeout
        if not heard_a_window or self.tracker.recently_dead(since=now - memory):
            self.tracker.revive(now, since=now - memory)
            await asyncio.sleep(self.tracker.timeout + _SLACK)  # one liveness window, not a poll
            if self._bus is not None and self._subscription is not None:
                await self._judge(self._bus, self._subscription)
        self.changed.clear()
        self._deaths.clear()
        metrics.LIVE_ANNOUNCERS.set(len(self.tracker.live))

    def take_deaths(self) -> dict[str, float]:
        """Nodes that died since the last call, each with the loop time it was noticed."""
        deaths, self._deaths = self._deaths, {}
        return deaths

    async def _run(self, bus: Bus, subscription: Subscription) -> None:
        while True:
            deadline = self.tracker.next_deadline()
            wait = None if deadline is None else max(deadline + _SLACK - self.now(), _SLACK)
            try:
                message = await subscription.next(wait=wait)
            except ConnectionClosed:
                return
            if message is not None:
                self._fold(message)
                continue
            await self._judge(bus, subscription)

    async def _judge(self, bus: Bus, subscription: Subscription) -> None:
        """Fold in every heartbeat the server sent before now, then expire the silent."""
        started = self.now()
        try:
            await bus.flush(within=1)
        except MetalbusError as error:
            log.warning("heartbeats cannot be checked, every live node gets a fresh window error=%r", error)
            self.tracker.refresh(self.now())
            self._heartbeats_missed()
            return
        while subscription.pending:
            message = await subscription.next(wait=_SLACK)
            if message is None:
                break  # taken by the other reader meanwhile
            self._fold(message)
        dead = self.tracker.expire(started)
        for node in dead:
            self._deaths[node] = self.now()
            log.info("announcer silent node=%s timeout_s=%.3f", node, self.tracker.timeout)
        if dead:
            self._live_changed()

    def _fold(self, message: Msg) -> None:
        event = read_heartbeat(message.subject, message.data, component="ipam")
        if isinstance(event, Refused):
            return  # counted; a message that is not a heartbeat of the node it names says nothing
        node = event.node
        now = self.now()
        if self.tracker.heard(node, instance=event.instance, leaving=event.leaving, now=now):
            if event.leaving:
                self._deaths[node] = now
                log.info("announcer leaving node=%s", node)
            else:
                self._deaths.pop(node, None)
                log.info("announcer live node=%s", node)
            self._live_changed()

    def _live_changed(self) -> None:
        metrics.LIVE_ANNOUNCERS.set(len(self.tracker.live))
        self.changed.set()
