"""The BGP agent's report of an IP is published inside an ``announce <ip>`` span whose parent is the span that
appended the IP's BGP decision (the ipam's), with the peers it goes to."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.events import AnnouncementReported
from services.announcer.agents.bgp import BgpAgent
from services.announcer.agents.bgp_metrics import BgpCollector
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig
from services.common.bus import Bus, Received
from services.common.subjects import StreamName, announce_subject
from services.common.tracing import remote_parent, setup_tracing
from tests.bgp_world import bgp_peer, decided, in_force, node, publish_decisions, publish_observed
from tests.builders import pool
from tests.integration.announcer.bgp_agent.test_agent import LOOPBACK, PeerView, free_port
from tests.waiting import async_wait_until

IP = "198.51.100.7"


@pytest.fixture
async def peer_port() -> AsyncIterator[int]:
    port = free_port()
    config = SpeakerConfig(
        session=SessionConfig(local_as=64512, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.1"), hold_time=9),
        peer_address=LOOPBACK, connect=False,
    )  # fmt: skip
    async with Listener(address=LOOPBACK, port=port) as listener, Speaker(config, on_event=PeerView()) as speaker:
        listener.add(speaker)
        yield port


async def test_a_decision_announced_over_bgp_continues_the_decisions_trace(bus: Bus, peer_port: int) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("metalbus-test", extra_processor=SimpleSpanProcessor(exporter))
    await publish_observed(bus, node("node-a", "127.0.0.1", "fd00::11"))
    await publish_decisions(bus, in_force(
        pool("lan", "198.51.100.0/24"),
        bgp_peer("tor", "127.0.0.1", my_asn=64512, peer_asn=64512, peerPort=peer_port, holdTime="9s"),
    ))  # fmt: skip
    agent = BgpAgent(bus, node="node-a", collector=BgpCollector())
    stopping = asyncio.Event()
    running = asyncio.create_task(agent.run(stopping))
    try:
        await async_wait_until(lambda: "tor" in agent.sessions, timeout=10, what="the session to the peer")
        with trace.get_tracer("test").start_as_current_span("decide EndpointsObserved") as decide:
            await publish_decisions(bus, decided(IP))
        stored: list[Received] = []

        async def reported() -> bool:
            last = await bus.last_value(StreamName.ANNOUNCE, announce_subject("node-a", IP))
            if last is not None and isinstance(last.event, AnnouncementReported) and last.event.announcing:
                stored.append(last)
            return bool(stored)

        await async_wait_until(reported, timeout=10, what="the IP reported as announced")
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)
    announce = next(s for s in exporter.get_finished_spans() if s.name == f"announce {IP}")
    assert announce.parent is not None and announce.parent.span_id == decide.get_span_context().span_id
    assert announce.context is not None and announce.context.trace_id == decide.get_span_context().trace_id
    assert dict(announce.attributes or {}) == {
        "metalbus.ip": IP, "metalbus.node": "node-a", "metalbus.protocol": "bgp", "metalbus.announcing": True,
        "metalbus.peer": "tor", "metalbus.service": "default/web",
    }  # fmt: skip
    # the report carries the announce span as its parent: the watcher's status write joins the trace
    carried = remote_parent(stored[0].headers)
    assert carried is not None and carried.span_id == announce.context.span_id
