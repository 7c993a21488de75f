"""Which announcers are live: the asyncio shell around the pure rule (:mod:`services.ipam.liveness_rule`).

``LivenessWatch`` hears, on a connection of its own, every announcer's heartbeat (every 10 s while the
active replica grants it, else every 2 s; naming the connection it is sent on) and the server's reports of
closed connections (``connections.closed``), and folds both in as they come; one task judges the silent
when the next backstop deadline is up (no polling).
Every replica runs one, the standby too, so a new active replica knows who is alive. Whenever it starts
listening (its connection made or made again) it calls the roll: every announcer heartbeats at once, so
a replica knows the live set a roll call's answers after it starts, not a heartbeat interval. While its
replica is active (``granting``), its roll calls grant the long interval, renewed every ``GRANT_RENEW``.

The ipam's own troubles must not look like node deaths:
- heartbeats come on a connection of their own, not queued behind a replay or a burst of observations;
- before judging, a PING/PONG round trip on that connection is a barrier: every heartbeat the server
  sent before it has been read and folded in, however busy (or starved of CPU) the process was;
- while that connection is down, every live node gets a fresh window instead;
- a majority of the live nodes falling silent at once is believed only after it lasts two more windows.
A closed connection is the server's word, not our silence: it is believed at once.

Beside liveness it follows the announcers' data-plane reports (``announce.*.dataplane`` on ``ANNOUNCE``, read
in full and then followed on the same connection) through :mod:`services.ipam.dataplane_rule`: ``answering``
is what each live announcer can answer on, and ``changed`` is set when that changes too (a report, a new
instance heard, a hold-down or a starting grace that ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from nats.aio.msg import Msg

from schemas.events import RollCall
from schemas.refusal import Refused
from services.common.aio import stopped
from services.common.bus import Bus
from services.common.errors import MetalbusError, StreamReplaced
from services.common.follower import Follower
from services.common.heartbeats import (
    GRANT_RENEW,
    GRANTED_INTERVAL,
    HEARTBEAT_INTERVAL,
    LIVENESS_BACKSTOP,
    ROLL_CALL_LISTEN,
)
from services.common.inbound import read_connection_closed, read_dataplane_report, read_heartbeat
from services.common.records import Received
from services.common.subjects import CONNECTIONS_CLOSED, DATAPLANE_REPORTS, HEARTBEATS, ROLL_CALL, StreamName
from services.common.subscription import Subscription
from services.common.supervision import OnFailure, current_process, supervised
from services.ipam import metrics
from services.ipam.dataplane_rule import Answering, DataPlanes
from services.ipam.liveness_rule import Liveness

__all__ = ["Liveness", "LivenessWatch"]

log = logging.getLogger(__name__)

#: Judge this much after a deadline, so the expiry it checks has surely passed.
_SLACK = 0.001
#: What a replica that has not heard the announcers yet waits beyond one heartbeat before placing.
_LISTEN_SLACK = 0.5
_TASK = "ipam-liveness"
_REPORTS_TASK = "ipam-dataplane"
_ROLL_CALL_TASK = "ipam-roll-call"
_RETRY = 1.0
_RETRY_AT_MOST = 30.0


class LivenessWatch:
    def __init__(self, bus: Bus, *, backstop: float = LIVENESS_BACKSTOP,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL) -> None:
        self._settings = bus.settings
        self._producer = f"{bus.producer}/liveness"
        self._bus: Bus | None = None
        self.tracker = Liveness(backstop)
        self.heartbeat_interval = heartbeat_interval
        #: How long a replica that starts listening listens before it knows who is live: a roll call's answers
        #: (or a whole heartbeat interval, if that is shorter).
        self.listen = min(heartbeat_interval + _LISTEN_SLACK, ROLL_CALL_LISTEN)
        #: Set whenever the live set changes; the active replica clears it when it acts.
        self.changed = asyncio.Event()
        self._deaths: dict[str, float] = {}
        self._subscriptions: list[Subscription] = []
        self._heartbeats: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        #: Wakes the judge when a node becomes live while it had no deadline to wait for.
        self._first_live = asyncio.Event()
        #: Loop time since which heartbeats have been heard without a break (None: not listening).
        self._listening_since: float | None = None
        self.dataplanes = DataPlanes()
        self._answering: Mapping[str, Answering] | None = {}  # None: to be worked out again
        self._reports_task: asyncio.Task[None] | None = None
        #: Set when the connection was made again: the roll is called (the nodes name their connections anew).
        self._roll_call_due = asyncio.Event()
        self._roll_call_task: asyncio.Task[None] | None = None
        self._granting = False

    @property
    def live(self) -> frozenset[str]:
        return self.tracker.live

    @property
    def answering(self) -> Mapping[str, Answering]:
        """What each announcer answers on, for those not answering on anything (``DataPlanes.view``), worked
        out when asked after a change: a node flooding reports costs one view per decision, not one per report."""
        if self._answering is None:
            self._answering = self.dataplanes.view()
        return self._answering

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        self._bus = await Bus.connect(self._settings, producer=self._producer)
        self._heartbeats = await self._bus.subscribe(HEARTBEATS, cb=self._on_heartbeat)
        self._subscriptions = [self._heartbeats,
                               await self._bus.subscribe(CONNECTIONS_CLOSED, cb=self._on_connection_closed)]
        with contextlib.suppress(MetalbusError):  # listening once started (else at the client's next flush)
            await self._bus.flush(within=1)
        self._listening_since = self.now()
        self.dataplanes.listening(self._listening_since)
        self._bus.on_reconnect(self._heartbeats_missed)
        await self._call_roll(self._bus)
        roll_call_bus = self._bus
        # RESTART: a roll call is a request; one not made leaves the nodes to their periodic heartbeats
        self._roll_call_task = supervised(lambda: self._call_roll_when_due(roll_call_bus), name=_ROLL_CALL_TASK,
                                          on_failure=OnFailure.RESTART)
        reports_bus = self._bus
        # RESTART: it reads every report again; until then the reports read so far stay in force
        self._reports_task = supervised(lambda: self._follow_reports(reports_bus), name=_REPORTS_TASK,
                                        on_failure=OnFailure.RESTART)
        bus, heartbeats = self._bus, self._heartbeats
        # RESTART: the judge keeps nothing the tracker does not hold; a judge that died would silently
        # stop every failover of a cut node.
        self._task = supervised(lambda: self._judge_when_due(bus, heartbeats), name=_TASK,
                                on_failure=OnFailure.RESTART)

    async def stop(self) -> None:
        for task in (self._task, self._reports_task, self._roll_call_task):
            if task is not None:
                await stopped(task)
        self._task = self._reports_task = self._roll_call_task = None
        subscriptions, self._subscriptions, self._heartbeats = self._subscriptions, [], None
        for subscription in subscriptions:
            try:
                await subscription.close()
            except MetalbusError as error:
                log.debug("liveness unsubscribe failed error=%r", error)
        bus, self._bus = self._bus, None
        self._listening_since = None
        if bus is not None:
            await bus.close()

    def _heartbeats_missed(self) -> None:
        """The connection was down: what was heard before is no whole window any more; the roll is called."""
        if self._listening_since is not None:
            self._listening_since = self.now()
            self._roll_call_due.set()

    def grant(self, granting: bool) -> None:
        """While ``granting`` (the replica is active), roll calls grant the long heartbeat interval (one at once,
        then one every ``GRANT_RENEW``): the announcers take it from an active replica of this release only, so
        a replica of the previous release (its backstop 5 s) is never left with nodes that beat every 10 s."""
        if granting and not self._granting:
            self._roll_call_due.set()
        self._granting = granting

    async def _call_roll_when_due(self, bus: Bus) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._roll_call_due.wait(), GRANT_RENEW)
            if self._roll_call_due.is_set() or self._granting:
                self._roll_call_due.clear()
                await self._call_roll(bus)

    async def _call_roll(self, bus: Bus) -> None:
        """Ask every announcer for a heartbeat now (each answers at most once a second), granting the long
        interval while active. Not made (the bus away): the nodes are heard at their next periodic heartbeat,
        as the backstop expects."""
        try:
            await bus.notify(ROLL_CALL, RollCall(caller=self._producer,
                                                 interval=GRANTED_INTERVAL if self._granting else 0.0))
        except MetalbusError as error:
            log.warning("roll call not made error=%r", error)

    async def fresh_window(self, *, memory: float = 10.0) -> None:
        """Settle who is live, on taking over. A replica that has heard heartbeats without a break since its
        roll call was answered (a standby following liveness all along) knows at once; otherwise it calls the
        roll and listens ``listen`` first. Nodes a busy standby judged dead in the last ``memory`` seconds get
        that time to speak too, and are dead after all if they do not."""
        now = self.now()
        heard_a_period = self._listening_since is not None and now - self._listening_since > self.listen
        if not heard_a_period or self.tracker.recently_dead(since=now - memory):
            self.tracker.revive(now, since=now - memory)
            self._first_live.set()
            if self._bus is not None:
                await self._call_roll(self._bus)
            await asyncio.sleep(self.listen)  # the roll call's answers, not a poll
            if self._bus is not None and self._heartbeats is not None:
                await self._judge(self._bus, self._heartbeats)
            for node in self.tracker.settle():
                log.info("announcer silent since takeover node=%s", node)
        self.changed.clear()
        self._deaths.clear()
        metrics.LIVE_ANNOUNCERS.set(len(self.tracker.live))

    def dying(self) -> bool:
        """Whether a death noticed waits for ``take_deaths`` (a plain read: callable from the decider's thread)."""
        return bool(self._deaths)

    def take_deaths(self) -> dict[str, float]:
        """Nodes that died since the last call, each with the loop time it was noticed."""
        deaths, self._deaths = self._deaths, {}
        return deaths

    async def _judge_when_due(self, bus: Bus, heartbeats: Subscription) -> None:
        while True:
            deadline = self.tracker.next_deadline()
            if deadline is None:
                self._first_live.clear()
                await self._first_live.wait()
                continue
            # Heartbeats only push deadlines later: sleeping to the one known now never judges late.
            await asyncio.sleep(max(deadline + _SLACK - self.now(), _SLACK))
            await self._judge(bus, heartbeats)

    async def _judge(self, bus: Bus, heartbeats: Subscription) -> None:
        """Fold in every heartbeat the server sent before now, then expire the silent."""
        started = self.now()
        try:
            await bus.flush(within=1)
            await asyncio.wait_for(heartbeats.settled(), 1)
        except (MetalbusError, TimeoutError) as error:
            log.warning("heartbeats cannot be checked, every live node gets a fresh window error=%r", error)
            self.tracker.refresh(self.now())
            self._heartbeats_missed()
            return
        dead = self.tracker.expire(started)
        for node in dead:
            self._deaths[node] = self.now()
            log.info("announcer silent node=%s backstop_s=%.3f", node, self.tracker.backstop)
        if dead:
            self._live_changed()

    async def _on_heartbeat(self, message: Msg) -> None:
        try:
            self._fold(message)
        except Exception as error:  # one message's trouble; the next heartbeat is read all the same
            current_process().report(_TASK, error, OnFailure.REPORT)

    async def _on_connection_closed(self, message: Msg) -> None:
        try:
            self._fold_closed(message)
        except Exception as error:
            current_process().report(_TASK, error, OnFailure.REPORT)

    def _fold(self, message: Msg) -> None:
        event = read_heartbeat(message.subject, message.data, component="ipam")
        if isinstance(event, Refused):
            return  # counted; a message that is not a heartbeat of the node it names says nothing
        node = event.node
        now = self.now()
        if not event.leaving and self.dataplanes.heard(node, event.instance, now):
            self._dataplane_changed()
        if self.tracker.heard(node, instance=event.instance, leaving=event.leaving, connection=event.connection,
                              now=now):
            if event.leaving:
                self._deaths[node] = now
                log.info("announcer leaving node=%s", node)
            else:
                self._deaths.pop(node, None)
                self._first_live.set()
                log.info("announcer live node=%s", node)
            self._live_changed()

    def _fold_closed(self, message: Msg) -> None:
        closed = read_connection_closed(message.data, component="ipam")
        if isinstance(closed, Refused):
            return
        now = self.now()
        dead = self.tracker.closed(closed.connection, server_shutting_down=closed.server_shutting_down, now=now)
        for node in dead:
            self._deaths[node] = now
            log.info("announcer connection closed node=%s reason=%r", node, closed.reason)
        if dead:
            self._live_changed()

    def _live_changed(self) -> None:
        metrics.LIVE_ANNOUNCERS.set(len(self.tracker.live))
        self.changed.set()

    # --- data-plane reports ---------------------------------------------------------------------------

    def _dataplane_changed(self) -> None:
        self._answering = None
        self.changed.set()

    async def _follow_reports(self, bus: Bus) -> None:
        """Read every node's newest report, then follow them; wake when a hold-down or grace ends. ``ANNOUNCE``
        made again under it: read from its start again (the reports folded so far stay in force meanwhile)."""
        while True:
            try:
                await self._read_and_follow_reports(bus)
            except StreamReplaced as error:
                log.warning("data plane reports read again reason=%s", error)

    async def _read_and_follow_reports(self, bus: Bus) -> None:
        retry_in = _RETRY
        while True:
            try:
                end = await bus.last_sequence(StreamName.ANNOUNCE)
                async for received in bus.read(StreamName.ANNOUNCE, subjects=[DATAPLANE_REPORTS],
                                               last_per_subject=True):
                    self._fold_report(received)
                break
            except MetalbusError as error:  # no ANNOUNCE yet, the bus away, or not allowed (older accounts):
                # meanwhile an announcer that reports nothing answers anything, as before
                log.warning("data plane reports not read error=%r retry_in=%s", error, retry_in)
                await asyncio.sleep(retry_in)
                retry_in = min(retry_in * 2, _RETRY_AT_MOST)
        follower = Follower(bus, StreamName.ANNOUNCE, start_sequence=end + 1, subjects=[DATAPLANE_REPORTS])
        try:
            while True:
                deadline = self.dataplanes.next_change()
                wait = 1.0 if deadline is None else min(1.0, max(deadline + _SLACK - self.now(), 0.0))
                for received in await follower.fetch(wait=wait):
                    self._fold_report(received)
                if self.dataplanes.tick(self.now()):
                    self._dataplane_changed()
        finally:
            await follower.close()

    def _fold_report(self, received: Received) -> None:
        report = read_dataplane_report(received, component="ipam")
        if isinstance(report, Refused):
            return
        if self.dataplanes.reported(report, self.now()):
            log.info("announcer data plane node=%s ready=%s interfaces=%s named_only=%s", report.node,
                     report.ready, ",".join(report.interfaces), ",".join(report.named_only))
            self._dataplane_changed()
