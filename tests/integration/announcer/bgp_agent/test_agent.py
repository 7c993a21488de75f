"""The BGP agent against a real nats-server and a passive BGP peer on loopback (our own speaker, listening):
ipam's decisions on the bus become routes at the peer, new decisions and this node's labels move them, a stop
ends with a Cease."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from schemas.events import (
    AnnouncementReported,
    BGPAdvertisementDecided,
    BGPSessionChanged,
    BGPSessionState,
    ConfigObjectObserved,
)
from services.announcer.agents.announced import AnnouncedCollector
from services.announcer.agents.bgp import BgpAgent
from services.announcer.agents.bgp_metrics import BgpCollector
from services.announcer.bgp.attributes import Communities, LargeCommunities, LocalPref
from services.announcer.bgp.events import Closed, CloseReason, Event, RoutesReceived
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.session import ReceivedRoutes, SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig
from services.common.bus import Bus
from services.common.provision import provision
from services.common.subjects import ANNOUNCE_PREFIX, StreamName
from tests.bgp_world import (
    bgp_peer,
    decided,
    in_force,
    node,
    publish_decisions,
    publish_observed,
    route,
    withdrawn,
)
from tests.builders import pool
from tests.waiting import async_wait_until

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
V4, V6 = "198.51.100.7/32", "2001:db8:1::7/128"


@dataclass
class PeerView:
    """What the listening peer holds from the agent, per prefix: its attributes."""

    routes: dict[Prefix, dict[str, object]] = field(default_factory=dict)
    closed: list[Closed] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RoutesReceived):
            attributes: dict[str, object] = {}
            for attribute in event.attributes:
                if isinstance(attribute, Communities):
                    attributes["communities"] = attribute.values
                elif isinstance(attribute, LargeCommunities):
                    attributes["large"] = attribute.values
                elif isinstance(attribute, LocalPref):
                    attributes["local_pref"] = attribute.value
            # over loopback our IPv4 next hop is 127.0.0.1, which the receiving speaker treats as a withdraw
            # (RFC 7606): such an UPDATE counts as an announcement here
            loopback_hop = any("INVALID_NEXT_HOP" in error for error in event.errors)
            for _, prefix in event.withdrawn:
                if loopback_hop:
                    self.routes[prefix] = attributes
                else:
                    self.routes.pop(prefix, None)
            for _, prefix in event.announced:
                self.routes[prefix] = attributes
        elif isinstance(event, Closed):
            self.closed.append(event)
            self.routes.clear()

    def prefixes(self) -> set[str]:
        return {str(p) for p in self.routes}


def free_port() -> int:
    for port in range(12000, 16000, 7):
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port")


@pytest.fixture
async def peer() -> AsyncIterator[tuple[PeerView, int]]:
    view = PeerView()
    port = free_port()
    config = SpeakerConfig(
        session=SessionConfig(local_as=64512, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.1"), hold_time=9,
                              received_routes=ReceivedRoutes.DECODED),
        peer_address=LOOPBACK, connect=False,
    )  # fmt: skip
    async with Listener(address=LOOPBACK, port=port) as listener, Speaker(config, on_event=view) as speaker:
        listener.add(speaker)
        yield view, port


EDGE = 0xFFFFFF01  # the Community alias "edge" (65535:65281), resolved by ipam
TERMS: dict[str, Any] = {"communities": ((65000 << 16) | 7, EDGE), "large": ((64512, 1, 2),), "local_pref": 150}
RACK_A = ({"matchLabels": {"rack": "a"}},)


def web(*, nodes: tuple[str, ...] | None = None, v4: str = V4) -> BGPAdvertisementDecided:
    """ipam's decision for the dual-stack Service web: both its IPs' routes, from every node or ``nodes``."""
    return decided("198.51.100.7", route("ads", v4, **TERMS, node_selectors=RACK_A), nodes=nodes)


def web_v6(*, nodes: tuple[str, ...] | None = None) -> BGPAdvertisementDecided:
    return decided("2001:db8:1::7", route("ads", V6, **TERMS, node_selectors=RACK_A), nodes=nodes)


def tor(port: int) -> ConfigObjectObserved:
    peer: ConfigObjectObserved = bgp_peer(
        "tor", "127.0.0.1", my_asn=64512, peer_asn=64512, peerPort=port, holdTime="9s"
    )
    return peer


async def world(bus: Bus, port: int) -> None:
    await publish_observed(bus, node("node-a", "127.0.0.1", "fd00::11", labels={"rack": "a"}),
                           node("node-b", "127.0.0.2", labels={"rack": "a"}))  # fmt: skip
    await publish_decisions(bus, in_force(pool("lan", "198.51.100.0/24", "2001:db8:1::/64"), tor(port)), web(),
                            web_v6())  # fmt: skip


async def reports(bus: Bus) -> dict[str, AnnouncementReported | BGPSessionChanged]:
    found: dict[str, AnnouncementReported | BGPSessionChanged] = {}
    async for received in bus.read(StreamName.ANNOUNCE, subjects=[f"{ANNOUNCE_PREFIX}.>"], last_per_subject=True):
        event = received.event
        if isinstance(event, AnnouncementReported):
            found[event.ip] = event
        elif isinstance(event, BGPSessionChanged):
            found[event.peer] = event
    return found


async def test_decisions_to_routes_and_back(bus: Bus, peer: tuple[PeerView, int]) -> None:
    view, port = peer
    await world(bus, port)
    collector, announced = BgpCollector(), AnnouncedCollector()
    agent = BgpAgent(bus, node="node-a", collector=collector, announced=announced)
    stopping = asyncio.Event()
    running = asyncio.create_task(agent.run(stopping))
    try:
        await async_wait_until(lambda: view.prefixes() == {V4, V6}, timeout=10, what="both prefixes at the peer")
        assert view.routes[ipaddress.ip_network(V4)] == {
            "communities": ((65000 << 16) | 7, EDGE), "large": ((64512, 1, 2),), "local_pref": 150,
        }  # fmt: skip

        async def reported() -> bool:
            now = await reports(bus)
            session = now.get("metallb-system/tor")
            ip = now.get("198.51.100.7")
            return (
                isinstance(session, BGPSessionChanged) and session.state is BGPSessionState.ESTABLISHED
                and isinstance(ip, AnnouncementReported) and ip.announcing and ip.peers == ("tor",)
            )  # fmt: skip

        await async_wait_until(reported, timeout=10, what="session and announcement reported")
        samples = {m.name: {tuple(s.labels.values()): s.value for s in m.samples} for m in collector.collect()}
        assert samples["metallb_bgp_session_up"] == {("127.0.0.1",): 1}
        assert samples["metallb_bgp_announced_prefixes_total"] == {("127.0.0.1",): 2}
        both = {("198.51.100.7", "node-a", "bgp", "default/web"), ("2001:db8:1::7", "node-a", "bgp", "default/web")}
        # the gauge is handed its set once a report round at most: within a second or two
        await async_wait_until(lambda: _announced(announced) == both, timeout=5, what="the announced gauge")

        # ETP Local with the only endpoint elsewhere: withdrawn; an endpoint here: back
        await publish_decisions(bus, web(nodes=("node-b",)), web_v6(nodes=("node-b",)))
        await async_wait_until(lambda: not view.prefixes(), timeout=10, what="withdrawn under ETP Local")
        await publish_decisions(bus, web(nodes=("node-a", "node-b")), web_v6(nodes=("node-a",)))
        await async_wait_until(lambda: view.prefixes() == {V4, V6}, timeout=10, what="back with a local endpoint")

        # another node's labels change nothing here; this node leaving the routes' nodeSelectors withdraws them
        await publish_observed(bus, node("node-b", "127.0.0.2", labels={"rack": "b"}, version="2"))
        await publish_observed(bus, node("node-a", "127.0.0.1", "fd00::11", labels={"rack": "b"}, version="2"))
        await async_wait_until(lambda: not view.prefixes(), timeout=10, what="withdrawn: the node left rack a")
        await publish_observed(bus, node("node-a", "127.0.0.1", "fd00::11", labels={"rack": "a"}, version="3"))
        await async_wait_until(lambda: view.prefixes() == {V4, V6}, timeout=10, what="back in rack a")

        # aggregation changes the prefix; the decisions withdrawn, nothing is left
        await publish_decisions(bus, web(v4="198.51.100.0/24"))
        await async_wait_until(lambda: view.prefixes() == {"198.51.100.0/24", V6}, timeout=10, what="aggregate")
        await publish_decisions(bus, withdrawn("198.51.100.7"), withdrawn("2001:db8:1::7"))
        await async_wait_until(lambda: not view.prefixes(), timeout=10, what="withdrawn on release")
        await async_wait_until(lambda: _not_announcing(bus), timeout=10, what="the IP reported as no longer announced")
        await async_wait_until(lambda: _announced(announced) == set(), timeout=5, what="the gauge emptied")
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)
    await async_wait_until(lambda: bool(view.closed), timeout=5, what="the session closed")
    assert view.closed[-1].reason is CloseReason.NOTIFICATION_RECEIVED  # a Cease, not a dropped connection


def _announced(collector: AnnouncedCollector) -> set[tuple[str, ...]]:
    """The metallb_speaker_announced samples, as label tuples (ip, node, protocol, service)."""
    return {tuple(sample.labels.values()) for metric in collector.collect() for sample in metric.samples}


async def _not_announcing(bus: Bus) -> bool:
    event = (await reports(bus)).get("198.51.100.7")
    return isinstance(event, AnnouncementReported) and not event.announcing


@contextlib.asynccontextmanager
async def announcing(bus: Bus, view: PeerView, port: int) -> AsyncIterator[BgpAgent]:
    """node-a's agent on the world above, once both routes are at the peer; stopped when the block ends."""
    await world(bus, port)
    agent = BgpAgent(bus, node="node-a", collector=BgpCollector())
    stopping = asyncio.Event()
    running = asyncio.create_task(agent.run(stopping))
    try:
        await async_wait_until(lambda: view.prefixes() == {V4, V6}, timeout=10, what="routes at the peer")
        yield agent
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)


async def test_peer_removed_from_configuration_closes_its_session(bus: Bus, peer: tuple[PeerView, int]) -> None:
    view, port = peer
    async with announcing(bus, view, port) as agent:
        await publish_decisions(bus, in_force(pool("lan", "198.51.100.0/24", "2001:db8:1::/64")))
        await async_wait_until(lambda: bool(view.closed), timeout=10, what="the session closed")
        assert not agent.sessions


async def test_a_decisions_stream_made_again_is_read_anew_without_dropping_the_session(
    bus: Bus, peer: tuple[PeerView, int]
) -> None:
    """IPAM deleted and made again under the agent (a NATS store lost): what the new stream decides is what is
    announced — not what the old one held — and the sessions go on."""
    view, port = peer
    async with announcing(bus, view, port):
        await bus.js.delete_stream(StreamName.IPAM.value)
        await provision(bus)
        # ipam decides again on the new stream: the IPv6 address is no longer decided
        await publish_decisions(bus, in_force(pool("lan", "198.51.100.0/24", "2001:db8:1::/64"), tor(port)), web())
        await async_wait_until(lambda: view.prefixes() == {V4}, timeout=15, what="only what the new stream decides")
        assert not view.closed, "the session was dropped"
