"""One ipam replica: standby (following both streams) or active (deciding), never both.

Standby keeps the decider warm: it folds the IPAM stream (what the active replica decides) and the
K8S stream (the world) as they grow, and competes for the lease. Active: catch up, ``activate``
(re-adopt, then decide what is pending), then decide on every observed change. The lease is renewed
from a thread of its own (``LeaseKeeper``), so no amount of work on this loop costs it; a replica
whose lease ran out appends nothing more and steps down. Every append is also fenced on the stream
sequence, so a replica that was wrong about being alone cannot write either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass
from enum import StrEnum

from nats.aio.msg import Msg
from opentelemetry import trace

from schemas.events import L2PlacementCleared, L2PlacementDecided, PoolUsageReported
from schemas.refusal import Refused
from services.common.aio import first_of, off_loop
from services.common.bus import Append, Bus, PendingAppends, Received
from services.common.collector import StateCollector
from services.common.errors import RetryableError, StreamReplaced, WrongLastSequence
from services.common.follower import Follower
from services.common.health import Health
from services.common.heartbeats import LIVENESS_BACKSTOP
from services.common.lease_keeper import LeaseKeeper
from services.common.subjects import LEASES, Component, StreamName
from services.common.supervision import Backoff, OnFailure, supervised
from services.common.tracing import extract_context, inject_context, passed_on, spans_exported, tracer
from services.ipam import metrics
from services.ipam.decider import Decider, Outgoing
from services.ipam.liveness import LivenessWatch
from services.ipam.spans import decision_attributes

log = logging.getLogger(__name__)

LEASE_NAME = LEASES[Component.IPAM].name
#: Pauses between attempts to rebuild while the bus cannot answer (0.1 s doubling to 5 s).
RELOAD_BACKOFF = Backoff(limit=5.0)


class Role(StrEnum):
    STANDBY = "standby"
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    #: A replica killed while active is replaced this long after its last renewal (plus up to ~0.3 s
    #: of the server's expiry checks). Renewals run on a thread of their own: work never delays them.
    lease_ttl: float = LEASES[Component.IPAM].ttl
    #: How often a standby tries the lease (and an active replica renews it): how late after the
    #: lease expires a standby notices.
    lease_interval: float = 0.1
    #: Observations decided per batch (the active replica).
    batch: int = 500
    #: Messages folded per turn of the loop while following (a standby; the tail when taking over): each is
    #: decoded and folded on the loop, about 50 µs, so a turn holds it ~5 ms (500 held it 25 ms, and several
    #: times that on a loaded machine).
    follow_batch: int = 100
    load_balancer_class: str | None = None
    #: An announcer silent this long is dead whatever its connection does (heartbeats come every 2 s; a
    #: closed connection kills it at once).
    liveness_backstop: float = LIVENESS_BACKSTOP
    #: An active replica that cannot follow K8S this long gives the lease up, so that a replica that can
    #: takes over (the lease is kept on a connection of its own, which may reach a server this one cannot).
    follow_patience: float = 10.0
    #: How long taking over may spend reading the observations waiting for it before it decides.
    drain_limit: float = 1.0
    #: How often a standby that follows changes brings its warm state up to date (``Decider.warm``: a few
    #: tens of milliseconds at 50 000 Services, off the loop).
    warm_every: float = 1.0


@dataclass(frozen=True, slots=True)
class _Sent:
    pending: PendingAppends
    outgoing: list[Outgoing]
    batch: list[Received]


class Replica:
    def __init__(
        self, bus: Bus, *, holder: str, settings: ReplicaSettings = ReplicaSettings(), health: Health | None = None
    ) -> None:
        self._bus = bus
        self._health = health  # not ready while a stream is not followed
        self._settings = settings
        self._lease = LeaseKeeper(
            bus.settings, name=LEASE_NAME, holder=holder, ttl=settings.lease_ttl, interval=settings.lease_interval
        )
        self._tracer = tracer(__name__)
        self.role = Role.STANDBY
        self.decider = Decider(load_balancer_class=settings.load_balancer_class)
        self._unconfirmed: _Sent | None = None
        self._decisions: Follower | None = None
        self._world: Follower | None = None
        self._fetching: asyncio.Task[list[Received]] | None = None
        #: observations fetched and not decided yet: a batch cut short by an announcer's death
        self._undecided: list[Received] = []
        self._stopping = asyncio.Event()  # the one ``run`` is given
        self.liveness = LivenessWatch(bus, backstop=settings.liveness_backstop)
        self._collector = StateCollector()
        self._waiting_told: str | None = None  # the decider's ``waiting_for`` last told (log, probe, gauge)
        self._warmed = 0.0  # monotonic time of the last ``Decider.warm``
        self._unwarmed = False  # folded or observed something since
        #: Set once the stream history is loaded (readiness) and once active and caught up.
        self.loaded = asyncio.Event()
        self.activated = asyncio.Event()

    async def run(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        await self._lease.start()
        try:
            await self.liveness.start()
            await self._reload()
            while not stopping.is_set():
                # A step cut short by SIGTERM appends nothing more: what it sent is fenced, and the
                # standby taking over reads it from the stream.
                step = self._standby_step() if self.role is Role.STANDBY else self._active_step()
                try:
                    await first_of(step, stopping.wait())
                except StreamReplaced as error:  # K8S or IPAM made again under this replica: read them anew
                    await self._read_again(str(error))
        finally:
            if self.role is Role.ACTIVE and self._unconfirmed is not None:
                # the decider may still be busy on a step cut short: its placements are not read
                await self._confirm(self._unconfirmed, report_placements=False)
            await self._lease.stop()  # releases it: the standby takes over at once
            await self._stop_fetching()
            await self.liveness.stop()
            for follower in (self._decisions, self._world):
                if follower is not None:
                    await follower.close()
            metrics.ACTIVE.set(0)
            metrics.report_placements({})

    # --- loading and following --------------------------------------------------------------

    async def load(self) -> None:
        """Rebuild from scratch: the whole IPAM history, then the current world of K8S."""
        started = time.perf_counter()
        self.decider = Decider(load_balancer_class=self._settings.load_balancer_class)
        self._unwarmed = True
        for follower in (self._decisions, self._world):
            if follower is not None:
                await follower.close()
        decider = self.decider
        # A replay builds long-lived state and little cyclic garbage: one collection below, then frozen.
        with self._collector.building():
            # The ledger is the newest event per subject (a Service's allocation, an IP's placement, a
            # pool's usage, the configuration), so the stream's last message per subject rebuilds it.
            last = await self._bus.replay(
                StreamName.IPAM, lambda r: decider.load_decision(r.event, r.sequence), last_per_subject=True,
                on_invalid=self._dead_letter,
            )
            decider.skip_to(last)
            world_end = await self._bus.last_sequence(StreamName.K8S)
            await self._bus.replay(
                StreamName.K8S, lambda r: decider.load_observation(r.event), last_per_subject=True,
                on_invalid=self._dead_letter,
            )
        self._decisions = Follower(
            self._bus,
            StreamName.IPAM,
            start_sequence=self.decider.ledger.last_sequence + 1,
            on_invalid=self._dead_letter,
            health=self._health,
        )
        self._world = Follower(self._bus, StreamName.K8S, start_sequence=world_end + 1, on_invalid=self._dead_letter,
                               health=self._health)
        # The loaded state lives as long as the process: the collector does not rescan it (frozen above). A
        # reload collects everything once, so that a previous load's cyclic garbage goes; the first has none,
        # and a full collection of what the start-up made held the loop 40 ms (0.25 s on a loaded machine).
        if self.loaded.is_set():
            self._collector.collect_all()
        self.loaded.set()
        log.info(
            "loaded ipam_sequence=%d services=%d allocations=%d seconds=%.3f",
            self.decider.ledger.last_sequence,
            len(self.decider.world.services),
            len(self.decider.ledger.allocations),
            time.perf_counter() - started,
        )

    async def _catch_up_decisions(self, *, limit: int | None = None, wait: float = 0.05) -> int:
        """Fold the decisions appended since the last call, ``follow_batch`` per turn of the loop, until none
        comes within ``wait``, or (a standby's step) ``limit`` were folded: while the active replica appends
        without a pause, a standby folding every decision first never got to the world (how many there were)."""
        assert self._decisions is not None
        folded = 0
        while (limit is None or folded < limit) and (
            batch := await self._decisions.fetch(batch=self._settings.follow_batch, wait=wait)
        ):
            for received in batch:
                self.decider.load_decision(received.event, received.sequence)
            folded += len(batch)
        self.decider.skip_to(self._decisions.next_sequence - 1)
        return folded

    async def _follow_world(self, *, wait: float, batch: int) -> list[Received]:
        assert self._world is not None
        return await self._world.fetch(batch=batch, wait=wait)

    # --- standby ----------------------------------------------------------------------------

    async def _standby_step(self) -> None:
        if self._following():  # a replica that cannot follow the streams would decide on a stale world
            self._lease.compete()
        if self._lease.held:
            await self._activate()
            return
        with self._collector.building():
            folded = await self._catch_up_decisions(limit=self._settings.batch, wait=0.0)
            # a step waits for observations only when there was nothing to fold
            observations = await self._fold_world(wait=0.0 if folded else self._settings.lease_interval)
            self._unwarmed = self._unwarmed or bool(folded or observations)
            busy = folded or observations
            if self._unwarmed and (not busy or time.monotonic() - self._warmed >= self._settings.warm_every):
                # kept warm (allocator, BGP decisions) so that taking over does not start from scratch:
                # once a pause comes, and every ``warm_every`` while changes keep coming
                # the L2 groups' eligibility is kept for the announcers heard now
                live, answering = self.liveness.live, self.liveness.answering
                await off_loop(lambda: self.decider.warm(live, answering), name="ipam-warm")
                self._warmed, self._unwarmed = time.monotonic(), False
        if not folded and not observations:
            self._collector.idle()

    async def _fold_world(self, *, wait: float) -> int:
        """Fold up to ``batch`` observations, ``follow_batch`` per turn of the loop, waiting at most ``wait`` for
        the first (how many there were)."""
        folded = 0
        while folded < self._settings.batch and (
            observations := await self._follow_world(wait=wait, batch=self._settings.follow_batch)
        ):
            for received in observations:
                self.decider.load_observation(received.event)
            folded, wait = folded + len(observations), 0.0
        return folded

    # --- active -----------------------------------------------------------------------------

    async def _activate(self) -> None:
        started = time.perf_counter()
        # Who is live is settled after one whole window of listening; the window runs while the tail
        # is caught up and every allocation re-adopted (heartbeats read late are still read: the
        # window ends with a round trip to the server before judging), and placing waits for it.
        window = asyncio.ensure_future(self.liveness.fresh_window())
        try:
            with self._collector.building():  # what is read here is folded for good (no young collections
                # rescanning a second of observations kept to be folded: 30-60 ms each)
                _, drained = await asyncio.gather(self._catch_up_decisions(), self._drain_world())
            await self._stop_following_decisions()
            caught_up = time.perf_counter()
            with self._collector.building():  # adoption builds the allocator's long-lived state
                # its decisions are sent in the "ipam activate" span below
                await off_loop(lambda: self._adopt(drained), name="ipam-adopt")
            adopted = time.perf_counter()
            if not self._lease.held:
                await self._step_down("lease lost while adopting")
                return
            await window
        finally:
            if not window.done():
                window.cancel()
        self.role = Role.ACTIVE
        metrics.ACTIVE.set(1)
        self.liveness.grant(True)
        listened = time.perf_counter()
        with self._tracer.start_as_current_span("ipam activate"), self._collector.building():
            live, answering = self.liveness.live, self.liveness.answering
            outgoing = await off_loop(lambda: self.decider.start_placing(live, answering), name="ipam-place")
            placed = time.perf_counter()
            self._tell_waiting()
            sent = await self._send(outgoing, {})
        if sent is not None and await self._confirm(sent):
            self.activated.set()
            log.info(
                "active ipam_sequence=%d decided=%d seconds=%.3f catch_up_s=%.3f adopt_s=%.3f listen_s=%.3f "
                "place_s=%.3f append_s=%.3f",
                self.decider.ledger.last_sequence,
                len(outgoing),
                time.perf_counter() - started,
                caught_up - started,
                adopted - caught_up,
                listened - adopted,
                placed - listened,
                time.perf_counter() - placed,
            )

    def _adopt(self, drained: list[Received]) -> None:
        """Fold what taking over drained (up to a second of observations), then re-adopt (off the loop)."""
        for received in drained:
            self.decider.load_observation(received.event)
        self.decider.adopt()

    async def _stop_following_decisions(self) -> None:
        """The active replica writes the decisions: following them back would only pile up its own appends
        (a step-down rebuilds, and follows them again, from the stream)."""
        decisions, self._decisions = self._decisions, None
        if decisions is not None:
            await decisions.close()

    async def _drain_world(self) -> list[Received]:
        """The observations waiting on taking over: until none is waiting, or for ``drain_limit`` seconds at
        most (while Services churn, observations never stop coming: what arrives later is decided by the
        active loop, as every later observation is)."""
        drained: list[Received] = []
        deadline = time.monotonic() + self._settings.drain_limit
        while time.monotonic() < deadline and (
            batch := await self._follow_world(wait=0.05, batch=self._settings.follow_batch)
        ):
            drained.extend(batch)
        return drained

    async def _active_step(self) -> None:
        """Decide on the next batch of observations while the previous batch's appends are being
        acknowledged: fetch → decide → send batch N+1, then confirm batch N. A change of live
        announcers interrupts the wait for observations and is placed and confirmed at once."""
        wait = 0.0 if self._unconfirmed else self._settings.lease_interval
        batch = await self._next_batch(wait=max(wait, 0.01))
        sent: _Sent | None = None
        if batch:
            with self._collector.building():  # what a batch decides is kept (world, ledger, allocator)
                outgoing, contexts, decided = await off_loop(lambda: self._decide(batch), name="ipam-decide")
                self._undecided = batch[decided:]
                sent = await self._send(outgoing, contexts, batch[:decided])
            self._tell_waiting()
            if sent is None:
                return
        elif self._unconfirmed is None:
            self._collector.idle()
        if self._unconfirmed is not None and not await self._confirm(self._unconfirmed):
            return
        self._unconfirmed = sent
        if self.liveness.changed.is_set() and not await self._follow_liveness():
            return
        if not self._lease.held:
            await self._step_down("lease lost")
        elif self._world is not None and self._world.not_following_for() > self._settings.follow_patience:
            await self._step_down(f"cannot follow K8S for {self._settings.follow_patience:.0f} s")

    def _tell_waiting(self) -> None:
        """Say when the decider starts or stops waiting for a complete world: log, readiness, gauge."""
        reason = self.decider.waiting_for if self.role is Role.ACTIVE else None
        if reason == self._waiting_told:
            return
        self._waiting_told = reason
        metrics.WAITING_FOR_WORLD.set(0 if reason is None else 1)
        if self._health is not None:
            self._health.set_ready("world", reason is None, reason or "")
        if reason is None:
            log.info("world complete: deciding again")
        else:
            log.warning("deciding nothing reason=%s", reason)

    def _following(self) -> bool:
        """Whether both streams are followed live (after the first fetch of each)."""
        return all(follower is not None and follower.following for follower in (self._decisions, self._world))

    async def _next_batch(self, *, wait: float) -> list[Received]:
        """The next observations (first those a batch cut short left), or nothing as soon as the live
        announcers change. A fetch cut short stays pending and is taken up by the next call, so no
        observation is lost."""
        if self._undecided:
            undecided, self._undecided = self._undecided, []
            return undecided
        if self._fetching is None:
            self._fetching = asyncio.ensure_future(self._fetch_batch(wait=wait))
        if not self._fetching.done() and not self.liveness.changed.is_set():
            changed = asyncio.ensure_future(self.liveness.changed.wait())
            try:
                await asyncio.wait({self._fetching, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
        if not self._fetching.done():
            return []
        fetched, self._fetching = self._fetching, None
        return fetched.result()

    async def _fetch_batch(self, *, wait: float) -> list[Received]:
        """Up to ``batch`` observations, waiting at most ``wait`` for the first, decoded ``follow_batch`` per
        turn of the loop (500 decoded in one piece held it 25 ms, several times that on a loaded machine)."""
        fetched = await self._follow_world(wait=wait, batch=self._settings.follow_batch)
        while fetched and len(fetched) < self._settings.batch:
            room = min(self._settings.follow_batch, self._settings.batch - len(fetched))
            if not (more := await self._follow_world(wait=0.0, batch=room)):
                break
            fetched.extend(more)
        return fetched

    async def _stop_fetching(self) -> None:
        """Drop what was fetched and not decided (rebuilt from the streams after a step-down)."""
        self._undecided = []
        fetching, self._fetching = self._fetching, None
        if fetching is not None:
            fetching.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fetching

    async def _follow_liveness(self) -> bool:
        """Place for the announcers live now, and confirm it before anything else (failover time)."""
        self.liveness.changed.clear()
        deaths = self.liveness.take_deaths()
        holding = {node for node in deaths if node in self.decider.ledger.placed_per_node}
        with self._tracer.start_as_current_span("ipam liveness"):
            live, answering = self.liveness.live, self.liveness.answering
            outgoing = await off_loop(lambda: self.decider.set_live_nodes(live, answering), name="ipam-liveness")
        if not outgoing:
            return True
        sent = await self._send(outgoing, {})
        if sent is None:
            return False
        if self._unconfirmed is not None and not await self._confirm(self._unconfirmed):
            return False
        if not await self._confirm(sent):
            return False
        now = asyncio.get_running_loop().time()
        for node, noticed in deaths.items():
            if node in holding:
                metrics.FAILOVER_SECONDS.observe(now - noticed)
                log.info("failover node=%s seconds=%.3f decisions=%d", node, now - noticed, len(outgoing))
        return True

    def _decide(self, batch: list[Received]) -> tuple[list[Outgoing], dict[int, dict[str, str]], int]:
        """The decisions on a batch of observations, the trace context each one carries on, and how many of
        the observations were decided: an announcer's death ends the batch early, so that its failover waits
        for one observation, not for the rest of a batch (seconds, behind a cold start's backlog). Other
        changes of the live announcers (thousands join in a cold start) wait for the batch's end, as before."""
        outgoing: list[Outgoing] = []
        contexts: dict[int, dict[str, str]] = {}
        decide = self._decide_in_span if spans_exported() else self._decide_passing_on
        dying = self.liveness.dying  # set on the loop, read here: a plain read, no wait
        decided = 0
        for received in batch:
            answered, headers = decide(received)
            for out in answered:
                contexts[out.sequence] = headers
            outgoing.extend(answered)
            decided += 1
            if dying():
                break
        outgoing.extend(self.decider.report_usage())
        return outgoing, contexts, decided

    def _decide_in_span(self, received: Received) -> tuple[list[Outgoing], dict[str, str]]:
        with self._tracer.start_as_current_span(
            f"decide {type(received.event).__name__}",
            context=extract_context(received.headers),
            kind=trace.SpanKind.CONSUMER,
        ) as span:
            decided = self.decider.observe(received.event, cause=received.envelope.event_id, defer_to_batch=True)
            if span.is_recording():
                span.set_attributes(decision_attributes(received.event, (out.event for out in decided)))
            headers: dict[str, str] = {}
            if decided:
                inject_context(headers)
            return decided, headers

    def _decide_passing_on(self, received: Received) -> tuple[list[Outgoing], dict[str, str]]:
        """No span recorded here (a tenth of a burst's CPU): the decisions carry the observation's trace."""
        decided = self.decider.observe(received.event, cause=received.envelope.event_id, defer_to_batch=True)
        return decided, passed_on(received.headers) if decided else {}

    async def _send(
        self, outgoing: list[Outgoing], contexts: dict[int, dict[str, str]], batch: list[Received] | None = None
    ) -> _Sent | None:
        """Send decisions fenced on their sequences (None, after stepping down, if that failed or the
        lease ran out: a replica that may not be the only one any more appends nothing)."""
        if not self._lease.held:
            await self._step_down("lease lost before appending")
            return None
        items = [
            Append(out.subject, out.event, out.sequence - 1, out.causation_id, contexts.get(out.sequence))
            for out in outgoing
        ]
        try:
            pending = await self._bus.send_fenced(items)
        except RetryableError as error:
            await self._step_down(f"append failed: {error}")
            return None
        return _Sent(pending, outgoing, batch or [])

    async def _confirm(self, sent: _Sent, *, report_placements: bool = True) -> bool:
        """Wait for the acks of sent decisions; on a fence failure, step down and rebuild."""
        self._unconfirmed = None
        try:
            await sent.pending.confirmed()
        except WrongLastSequence as error:
            await self._step_down(f"another writer appended first: {error}")
            return False
        except RetryableError as error:
            await self._step_down(f"append failed: {error}")
            return False
        # counted by type first: a takeover confirms tens of thousands of decisions on the loop
        kinds = Tally(type(out.event) for out in sent.outgoing)
        metrics.count_decisions(kinds)
        for out in sent.outgoing:
            if isinstance(out.event, PoolUsageReported):
                metrics.report_usage(out.event)
        placements = L2PlacementDecided in kinds or L2PlacementCleared in kinds
        if placements and report_placements:
            metrics.report_placements(self.decider.ledger.placed_per_node)
        _observe_latency(sent.batch)
        return True

    async def _step_down(self, reason: str) -> None:
        log.warning("stepping down reason=%s", reason)
        self._unconfirmed = None
        await self._stop_fetching()
        await self._lease.release()
        self.role = Role.STANDBY
        metrics.ACTIVE.set(0)
        self.liveness.grant(False)
        metrics.report_placements({})
        self._tell_waiting()  # a standby waits for nothing
        await self._reload()

    async def _read_again(self, reason: str) -> None:
        """Load the streams anew (stepping down first when active: its decisions were made on what is gone)."""
        if self.role is Role.ACTIVE:
            await self._step_down(reason)  # reloads
        else:
            log.warning("reading the streams again reason=%s", reason)
            await self._stop_fetching()
            await self._reload()

    async def _reload(self) -> None:
        """:meth:`load`, tried again after a pause while the bus cannot answer (a NATS server lost and its
        streams electing a new leader): a replica waits for its cluster rather than dying of it. A replica
        on its way out has nothing to rebuild for."""
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.load()
                return
            except RetryableError as error:
                failures += 1
                delay = RELOAD_BACKOFF.delay(failures)
                log.warning("reload failed error=%r retry_in_s=%.1f", error, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    def _dead_letter(self, message: Msg, error: Refused) -> None:
        metrics.INVALID_INPUTS.inc()
        supervised(lambda: self._bus.dead_letter(message, consumer="ipam", reason=f"invalid event: {error}"),
                   name="dead-letter", on_failure=OnFailure.REPORT)  # one-shot: a failure is logged and counted


def _observe_latency(batch: list[Received]) -> None:
    now = time.time()
    for received in batch:
        if received.time is not None:
            metrics.DECISION_LATENCY.observe(max(0.0, now - received.time.timestamp()))
