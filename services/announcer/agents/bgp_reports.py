"""What the BGP agent reports per IP (``AnnouncementReported(mode=bgp)`` on ``announce.<node>.<ip>``), on change.

- After each plan the agent says which IPs' announcements changed (:meth:`BgpReports.note`; a whole plan:
  any); a round compares those with what was last reported and publishes the differences 500 at a time,
  each compared as its turn comes (a start's tens of thousands are not listed first). What failed is
  retried on the next round.
- A report unchanged for a week is published again (``report_ages``): ``ANNOUNCE`` keeps 30 days, and a watcher
  that becomes leader must find every current announcement, whatever its age.
- Tracing: an IP's report is published inside an ``announce <ip>`` span whose parent is the decision that
  changed it (the trace context of that decision's message, :meth:`BgpReports.remember`), from the
  decision's arrival to the report; a decision that leaves the report as it is lets its trace go.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from itertools import chain

from opentelemetry import trace

from schemas.events import (
    AnnouncementMode,
    AnnouncementReported,
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
)
from services.announcer.agents.bgp_plan import IPAnnouncement, PlanChanges, service_id
from services.announcer.agents.report_ages import ReportAges
from services.common.bus import Bus, Received
from services.common.errors import MetalbusError
from services.common.subjects import announce_subject
from services.common.tracing import parent_context, remote_parent, span_headers

log = logging.getLogger("metalbus.announcer.bgp")

_REPORT_BATCH = 500


class BgpReports:
    def __init__(self, bus: Bus, *, node: str, tracer: trace.Tracer,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bus, self.node = bus, node
        self.reported: dict[str, IPAnnouncement] = {}
        self._clock = clock
        self._ages = ReportAges[str]()  # each report published again before ANNOUNCE forgets it
        self._unreported: set[str] = set()  # IPs whose announcement changed since they were last reported
        self._every = True  # a whole plan: every IP is compared with its report
        #: per IP, the trace of the newest decision not reported yet: (span context, arrival ns, fold number)
        self._origins: dict[str, tuple[trace.SpanContext, int, int]] = {}
        self.folds = 0  # batches of decisions remembered so far
        self._tracer = tracer

    def note(self, changes: PlanChanges | None) -> None:
        """A plan was made: ``changes`` names the IPs whose announcement changed (None: any may have)."""
        if changes is None:
            self._every = True
        else:
            self._unreported.update(changes.ips)

    def remember(self, batch: list[Received]) -> None:
        """Keep the trace of each decision per IP: the IP's next report joins it."""
        self.folds += 1
        for received in batch:
            event = received.event
            if isinstance(event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn) and (
                origin := remote_parent(received.headers)
            ):
                self._origins[event.ip] = (origin, time.time_ns(), self.folds)

    def forget(self, planned: Mapping[str, IPAnnouncement], folded: int) -> None:
        """Drop the traces of decisions the plan just made covers that leave the IP's report as it is."""
        reported = self.reported
        for ip in [ip for ip, (_, _, fold) in self._origins.items() if fold <= folded]:
            if planned.get(ip) != reported.get(ip):
                continue  # a report is due: it joins the trace
            del self._origins[ip]

    async def flush(self, announcements: Mapping[str, IPAnnouncement], *, every: bool = False) -> int:
        """Publish what changed since the last report (of the IPs the plans changed, or ``every`` one), 500 at a
        time, each compared as its turn comes (a start's 41 677 are not listed first); what failed is retried
        on the next round. Returns how many were published."""
        reported = self.reported
        refresh = self._ages.due(self._clock())  # unchanged for a week: published again all the same
        if every or self._every:
            candidates = sorted(chain(announcements, (ip for ip in reported if ip not in announcements)))
        else:
            candidates = sorted(self._unreported | refresh)
        self._unreported, self._every = set(), False
        published = 0
        chunk: list[tuple[str, IPAnnouncement | None]] = []
        for index, ip in enumerate(candidates, start=1):
            if (now := announcements.get(ip)) != reported.get(ip) or (now is not None and ip in refresh):
                chunk.append((ip, now))
            if chunk and (len(chunk) == _REPORT_BATCH or index == len(candidates)):
                if not await self._publish(chunk):
                    self._unreported.update(ip for ip, _ in chunk)
                    self._unreported.update(candidates[index:])
                    return published
                published += len(chunk)
                chunk = []
        if published:
            log.info("bgp reported node=%s changed=%d announcing=%d", self.node, published, len(reported))
        return published

    async def _publish(self, chunk: list[tuple[str, IPAnnouncement | None]]) -> bool:
        """Publish the reports of ``chunk`` and remember them; False when that failed (logged)."""
        reports = [_report_of(self.node, ip, a) for ip, a in chunk]
        spans = [self._span(report) for report in reports]
        items = [
            (announce_subject(self.node, r.ip), r, None, span_headers(span))
            for r, span in zip(reports, spans, strict=True)
        ]
        try:
            await self.bus.publish_many(items)
        except (MetalbusError, TimeoutError) as error:
            for span in spans:
                span.set_status(trace.StatusCode.ERROR, repr(error))
            log.warning("bgp report failed node=%s error=%r", self.node, error)
            return False
        finally:
            for span in spans:
                span.end()
        now = self._clock()
        for ip, announcement in chunk:
            if announcement is None:
                self.reported.pop(ip, None)
                self._ages.withdrawn(ip)
            else:
                self.reported[ip] = announcement
                self._ages.published(ip, now)
        return True

    def _span(self, report: AnnouncementReported) -> trace.Span:
        origin, since, _ = self._origins.pop(report.ip, (None, None, 0))
        return self._tracer.start_span(
            f"announce {report.ip}", context=parent_context(origin), kind=trace.SpanKind.PRODUCER, start_time=since,
            attributes={
                "metalbus.ip": report.ip, "metalbus.node": self.node, "metalbus.protocol": report.mode.value,
                "metalbus.announcing": report.announcing, "metalbus.peer": ",".join(report.peers),
                "metalbus.service": ",".join(f"{s.namespace}/{s.name}" for s in report.services),
            },
        )  # fmt: skip


def _report_of(node: str, ip: str, announcement: IPAnnouncement | None) -> AnnouncementReported:
    """The report of ``ip``, built without validation: every field is this agent's own, typed (a start
    reports tens of thousands of IPs at once)."""
    if announcement is None:
        return AnnouncementReported.model_construct(node=node, ip=ip, mode=AnnouncementMode.BGP, announcing=False)
    return AnnouncementReported.model_construct(
        node=node, ip=ip, mode=AnnouncementMode.BGP, announcing=bool(announcement.peers),
        services=tuple(map(service_id, announcement.services, announcement.uids)), peers=announcement.peers,
    )  # fmt: skip
