"""The node's data-plane report: whether this announcer can answer ARP/NDP now, and on which interfaces.

ipam places an IP only on a node whose announcer can answer for it, and moves it off a node that can no
longer (a data link down, an interface gone, none eligible) while the bus is still up; the heartbeats alone
say only that the process lives. The report (``DataPlaneReported`` on ``announce.<node>.dataplane``):

- ``ready=false`` before the first heartbeat (``starting``): a restarted announcer gets no IP before it has read
  the placements and opened its ports (its heartbeats wait for that too: ``L2Agent.in_step``);
- ``ready=true`` with the answering interfaces once the L2 agent answers (``L2Agent.answering_ready``), again
  at every change of them (rtnetlink link events wake it at once, a check every second backs them up), and
  unchanged once a week (``ANNOUNCE`` keeps 30 days);
- ``ready=false`` on a graceful stop, before the ``leaving`` heartbeat.

A report that is not acknowledged (the bus away, the acknowledgement lost) is sent again at the next check, even
if unchanged since: it may or may not have landed. The node's own subject only: what it says concerns nobody
else's IPs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from schemas.events import DataPlaneReported
from services.announcer.agents.report_ages import REFRESH_AFTER
from services.announcer.l2.interfaces import DEFAULT_POLICY, ExclusionPolicy, InterfaceFacts, answerable_interfaces
from services.announcer.l2.links import LinkEvents, dump_links
from services.common.aio import first_of
from services.common.bus import Bus
from services.common.errors import MetalbusError
from services.common.subjects import dataplane_subject

log = logging.getLogger("metalbus.announcer.dataplane")

#: Seconds between checks of the links when no link event came (events can be lost on an overrun).
RECHECK = 1.0
#: How long the reports around the start and the stop may take; past it the process goes on without them.
EDGE_TIMEOUT = 2.0


class DataPlaneReporter:
    def __init__(
        self,
        bus: Bus,
        *,
        node: str,
        instance: str,
        policy: ExclusionPolicy = DEFAULT_POLICY,
        list_links: Callable[[], list[InterfaceFacts]] = dump_links,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.node = node
        self.instance = instance
        self.policy = policy
        self._list_links = list_links
        self._clock = clock
        self._subject = dataplane_subject(node)
        self.reported: DataPlaneReported | None = None
        self._reported_at = 0.0
        #: a link changed, or the connection came back: report at once (one listener, whatever restarts `run`)
        self._woken = asyncio.Event()
        bus.on_reconnect(self._woken.set)

    def now(self) -> DataPlaneReported:
        """What this node can answer on now (ready: the L2 agent answers)."""
        interfaces, named_only = answerable_interfaces(self._list_links(), policy=self.policy)
        return DataPlaneReported(node=self.node, instance=self.instance, ready=True, interfaces=interfaces,
                                 named_only=named_only)

    def _not_ready(self) -> DataPlaneReported:
        return DataPlaneReported(node=self.node, instance=self.instance, ready=False)

    async def starting(self) -> None:
        """Say ``not ready`` before the first heartbeat makes this announcer live."""
        await self._publish_within(self._not_ready(), "starting")

    async def run(self, stopping: asyncio.Event, answering: asyncio.Event) -> None:
        """Report what the node can answer on from when ``answering`` is set until ``stopping``; then ``not
        ready``."""
        if await first_of(answering.wait(), stopping.wait()) is None:
            return
        events = LinkEvents()
        woken = self._woken
        loop = asyncio.get_running_loop()

        def on_link_event() -> None:
            events.drain()
            woken.set()

        loop.add_reader(events.fileno(), on_link_event)
        try:
            while not stopping.is_set():
                woken.clear()
                await self._report(self.now() if answering.is_set() else self._not_ready(), superseded=woken)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(first_of(woken.wait(), stopping.wait()), RECHECK)
        finally:
            loop.remove_reader(events.fileno())
            events.close()
        await self._publish_within(self._not_ready(), "stopping")

    async def _report(self, report: DataPlaneReported, *, superseded: asyncio.Event) -> None:
        """Publish ``report`` unless it is what was last acknowledged (and not a week old); a link change or a
        reconnection meanwhile (``superseded``) abandons it for a fresh one at once, rather than wait for an
        acknowledgement that may be lost with the old connection."""
        if report == self.reported and self._clock() - self._reported_at < REFRESH_AFTER:
            return
        self.reported = None  # it may land or not: what ipam holds is unknown until a publish is acknowledged
        try:
            if await first_of(self._acknowledged(report), superseded.wait()) is None:
                return
        except (MetalbusError, TimeoutError) as error:
            log.warning("data plane report failed node=%s error=%r", self.node, error)
            return  # the next check tries again
        self.reported, self._reported_at = report, self._clock()
        log.info("data plane reported node=%s ready=%s interfaces=%s named_only=%s", self.node, report.ready,
                 ",".join(report.interfaces), ",".join(report.named_only))

    async def _acknowledged(self, report: DataPlaneReported) -> bool:
        await self.bus.publish(self._subject, report)
        return True

    async def _publish_within(self, report: DataPlaneReported, when: str) -> None:
        try:
            await asyncio.wait_for(self.bus.publish(self._subject, report), EDGE_TIMEOUT)
        except (MetalbusError, TimeoutError) as error:
            self.reported = None
            log.warning("data plane report failed node=%s when=%s error=%r", self.node, when, error)
            return
        self.reported, self._reported_at = report, self._clock()
