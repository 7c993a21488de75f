"""Which announcers are live, from their heartbeats on plain NATS subjects.

``Liveness`` is the pure rule (times are passed in): a node is live from a heartbeat on, and dead
``timeout`` seconds after its last one, or at once on a ``leaving`` heartbeat (a later heartbeat of the
same announcer instance does not bring it back; a new instance does). ``LivenessWatch`` is the asyncio
shell: it subscribes to every announcer's heartbeat subject and arms one timer for the next expiry
(no polling). Every replica runs one, the standby too, so a new active replica knows who is alive.

Two guards keep the ipam's own troubles from looking like node deaths: while its bus connection is
down, or when the event loop was stalled (the timer fired late by more than half the timeout, so
heartbeats may be waiting unread), every live node is given a fresh window instead of being declared dead.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from schemas.events import AnnouncerHeartbeat
from schemas.events.codec import InvalidEvent, decode
from services.common.bus import Bus
from services.common.subjects import HEARTBEATS, decode_token

log = logging.getLogger(__name__)

#: The timer fires this much after a deadline, so the expiry it checks has surely passed.
_SLACK = 0.001


class Liveness:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._seen: dict[str, float] = {}
        self._left: dict[str, str] = {}

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
        self._seen[node] = now
        return not known

    def expire(self, now: float) -> list[str]:
        """Nodes silent for ``timeout`` or more: they are dead now."""
        dead = sorted(node for node, seen in self._seen.items() if now - seen >= self.timeout)
        for node in dead:
            del self._seen[node]
        return dead

    def next_deadline(self) -> float | None:
        return min(self._seen.values()) + self.timeout if self._seen else None

    def refresh(self, now: float) -> None:
        """We could not listen for a while: give every live node a fresh window."""
        for node in self._seen:
            self._seen[node] = now


class LivenessWatch:
    def __init__(self, bus: Bus, *, timeout: float) -> None:
        self._bus = bus
        self.tracker = Liveness(timeout)
        #: Set whenever the live set changes; the active replica clears it when it acts.
        self.changed = asyncio.Event()
        self._deaths: dict[str, float] = {}
        self._started: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = 0.0
        self._subscription: Subscription | None = None

    @property
    def live(self) -> frozenset[str]:
        return self.tracker.live

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        self._started = self.now()
        self._subscription = await self._bus.client.subscribe(HEARTBEATS, cb=self._on_message)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as error:
                log.debug("heartbeat unsubscribe failed error=%r", error)

    async def settled(self) -> None:
        """Return once the watch has listened for a whole timeout: before, a silent node may be alive."""
        assert self._started is not None, "start() first"
        remaining = self._started + self.tracker.timeout - self.now()
        if remaining > 0:
            await asyncio.sleep(remaining)  # one liveness window, not a poll

    def take_deaths(self) -> dict[str, float]:
        """Nodes that died since the last call, each with the loop time it was noticed."""
        deaths, self._deaths = self._deaths, {}
        return deaths

    async def _on_message(self, message: Msg) -> None:
        try:
            event = decode(message.data).event
        except InvalidEvent as error:
            log.debug("invalid heartbeat dropped subject=%s error=%s", message.subject, error)
            return
        node = decode_token(message.subject.rpartition(".")[2])
        if not isinstance(event, AnnouncerHeartbeat) or event.node != node:
            return  # only an announcer's own subject speaks for its node
        now = self.now()
        if self.tracker.heard(node, instance=event.instance, leaving=event.leaving, now=now):
            if event.leaving:
                self._deaths[node] = now
                log.info("announcer leaving node=%s", node)
            else:
                self._deaths.pop(node, None)
                log.info("announcer live node=%s", node)
            self.changed.set()
        self._arm()

    def _arm(self) -> None:
        deadline = self.tracker.next_deadline()
        if self._timer is not None or deadline is None:
            return
        self._armed_for = deadline + _SLACK
        self._timer = asyncio.get_running_loop().call_at(self._armed_for, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self.now()
        if not self._bus.client.is_connected or now - self._armed_for > self.tracker.timeout / 2:
            log.warning("heartbeats not watched for a while; every live node gets a fresh window")
            self.tracker.refresh(now)
        else:
            dead = self.tracker.expire(now)
            for node in dead:
                self._deaths[node] = now
                log.info("announcer silent node=%s timeout_s=%.3f", node, self.tracker.timeout)
            if dead:
                self.changed.set()
        self._arm()
