"""The announcer's L2 agent: IPAM placements in, ARP/NDP answers on the wire, reports on the ANNOUNCE stream.

    read every placement (last per `ipam.placement.>`)  ──►  Ownership (this node's IPs)  ──►  L2Responder
    follow the placements live ────────────────────────────┘        ▲ conflicts from the wire
    round trip with the server ──────────► connected / partitioned ─┘

- Nothing is answered before the first full read of the placements.
- Reading keeps only this node's IPs: another node's placement of an IP this node does not hold is passed
  over from its bytes (`schemas/events/gist.py`), with no model, trace or log, at start and live alike; only
  this node's placements and those of the IPs it holds are read in full.
- The bus counts as reachable while the server answers a PING/PONG round trip (one every 100 ms): the NATS
  client alone notices a dead TCP path only after minutes. While partitioned the responder keeps answering
  for the last IPs, and yields an IP the moment another station claims it on the wire. When the server
  answers again, every placement is read again before anything new is answered.
- A claim on the wire while connected is checked by reading the IP's newest placement straight from the
  stream: a newer placement is acted on at once; no answer in time counts as partitioned (yield, resync).
- What is answered (IP, interfaces, epoch) is reported on change only; a failed report is retried.
- While partitioned the interfaces are pinned: one that drops out (carrier lost, cable pulled) is not taken
  back when it returns, only after the resync, since the ipam has most likely moved its IPs meanwhile and a
  takeover's gratuitous ARP would steal them back.
- On stop the responder goes silent at once; the heartbeat sender's `leaving` hands the IPs over.
- Tracing: a report is published inside an `announce <ip>` span whose parent is the placement it acts on (the
  trace context of that placement's message), from the placement's arrival to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from opentelemetry import trace

from schemas.events import AnnouncementMode, L2PlacementCleared, L2PlacementDecided
from schemas.events.gist import NodeMark, placed_elsewhere
from services.announcer.agents.announced import AnnouncedCollector, announced_collector
from services.announcer.agents.bus_contact import BusContact, keep_in_contact
from services.announcer.agents.layer2_metrics import L2Collector, L2Snapshot, l2_collector
from services.announcer.agents.layer2_ownership import (
    Answering,
    Applied,
    ConflictVerdict,
    Connectivity,
    Ownership,
    Placement,
    answering,
    placement_of,
    report_changes,
)
from services.announcer.agents.report_ages import ReportAges
from services.announcer.l2.interfaces import InterfaceFacts, IPAddress
from services.announcer.l2.links import dump_links
from services.announcer.l2.responder import AllowedInterfaces, L2Responder, L2Stats, ResponderConfig
from services.common.aio import first_of, stopped, until_done
from services.common.bus import Bus, Received
from services.common.errors import MetalbusError, StreamReplaced
from services.common.follower import Follower
from services.common.health import Health
from services.common.subjects import (
    IPAM_PLACEMENTS,
    StreamName,
    announce_subject,
    ipam_placement_subject,
)
from services.common.supervision import OnFailure, Supervisor, supervised
from services.common.tracing import parent_context, remote_parent, tracer

log = logging.getLogger("metalbus.announcer.l2")

STALE_AFTER = 0.3  # seconds without an answer from the server before the bus counts as lost
REPORT_INTERVAL = 1.0  # seconds between checks of what the wire answers (link flaps) and metric snapshots
CLAIM_CHECK_TIMEOUT = 0.5  # seconds for the direct read of a claimed IP's placement
READ_BATCH = 500  # placements pulled at a time when reading them all: a round trip waits behind one batch at most
_RETRY = 0.5


class L2Agent:
    def __init__(
        self,
        bus: Bus,
        *,
        node: str,
        config: ResponderConfig | None = None,
        health: Health | None = None,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = time.monotonic,
        collector: L2Collector | None = None,
        announced: AnnouncedCollector | None = None,
        list_links: Callable[[], list[InterfaceFacts]] = dump_links,
    ) -> None:
        self.bus = bus
        self.node = node
        self.config = config or ResponderConfig()
        self.health = health
        self.ownership = Ownership(node)
        self._mark = NodeMark(node)
        #: the placement subjects of the IPs held (or reported, during a full read): always read in full
        self._read_whole: frozenset[str] = frozenset()
        self._clock = clock
        self._collector = collector or l2_collector()
        self._announced = announced or announced_collector()
        self._responder: L2Responder | None = None
        self._contact = BusContact(stale_after=stale_after, clock=clock, on_lost=self._bus_lost,
                                   on_back=self._bus_back, heard=bus.messages_received)  # fmt: skip
        self._needs_resync = False
        self._report_due = asyncio.Event()
        self._reported: dict[IPAddress, Answering] = {}
        self._report_ages = ReportAges[IPAddress]()  # each report published again before ANNOUNCE forgets it
        self._yields: dict[str, int] = {}
        self._follower: Follower | None = None
        self._list_links = list_links
        self._pinned: set[str] | None = None  # while partitioned: the interfaces still answering
        self._checking: set[IPAddress] = set()  # IPs whose claim on the wire is being checked
        self._checks: set[asyncio.Task[None]] = set()
        self._handover_timer: asyncio.TimerHandle | None = None
        #: per IP, the trace of the newest placement not reported yet, and when it arrived (ns)
        self._origins: dict[IPAddress, tuple[trace.SpanContext, int]] = {}
        self._tracer = tracer(__name__)
        #: Set while the responder runs on placements read in full: the node can answer (its data-plane report).
        self.answering_ready = asyncio.Event()
        #: Set while, besides, the bus answers and nothing needs reading again: what the heartbeats vouch for. A
        #: node cut off long enough to be declared dead is heard again only once it acts on the newest
        #: placements, so nothing is placed on it before it answers.
        self.in_step = asyncio.Event()

    # --- lifecycle ---------------------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Answer for this node's placements until `stopping` is set."""
        self._contact.answered()  # connected right now: the runtime only hands over a connected bus
        # RESTART: a loop that keeps nothing; the contact's timer tells a partition, not this task
        contact = supervised(lambda: keep_in_contact(self.bus, self._contact), name="l2-bus-contact",
                             on_failure=OnFailure.RESTART)
        try:
            if not await until_done(self._resync, stopping=stopping, retry_in=_RETRY,
                                    what=f"placements read node={self.node}"):
                return
            responder = L2Responder(config=self.config, on_conflict=self._on_conflict, list_links=self._links)
            async with responder:
                self._responder = responder
                self._converge()
                self._step_changed()
                if self.health is not None:
                    self.health.set_ready("layer2", True)
                self.answering_ready.set()
                log.info("l2 agent started node=%s desired=%d", self.node, len(self.ownership.desired()))
                async with Supervisor() as tasks:  # both RESTART: see each loop
                    tasks.start("l2-follow", lambda: self._follow(stopping), on_failure=OnFailure.RESTART)
                    tasks.start("l2-report", lambda: self._report(stopping), on_failure=OnFailure.RESTART)
                self.answering_ready.clear()
                self.in_step.clear()
                responder.set_desired({})  # silent at once; the `leaving` heartbeat hands over
                self._responder = None
                log.info("l2 agent stopped node=%s", self.node)
            await self._withdraw_all()
        finally:
            if self._handover_timer is not None:
                self._handover_timer.cancel()
            for check in list(self._checks):
                check.cancel()
            await stopped(contact)
            self._contact.close()
            if self._follower is not None:
                await self._follower.close()

    # --- the bus: placements -----------------------------------------------------------------------

    async def _resync(self) -> None:
        """Read every placement (newest per IP) and follow on from there; forgets earlier yields."""
        started = self._clock()
        end = await self.bus.last_sequence(StreamName.IPAM)  # before the read: nothing between is missed
        owned = frozenset(self._reported)
        self._read_whole = _subjects_of(owned)
        placements: list[Placement] = []
        async for received in self.bus.read(StreamName.IPAM, subjects=[IPAM_PLACEMENTS], last_per_subject=True,
                                            batch=READ_BATCH, skim=self._elsewhere):  # fmt: skip
            event = received.event
            if isinstance(event, L2PlacementDecided | L2PlacementCleared):
                placement = placement_of(event, epoch=received.sequence, node=self.node)
                if placement is not None:
                    placements.append(placement)
                    self._remember_origin(placement, received)
        if self._follower is not None:
            await self._follower.close()
        self._follower = Follower(self.bus, StreamName.IPAM, start_sequence=end + 1, subjects=[IPAM_PLACEMENTS],
                                  health=self.health, skim=self._elsewhere)  # fmt: skip
        self.ownership.resynced(placements, owned=owned)
        self._read_whole = _subjects_of(self.ownership.held())
        self._needs_resync = False
        self._step_changed()
        log.info(
            "placements read node=%s read_whole=%d held=%d mine=%d up_to=%d took_ms=%.1f", self.node,
            len(placements), len(self.ownership.held()), len(self.ownership.desired()), end,
            (self._clock() - started) * 1000,
        )  # fmt: skip
        if self._pinned is not None and not self._contact.partitioned:
            self._converge()  # the fresh placements first: an interface coming back takes over only those
            self._pinned = None
            if self._responder is not None:
                self._responder.rescan()  # interfaces dropped while partitioned come back
        self._converge()

    async def _follow(self, stopping: asyncio.Event) -> None:
        """Restarted when it fails (the data plane outlives a bug here): the restart reads every
        placement again, since a batch may have been cut short."""
        try:
            while not stopping.is_set():
                await self._follow_once(stopping)
        except Exception:
            self._needs_resync = True
            self._step_changed()
            raise

    async def _follow_once(self, stopping: asyncio.Event) -> None:
        """One step: wait out a partition, resync, or apply the next batch of placements."""
        if self._contact.partitioned:  # keep answering the last IPs; wait for the server to answer again
            await first_of(self._contact.back.wait(), stopping.wait())
            return
        if self._needs_resync:
            try:
                await self._resync()
            except (MetalbusError, TimeoutError) as error:
                log.warning("resync failed node=%s error=%r", self.node, error)
                await first_of(asyncio.sleep(_RETRY), stopping.wait())  # backoff before the next try
            return
        assert self._follower is not None
        try:
            batch = await first_of(self._follower.fetch(wait=1.0), stopping.wait())
        except StreamReplaced as error:  # IPAM made again under it: every placement is read anew
            log.warning("placements read again node=%s reason=%s", self.node, error)
            self._needs_resync = True
            self._step_changed()
            return
        if isinstance(batch, list) and self._apply(batch):
            self._converge()

    def _elsewhere(self, subject: str, body: bytes) -> bool:
        """A placement this node needs nothing of: another node's (or none's) of an IP it does not hold."""
        return subject not in self._read_whole and placed_elsewhere(body, self._mark)

    def _held_changed(self) -> None:
        """The IPs held may have grown (they shrink only at a full read, which sets the subjects anew): their
        subjects are read in full."""
        if len(self._read_whole) != len(self.ownership.held()):
            self._read_whole = _subjects_of(self.ownership.held())

    def _apply(self, batch: list[Received]) -> bool:
        changed = False
        for received in batch:
            event = received.event
            if not isinstance(event, L2PlacementDecided | L2PlacementCleared):
                continue
            placement = placement_of(event, epoch=received.sequence, node=self.node)
            verdict = self.ownership.apply(placement, now=self._clock())
            if verdict is Applied.NEWER:
                changed = True
                if placement is not None:
                    self._remember_origin(placement, received)
                    if self.ownership.handing_over(placement.ip):
                        if self._responder is None or not self._responder.announced().get(placement.ip):
                            # not answered on any interface now (its link is down): an interface coming back
                            # must not take the moved IP over again
                            self.ownership.drop_handover(placement.ip)
                        else:
                            log.info("handing over ip=%s to=%s epoch=%d", placement.ip, placement.node,
                                     placement.epoch)
            elif verdict is Applied.INVALID:
                log.warning("placement invalid subject=%s seq=%d ip=%r", received.subject,
                            received.sequence, event.ip)
        if changed:
            self._held_changed()
            self._schedule_handovers_end()
        return changed

    def _schedule_handovers_end(self) -> None:
        """Wake when the next handover ends unclaimed (the IP then goes silent here)."""
        end = self.ownership.handovers_end()
        if end is None:
            return
        if self._handover_timer is not None:
            self._handover_timer.cancel()
        self._handover_timer = asyncio.get_running_loop().call_later(max(0.0, end - self._clock()),
                                                                     self._end_handovers)

    def _end_handovers(self) -> None:
        self._handover_timer = None
        if self.ownership.end_handovers(self._clock()):
            log.info("handover unclaimed node=%s", self.node)
            self._converge()
        self._schedule_handovers_end()

    def _remember_origin(self, placement: Placement, received: Received) -> None:
        """Keep the trace of a placement that names this node or moves an IP it reports: the report joins it."""
        if placement.node != self.node and placement.ip not in self._reported:
            return
        origin = remote_parent(received.headers)
        if origin is not None:
            self._origins[placement.ip] = (origin, time.time_ns())

    # --- the bus: liveness -------------------------------------------------------------------------

    def _step_changed(self) -> None:
        if self._responder is not None and not self._needs_resync and not self._contact.partitioned:
            self.in_step.set()
        else:
            self.in_step.clear()

    def _bus_lost(self) -> None:
        self.in_step.clear()
        if self._responder is not None:
            self._pinned = {name for names in self._responder.announced().values() for name in names}
        self._set_health(False)
        log.warning(
            "partitioned node=%s answering=%d stale_after=%s client_connected=%s", self.node,
            len(self.ownership.desired()), self._contact.stale_after, self.bus.client.is_connected,
        )  # fmt: skip

    def _bus_back(self) -> None:
        self._needs_resync = True
        self._step_changed()
        self._set_health(True)
        log.warning("bus back node=%s resync=true", self.node)

    def _set_health(self, ok: bool) -> None:
        if self.health is not None:
            self.health.set_ready("layer2-bus", ok, "lost the bus: answering for the last placements")

    # --- the wire ----------------------------------------------------------------------------------

    def _links(self) -> list[InterfaceFacts]:
        """The responder's view of the interfaces: while partitioned, one that dropped out stays out."""
        links = self._list_links()
        if self._pinned is None:
            return links
        self._pinned &= {f.name for f in links if f.up and f.carrier}
        return [f if f.name in self._pinned else replace(f, carrier=False) for f in links]

    def _on_conflict(self, ip: IPAddress, other_mac: bytes, interface: str) -> None:
        connectivity = self._contact.connectivity(connected=self.bus.client.is_connected)
        verdict = self.ownership.conflict(ip, connectivity=connectivity)
        if verdict is ConflictVerdict.HANDED_OVER:
            log.info("handed over ip=%s new_mac=%s interface=%s", ip, other_mac.hex(":"), interface)
            asyncio.get_running_loop().call_soon(self._converge)  # out of the responder's frame handler
        elif verdict is ConflictVerdict.YIELD:
            self._count_yield(ip)
            log.warning("yielded ip=%s other_mac=%s interface=%s", ip, other_mac.hex(":"), interface)
            asyncio.get_running_loop().call_soon(self._converge)  # out of the responder's frame handler
        elif verdict is ConflictVerdict.KEEP:
            log.info("conflict kept ip=%s other_mac=%s reason=placement_names_us", ip, other_mac.hex(":"))
            if ip not in self._checking:
                self._checking.add(ip)
                # REPORT: a one-shot; the next claim on the wire checks again
                check = supervised(lambda: self._check_claim(ip), name="l2-claim-check", on_failure=OnFailure.REPORT)
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)

    async def _check_claim(self, ip: IPAddress) -> None:
        """Connected, yet another station claims `ip`: read its newest placement straight from the stream.
        A newer one is acted on at once; no answer in time means the view cannot be trusted (the server may be
        cut off from the stream's leader): yield, and read every placement again."""
        try:
            received = await asyncio.wait_for(
                self.bus.last_value(StreamName.IPAM, ipam_placement_subject(str(ip))), CLAIM_CHECK_TIMEOUT
            )
        except (TimeoutError, MetalbusError) as error:
            if self.ownership.conflict(ip, connectivity=Connectivity.PARTITIONED) is ConflictVerdict.YIELD:
                self._count_yield(ip)
                self._needs_resync = True
                self._step_changed()
                log.warning("yielded ip=%s reason=placement_unverified error=%r", ip, error)
                self._converge()
            return
        finally:
            self._checking.discard(ip)
        if received is None or not isinstance(event := received.event, L2PlacementDecided | L2PlacementCleared):
            return
        if self.ownership.apply(placement_of(event, epoch=received.sequence, node=self.node)) is Applied.NEWER:
            log.info("claim explained ip=%s epoch=%d", ip, received.sequence)
            self._held_changed()
            self._converge()

    def _count_yield(self, ip: IPAddress) -> None:
        self._yields[str(ip)] = self._yields.get(str(ip), 0) + 1

    def _converge(self) -> None:
        if self._responder is None:
            return
        desired = self.ownership.desired()
        self._responder.set_desired({ip: AllowedInterfaces(p.interfaces) for ip, p in desired.items()})
        self._report_due.set()

    # --- reports and metrics -----------------------------------------------------------------------

    @property
    def partitioned(self) -> bool:
        return self._contact.partitioned

    @property
    def yields(self) -> dict[str, int]:
        """How often each IP was given up to a claim on the wire."""
        return dict(self._yields)

    @property
    def stats(self) -> L2Stats | None:
        """The responder's counters while it runs."""
        return self._responder.stats if self._responder is not None else None

    def answering(self) -> dict[IPAddress, Answering]:
        """What the wire answers now: each desired IP some interface answers for."""
        return self._answering()

    def _answering(self) -> dict[IPAddress, Answering]:
        if self._responder is None:
            return {}
        return answering(self.ownership.desired(), self._responder.announced())

    async def _report(self, stopping: asyncio.Event) -> None:
        """Restarted when it fails: what was not reported is reported by the next round (the data plane
        goes on meanwhile)."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_of(self._report_due.wait(), stopping.wait()), REPORT_INTERVAL)
            self._report_due.clear()
            answering = self._answering()
            self._update_metrics(answering)
            if not stopping.is_set() and not self._contact.partitioned:
                await self._publish(answering)

    async def _publish(self, answering: dict[IPAddress, Answering]) -> None:
        newest = {ip: p.epoch for ip in set(answering) | set(self._reported) if (p := self.ownership.newest(ip))}
        changes = report_changes(node=self.node, reported=self._reported, answering=answering, newest_epoch=newest,
                                 refresh=self._report_ages.due(self._clock()))
        for ip, event in changes:
            origin, since = self._origins.pop(ip, (None, None))
            with self._tracer.start_as_current_span(
                f"announce {ip}", context=parent_context(origin), kind=trace.SpanKind.PRODUCER, start_time=since,
                attributes={
                    "metalbus.ip": str(ip), "metalbus.node": self.node, "metalbus.protocol": event.mode.value,
                    "metalbus.announcing": event.announcing, "metalbus.interfaces": ",".join(event.interfaces),
                    "metalbus.service": ",".join(f"{s.namespace}/{s.name}" for s in event.services),
                    "metalbus.placement_epoch": event.placement_epoch,
                },
            ) as span:  # fmt: skip
                try:
                    await self.bus.publish(announce_subject(self.node, str(ip)), event)
                except (MetalbusError, TimeoutError) as error:
                    span.set_status(trace.StatusCode.ERROR, repr(error))
                    log.warning("report failed ip=%s error=%r", ip, error)
                    return  # retried on the next round
            if event.announcing:
                self._reported[ip] = answering[ip]
                self._report_ages.published(ip, self._clock())
            else:
                self._reported.pop(ip, None)
                self._report_ages.withdrawn(ip)
            log.info("reported ip=%s announcing=%s interfaces=%s epoch=%d", ip, event.announcing,
                     ",".join(event.interfaces), event.placement_epoch)

    async def _withdraw_all(self) -> None:
        self._update_metrics({})
        if self._reported and not self._contact.partitioned:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._publish({}), timeout=1.0)

    def _update_metrics(self, answering: dict[IPAddress, Answering]) -> None:
        if self._responder is None:
            snapshot = L2Snapshot(node=self.node, partitioned=self._contact.partitioned)
        else:
            snapshot = L2Snapshot.of(
                node=self.node, stats=self._responder.stats, answering=answering, yields=self._yields,
                partitioned=self._contact.partitioned,
            )  # fmt: skip
        self._collector.update(snapshot)
        self._announced.update(AnnouncementMode.L2, self.node, snapshot.announced)


def _subjects_of(ips: Iterable[IPAddress]) -> frozenset[str]:
    return frozenset(ipam_placement_subject(str(ip)) for ip in ips)
