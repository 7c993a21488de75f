"""The announcer's BGP agent: ipam's decisions in, one BGP session per applicable BGPPeer out.

    read IPAM ipam.bgp.> + configuration in force, K8S this node's Node, SECRETS ──► BgpInputs ──► plan()
    follow the three live (the Node by its own subject) ───────────────────────────┘            │
    PeerSessions (the prefixes that changed; a whole plan: the whole set) ◄──────────────────┘
    ANNOUNCE: BGPSessionChanged per state change, AnnouncementReported per IP on change

- It reads decisions, not the world: no Service, endpoint or other Node reaches it, and an endpoint change
  that changes no decision never does. No configuration check of its own: until ipam has put a configuration
  in force there are no peers (said in the readiness check and the log).
- No session opens before the first full read: a session's first UPDATEs (and its End-of-RIB) carry the whole
  desired set, so a graceful restart helper never flushes routes we still want.
- A burst of decision changes re-merges only the IPs changed and hands every session only the prefixes
  whose route changed (it still holds the whole desired set: a session established later sends it all); a
  change of the node or of the configuration makes the plan whole anew and hands every session its whole set
  (the speaker sends the diff). Reports likewise look at the changed IPs alone; the announced gauge reads the
  plan when scraped.
  A peer whose session spec changes (addresses, timers, password, BFD) gets a new session.
- On stop each session ends with a Cease (the peer withdraws at once), or, for peers with
  ``enableGracefulRestart``, silently so the peer keeps our routes while we restart.
- Reports (``bgp_reports.py``): an IP's report is published on change, inside an ``announce <ip>`` span whose
  parent is the decision that changed it (the trace context of that decision's message), from the decision's
  arrival to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
from collections.abc import Mapping
from functools import partial

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPSessionChanged,
    BGPSessionState,
    Event,
    ObjectKind,
)
from services.announcer.agents.announced import AnnouncedCollector, announced_collector
from services.announcer.agents.bgp_inputs import BgpInputs
from services.announcer.agents.bgp_metrics import AnnouncedGauge, BgpCollector, BgpSnapshot, PeerStats, bgp_collector
from services.announcer.agents.bgp_plan import (
    IPAnnouncement,
    IPDecision,
    LocalPrefConflict,
    Plan,
    PlanChanges,
    Planner,
)
from services.announcer.agents.bgp_reports import BgpReports
from services.announcer.agents.bgp_sessions import session_spec_for
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.peer_session import BfdEndpoints, PeerSession
from services.announcer.bgp.peering import Refused, duplicate_peer_addresses
from services.common.aio import first_of, until_done
from services.common.bus import Bus, Received
from services.common.errors import MetalbusError, StreamReplaced
from services.common.follower import Follower
from services.common.health import Health
from services.common.subjects import (
    IPAM_BGP_DECISIONS,
    IPAM_CONFIG_PARTS,
    IPAM_CONFIG_SUBJECT,
    StreamName,
    bgp_session_subject,
    k8s_subject,
)
from services.common.supervision import OnFailure, Supervisor, supervised
from services.common.tracing import tracer

log = logging.getLogger("metalbus.announcer.bgp")

REPORT_INTERVAL = 1.0  # seconds between metric snapshots (and retries of failed reports)
_RETRY = 0.5
_CHUNK = 500  # events folded between two yields to the loop
_READ_BATCH = 500  # decisions pulled at a time at start: a round trip with the server waits behind one batch at most
_SETTLE = 0.01  # seconds a change waits for the rest of its burst before planning
_DECISIONS_PREFIX = IPAM_BGP_DECISIONS.removesuffix(">")
_ON_THE_LOOP = 2000  # decisions changed in one burst planned IP by IP on the loop; more: the whole plan anew
_MANY_REPORTS = 10_000  # reports published in one round after which the heap's free pages are handed back


class BgpAgent:
    def __init__(
        self,
        bus: Bus,
        *,
        node: str,
        health: Health | None = None,
        collector: BgpCollector | None = None,
        announced: AnnouncedCollector | None = None,
        listen_port: int | None = None,
    ) -> None:
        """``listen_port``: where peers that dial in connect (179 in production; ``None``: dial out only)."""
        self.bus = bus
        self.node = node
        self.listen_port = listen_port
        self._listener: Listener | None = None
        self._listen_tried = False
        self.health = health
        self.inputs = BgpInputs(node)
        self.plan = Plan()
        self.planner: Planner | None = None
        #: decisions changed since the last plan, each with what it was before (None: there was none)
        self._changed: dict[str, IPDecision | None] = {}
        self._whole = True  # the node or the configuration changed: the plan is made whole anew
        self.sessions: dict[str, PeerSession] = {}
        self._refused: dict[str, str] = {}
        self._conflicts: tuple[LocalPrefConflict, ...] = ()
        self._collector = collector or bgp_collector()
        self._gauge = AnnouncedGauge(announced or announced_collector(), node)
        self._endpoints = BfdEndpoints()
        self._followers: list[Follower] = []
        self._rereading = asyncio.Lock()  # one reading anew at a time, whichever streams were made again
        self._stopping_sessions: set[asyncio.Task[None]] = set()
        self._state_events: asyncio.Queue[BGPSessionChanged] = asyncio.Queue()
        self._reports = BgpReports(bus, node=node, tracer=tracer(__name__))
        self._report_due = asyncio.Event()
        self._dirty = asyncio.Event()
        self._said_no_configuration = False

    # --- lifecycle ---------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Keep the sessions converged to the decisions until ``stopping`` is set, then end them."""
        try:
            if not await until_done(self._read, stopping=stopping, retry_in=_RETRY,
                                    what=f"bgp read node={self.node}"):
                return
            self._apply_plan(*await self._listening_for(await self._plan()))
            self._say_configuration()
            configuration = "in-force" if self.inputs.in_force is not None else "none"
            log.info("bgp agent started node=%s peers=%d ips=%d configuration=%s", self.node, len(self.sessions),
                     len(self.plan.announcements), configuration)  # fmt: skip
            # Every loop RESTARTs: the followers resume from their position (a fold applied twice changes
            # nothing), a restarted planner plans again, reports and states go on from what was sent.
            async with Supervisor() as tasks:
                for index in range(len(self._followers)):
                    tasks.start(f"bgp-follow-{index}", partial(self._follow, index, stopping),
                                on_failure=OnFailure.RESTART)
                tasks.start("bgp-plan", partial(self._replan, stopping), on_failure=OnFailure.RESTART)
                tasks.start("bgp-report", partial(self._report, stopping), on_failure=OnFailure.RESTART)
                tasks.start("bgp-states", partial(self._publish_states, stopping), on_failure=OnFailure.RESTART)
        finally:
            await self._end_sessions()
            if self._listener is not None:
                await self._listener.__aexit__(None, None, None)
                self._listener = None
            for follower in self._followers:
                await follower.close()
            log.info("bgp agent stopped node=%s", self.node)

    async def _listening_for(self, planned: tuple[Plan, PlanChanges | None]) -> tuple[Plan, PlanChanges | None]:
        """Listen from the first plan with a peer on: a node without BGP peers (L2 only) leaves the BGP port to
        whoever else may want it (another BGP daemon on the node, a CNI's)."""
        if planned[0].peers and self._listener is None and not self._listen_tried:
            self._listen_tried = True
            self._listener = await self._listen()
        return planned

    async def _listen(self) -> Listener | None:
        """One listening socket for every peer (both families on ``::``, or IPv4 alone where IPv6 is off). A port
        that cannot be had (another BGP daemon on the node) leaves the agent dialling out only, said once."""
        if self.listen_port is None:
            return None
        error: OSError | None = None
        for address in (ipaddress.IPv6Address("::"), ipaddress.IPv4Address("0.0.0.0")):
            try:
                listener = Listener(address=address, port=self.listen_port)
            except OSError as failed:
                error = failed
                continue
            await listener.__aenter__()
            log.info("bgp listening address=%s port=%d", address, listener.bound_port)
            return listener
        log.warning("bgp not listening port=%d error=%r consequence=%s", self.listen_port, error,
                    "peers that only dial in get no session")  # fmt: skip
        return None

    async def _end_sessions(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        await asyncio.gather(
            *(s.stop(keep_routes=s.spec.graceful_restart, message="announcer stopping") for s in sessions),
            *self._stopping_sessions,
            return_exceptions=True,
        )
        self._update_metrics()
        self._gauge.show(self.plan.announcements, frozenset())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._flush_reports({}, every=True), timeout=1.0)

    # --- the bus -------------------------------------------------------------------------------------

    async def _read(self) -> None:
        """Every current decision and the configuration in force, this node's Node and the BGP passwords,
        then followers from just after them. What is read is put in force whole once read (a plan is never
        made on half of it)."""
        k8s_end = await self.bus.last_sequence(StreamName.K8S)
        secrets_end = await self.bus.last_sequence(StreamName.SECRETS)
        ipam_end = await self.bus.last_sequence(StreamName.IPAM)
        inputs = BgpInputs(self.node)

        def fold(received: Received) -> None:
            inputs.apply(received.event)

        def take(subject: str, body: bytes) -> bool:
            """A decision folded from its JSON alone (most of them), or one that changes nothing."""
            return subject.startswith(_DECISIONS_PREFIX) and inputs.takes(body)

        own_node = [k8s_subject(ObjectKind.NODE, "", self.node)]
        ipam_subjects = [IPAM_BGP_DECISIONS, IPAM_CONFIG_SUBJECT, IPAM_CONFIG_PARTS]

        async def read_decisions() -> None:  # tens of thousands: pulled in batches, see Bus.read
            async for received in self.bus.read(StreamName.IPAM, subjects=ipam_subjects, last_per_subject=True,
                                                batch=_READ_BATCH, skim=take):  # fmt: skip
                fold(received)

        await asyncio.gather(  # all at once: the folds do not depend on each other's order
            self.bus.replay(StreamName.K8S, fold, subjects=own_node, last_per_subject=True),
            self.bus.replay(StreamName.SECRETS, fold, last_per_subject=True),
            read_decisions(),
        )
        again = bool(self._followers)
        for follower in self._followers:
            await follower.close()
        self.inputs, self._changed, self._whole = inputs, {}, True
        if again:
            self._dirty.set()  # the planner makes the plan whole anew from what was read
        self._followers = [
            Follower(self.bus, StreamName.K8S, start_sequence=k8s_end + 1, subjects=own_node, health=self.health),
            Follower(self.bus, StreamName.SECRETS, start_sequence=secrets_end + 1, health=self.health),
            Follower(self.bus, StreamName.IPAM, start_sequence=ipam_end + 1, subjects=ipam_subjects,
                     health=self.health, skim=self._skim),
        ]
        log.info("bgp decisions read node=%s ipam_up_to=%d decisions=%d node_known=%s", self.node, ipam_end,
                 len(self.inputs.decisions), self.inputs.this_node is not None)  # fmt: skip

    def _skim(self, subject: str, body: bytes) -> bool:
        """Another node's Local IP that changes nothing here: passed over unread (most of a big cluster's)."""
        return subject.startswith(_DECISIONS_PREFIX) and self.inputs.skims(body)

    async def _follow(self, index: int, stopping: asyncio.Event) -> None:
        """Fold what the ``index``-th follower brings, in chunks with the loop free in between (BFD and keepalive
        timers must keep firing); the planner re-plans once per burst. A stream made again under it: every
        input is read anew (what the old stream held may be gone), and the plan made whole from that."""
        while not stopping.is_set():
            follower = self._followers[index]
            try:
                batch = await first_of(follower.fetch(batch=_CHUNK, wait=1.0), stopping.wait())
                while batch:
                    self._reports.remember(batch)
                    if self.apply([r.event for r in batch]):
                        self._dirty.set()
                    await asyncio.sleep(0)  # a yield between chunks, not a poll: fetch waits below
                    batch = await follower.fetch(batch=_CHUNK, wait=0)
            except StreamReplaced as error:
                async with self._rereading:
                    if self._followers[index] is follower:  # not read anew already for another stream
                        log.warning("bgp inputs read again node=%s reason=%s", self.node, error)
                        await self._read()

    async def _replan(self, stopping: asyncio.Event) -> None:
        """One planner: after a change, let the burst settle, plan off the loop, apply on it."""
        loop, cost = asyncio.get_running_loop(), 0.0
        while not stopping.is_set():
            if await first_of(self._dirty.wait(), stopping.wait()) is None:
                return
            await asyncio.sleep(max(_SETTLE, cost))  # the rest of a burst lands in the same plan
            self._dirty.clear()
            started, folded = loop.time(), self._reports.folds
            try:
                self._apply_plan(*await self._listening_for(await self._plan()))
            except Exception:
                self._dirty.set()  # the restarted planner plans again
                raise
            self._reports.forget(self.plan.announcements, folded)
            self._say_configuration()
            cost = loop.time() - started  # planning takes at most about half of the time during a burst

    def apply(self, events: list[Event]) -> bool:
        """Fold ``events``; True when the plan may change. A decision that changes is remembered with what it
        was (the planner re-merges that IP alone); anything else makes the plan whole anew."""
        changed = False
        for event in events:
            if isinstance(event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn):
                before = self.inputs.decisions.get(event.ip)
                if self.inputs.apply(event):
                    self._changed.setdefault(event.ip, before)
                    changed = True
            elif self.inputs.apply(event):
                self._whole = changed = True
        return changed

    def _say_configuration(self) -> None:
        """Ready once what is there has been read. Until ipam has put a configuration in force there are no
        peers, said once in the log: readiness does not wait for ipam (a rollout of the announcers must not
        stall on another component), it says what this node has read."""
        if self.inputs.in_force is None and not self._said_no_configuration:
            self._said_no_configuration = True
            log.warning("bgp no configuration in force node=%s consequence=%s", self.node,
                        "no BGP peers until ipam puts one in force")  # fmt: skip
        if self.health is not None:
            self.health.set_ready("bgp", True)

    # --- deciding ------------------------------------------------------------------------------------

    async def _plan(self) -> tuple[Plan, PlanChanges | None]:
        """A few decisions changed: the planner re-merges their IPs on the loop, and says what changed. The
        node or the configuration changed, or many decisions at once: the whole plan anew in a worker thread
        on a snapshot (tens of thousands of IPs take a while, which the loop must not spend away from the
        sessions' timers), then what changed meanwhile; no changes then (None): the plan is whole."""
        inputs = self.inputs
        if self.planner is None or self._whole or len(self._changed) > _ON_THE_LOOP:
            self._whole = False
            snapshot = dict(inputs.decisions)
            self._changed = {}
            planner = await asyncio.to_thread(
                Planner, node=inputs.this_node, configuration=inputs.configuration, decisions=snapshot
            )
            planner.follow(inputs.decisions)
            self.planner = planner
            whole = True
        else:
            whole = False
        changed, self._changed = self._changed, {}
        for ip, before in changed.items():
            self.planner.update(ip, before)
        changes = self.planner.take_changes()
        return self.planner.plan(), None if whole else changes

    def _apply_plan(self, new: Plan, changes: PlanChanges | None = None) -> None:
        """Sessions for the plan's peers; each existing one gets the prefixes that ``changes`` names (None:
        the plan is whole, each gets its whole set)."""
        inputs = self.inputs
        self.plan = new
        if self.plan.conflicts != self._conflicts:
            self._conflicts = self.plan.conflicts
            for c in self._conflicts:
                log.warning("local pref conflict peer=%s prefix=%s local_prefs=%s chosen=%d", c.peer,
                            c.prefix, ",".join(map(str, c.local_prefs)), c.chosen)  # fmt: skip
        node = inputs.this_node
        wanted = {}
        duplicates = duplicate_peer_addresses({name: p.peer.spec for name, p in self.plan.peers.items()})
        for name, peer_plan in self.plan.peers.items():
            assert node is not None  # a plan has peers only for a known node
            peer = peer_plan.peer
            spec = duplicates.get(name) or session_spec_for(
                peer, node=node, password=inputs.password_for(peer), configuration=inputs.configuration
            )
            if isinstance(spec, Refused):
                self._refuse(name, _ref(peer.namespace, name), peer.spec.peer_address or peer.spec.interface, spec)
                continue
            self._refused.pop(name, None)
            wanted[name] = (peer_plan, spec)
        for name in list(self.sessions):
            if name not in wanted or self.sessions[name].spec != wanted[name][1]:
                self._retire(self.sessions.pop(name), "peer removed" if name not in wanted else "peer changed")
        for name, (peer_plan, spec) in wanted.items():
            session = self.sessions.get(name)
            if session is None:
                ref = _ref(peer_plan.peer.namespace, name)
                session = PeerSession(name=name, ref=ref, spec=spec, endpoints=self._endpoints,
                                      on_state=self._on_state, on_sent=self._update_metrics,
                                      listener=self._listener)  # fmt: skip
                self.sessions[name] = session
                session.start(peer_plan.routes)
            elif changes is None:
                session.set_routes(peer_plan.routes)
            elif changes.prefixes:
                session.change_routes(peer_plan.routes, changes.prefixes)
        self._note_announcements(changes)
        self._report_due.set()

    def _note_announcements(self, changes: PlanChanges | None) -> None:
        """The IPs to report after a plan (those ``changes`` names, or all); the announced gauge's plan and sessions."""
        self._reports.note(changes)
        self._gauge.show(self.plan.announcements, frozenset(self.sessions))

    def _retire(self, session: PeerSession, why: str) -> None:
        log.info("bgp session retired peer=%s reason=%s", session.ref, why)
        # REPORT: a one-shot; a session that failed to stop is dropped all the same
        task = supervised(partial(session.stop, message=why), name="bgp-session-stop", on_failure=OnFailure.REPORT)
        self._stopping_sessions.add(task)
        task.add_done_callback(self._stopping_sessions.discard)

    def _refuse(self, name: str, ref: str, address: str, refused: Refused) -> None:
        if self._refused.get(name) == refused.message:
            return
        self._refused[name] = refused.message
        log.warning("bgp peer refused peer=%s reason=%s message=%s", ref, refused.reason.value, refused.message)
        self._state_events.put_nowait(
            BGPSessionChanged(node=self.node, peer=ref, peer_address=address, state=BGPSessionState.IDLE,
                              reason=f"{refused.reason.value}: {refused.message}")
        )  # fmt: skip

    # --- reports and metrics -----------------------------------------------------------------------

    def _on_state(self, session: PeerSession, state: BGPSessionState, reason: str) -> None:
        current = self.sessions.get(session.name)
        if current is not session and (current is not None or session.name in self._refused):
            return  # a retired session, replaced by a new one or by a refusal: they speak for the peer
        log.info("bgp session changed peer=%s address=%s state=%s reason=%s", session.ref,
                 session.shown_address, state.value, reason or "-")  # fmt: skip
        self._state_events.put_nowait(
            BGPSessionChanged(node=self.node, peer=session.ref, peer_address=session.shown_address, state=state,
                              reason=reason)
        )  # fmt: skip
        self._update_metrics()

    async def _publish_states(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            event = await first_of(self._state_events.get(), stopping.wait())
            if event is None:
                break
            await self._publish_state(event)

    async def _publish_state(self, event: BGPSessionChanged) -> None:
        try:
            await self.bus.publish(bgp_session_subject(self.node, event.peer), event)
        except (MetalbusError, TimeoutError) as error:
            log.warning("bgp state report failed peer=%s error=%r", event.peer, error)

    async def _report(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_of(self._report_due.wait(), stopping.wait()), REPORT_INTERVAL)
            self._report_due.clear()
            self._update_metrics()
            quiet_by = asyncio.get_running_loop().time() + REPORT_INTERVAL
            while self._dirty.is_set() and asyncio.get_running_loop().time() < quiet_by and not stopping.is_set():
                # a burst is still being planned: the wire first, the reports once it settled (bounded)
                await first_of(asyncio.sleep(_SETTLE * 10), stopping.wait())
            if not stopping.is_set() and await self._flush_reports(self.plan.announcements) >= _MANY_REPORTS:
                release_free_heap()  # the start's reads and reports, gone: what they held goes back

    async def _flush_reports(self, announcements: Mapping[str, IPAnnouncement], *, every: bool = False) -> int:
        """The session states waiting, then what changed of the IPs' announcements; how many IPs were reported."""
        while not self._state_events.empty():
            await self._publish_state(self._state_events.get_nowait())
        return await self._reports.flush(announcements, every=every)

    def _update_metrics(self) -> None:
        self._collector.update(BgpSnapshot(peers={
            s.shown_address: PeerStats(up=s.up, updates=s.updates, announced_prefixes=s.announced_prefixes,
                                           received_updates=s.received.updates,
                                           received_prefixes=s.received.prefixes, update_errors=s.received.errors)
            for s in self.sessions.values()
        }, refused_connections=self._listener.refused if self._listener is not None else 0))  # fmt: skip


def _ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name




def release_free_heap() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere nothing). After
    tens of thousands of messages read and reports sent, their memory is free but stays the process's:
    ``malloc`` keeps it for what may come."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # by name: find_library would run ldconfig in a subprocess
