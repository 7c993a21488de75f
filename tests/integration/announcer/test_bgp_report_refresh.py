"""A BGP report unchanged for a week is published again, so ``ANNOUNCE`` (30 days) always holds it."""

from __future__ import annotations

from opentelemetry import trace

from services.announcer.agents.bgp_plan import IPAnnouncement
from services.announcer.agents.bgp_reports import BgpReports
from services.announcer.agents.report_ages import REFRESH_AFTER
from services.common.bus import Bus
from services.common.subjects import StreamName, announce_subject


async def test_an_unchanged_report_is_published_again_a_week_on(bus: Bus) -> None:
    now = [0.0]
    reports = BgpReports(bus, node="node-a", tracer=trace.get_tracer(__name__), clock=lambda: now[0])
    plan = {"10.0.0.1": IPAnnouncement(service_names="default/web", service_uids="u-web", peers=("tor",))}
    subject = announce_subject("node-a", "10.0.0.1")

    async def published() -> int:
        return len([r async for r in bus.read(StreamName.ANNOUNCE, subjects=[subject])])

    assert await reports.flush(plan, every=True) == 1
    now[0] = REFRESH_AFTER - 1
    assert await reports.flush(plan) == 0 and await published() == 1  # unchanged, and not a week old
    now[0] = REFRESH_AFTER
    assert await reports.flush(plan) == 1 and await published() == 2
    assert await reports.flush(plan) == 0  # published again: a week to go
