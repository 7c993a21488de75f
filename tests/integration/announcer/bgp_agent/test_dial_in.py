"""The BGP agent's listener against a real nats-server, over loopback: a router that only dials in gets its
session, a stranger gets no OPEN, and two BGPPeers of one address are refused with the reason, each reported."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest

from schemas.events import BGPSessionChanged, BGPSessionState, ConfigObjectObserved
from services.announcer.agents.bgp import BgpAgent
from services.announcer.agents.bgp_metrics import BgpCollector
from services.announcer.bgp.session import ReceivedRoutes, SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig
from services.common.bus import Bus
from services.common.health import Health
from tests.bgp_world import bgp_peer, decided, in_force, node, publish_decisions, publish_observed
from tests.builders import pool
from tests.integration.announcer.bgp_agent.test_agent import PeerView, free_port, reports
from tests.waiting import async_wait_until

NODE, ROUTER, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3"
V4 = "198.51.100.7/32"


async def world(bus: Bus, *, closed_port: int) -> None:
    """One peer at ROUTER whose port nobody listens on: the agent's own dials are refused, only the router's
    connection to the agent can carry the session."""
    await publish_observed(bus, node("node-a", NODE))
    await publish_decisions(bus, in_force(pool("lan", "198.51.100.0/24"), tor(closed_port)), decided("198.51.100.7"))


def tor(port: int) -> ConfigObjectObserved:
    peer: ConfigObjectObserved = bgp_peer("tor", ROUTER, my_asn=64512, peer_asn=64513, peerPort=port, holdTime="9s")
    return peer


@pytest.fixture
async def agent(bus: Bus) -> AsyncIterator[tuple[BgpAgent, BgpCollector, int]]:
    listen_port = free_port()
    await world(bus, closed_port=free_port() + 1)
    collector = BgpCollector()
    agent = BgpAgent(bus, node="node-a", collector=collector, listen_port=listen_port)
    stopping = asyncio.Event()
    running = asyncio.create_task(agent.run(stopping))
    try:  # the listener is up before the first session starts
        await async_wait_until(lambda: bool(agent.sessions), timeout=10, what="the agent's first session")
        yield agent, collector, listen_port
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)


def router_config(listen_port: int) -> SpeakerConfig:
    """The router dials the node from ROUTER, and does not listen."""
    return SpeakerConfig(
        session=SessionConfig(local_as=64513, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.1"),
                              hold_time=9, received_routes=ReceivedRoutes.DECODED),
        peer_address=ipaddress.IPv4Address(NODE), peer_port=listen_port,
        source_address=ipaddress.IPv4Address(ROUTER), min_backoff=0.05, connect_time=0.5,
    )  # fmt: skip


def refused(collector: BgpCollector) -> float:
    for metric in collector.collect():
        if metric.name == "metalbus_bgp_refused_connections":
            return sum(sample.value for sample in metric.samples if sample.name.endswith("_total"))
    return 0.0


def read_from(source: str, port: int) -> bytes | OSError:
    try:  # the reset may come back before the connect call does
        with socket.create_connection((NODE, port), timeout=5, source_address=(source, 0)) as sock:
            return sock.recv(4096)
    except OSError as error:
        return error


async def test_a_router_that_only_dials_in_gets_its_session(
    bus: Bus, agent: tuple[BgpAgent, BgpCollector, int]
) -> None:
    _, _, listen_port = agent
    view = PeerView()
    async with Speaker(router_config(listen_port), on_event=view) as router:
        await async_wait_until(lambda: view.prefixes() == {V4}, timeout=10, what="the route, on the router's dial")
        assert router._connection is not None and router._connection.transport is not None
        assert router._connection.transport.get_extra_info("peername")[1] == listen_port

        async def established() -> bool:
            session = (await reports(bus)).get("metallb-system/tor")
            return isinstance(session, BGPSessionChanged) and session.state is BGPSessionState.ESTABLISHED

        await async_wait_until(established, timeout=10, what="the session reported Established")


async def test_a_stranger_gets_no_open_and_is_counted(agent: tuple[BgpAgent, BgpCollector, int]) -> None:
    _, collector, listen_port = agent
    for _ in range(2):
        got = await asyncio.to_thread(read_from, STRANGER, listen_port)
        assert isinstance(got, ConnectionResetError), got
    await async_wait_until(lambda: refused(collector) == 2, timeout=5, what="two refusals counted")


async def test_two_peers_of_one_address_are_refused_until_one_goes(
    bus: Bus, agent: tuple[BgpAgent, BgpCollector, int]
) -> None:
    agent_, _, listen_port = agent
    view = PeerView()
    closed_port = next(iter(agent_.sessions.values())).spec.speaker.peer_port
    configured = [pool("lan", "198.51.100.0/24"), tor(closed_port)]
    async with Speaker(router_config(listen_port), on_event=view):
        await async_wait_until(lambda: view.prefixes() == {V4}, timeout=10, what="the route")
        copy = bgp_peer("tor-copy", ROUTER, my_asn=64512, peer_asn=64513, holdTime="3s")
        await publish_decisions(bus, in_force(*configured, copy))

        async def both_refused() -> bool:
            now = await reports(bus)
            return all(
                isinstance(event := now.get(f"metallb-system/{name}"), BGPSessionChanged)
                and event.state is BGPSessionState.IDLE and event.reason.startswith("DuplicatePeerAddress: ")
                and f"BGPPeer {other} on this node" in event.reason
                for name, other in (("tor", "tor-copy"), ("tor-copy", "tor"))
            )  # fmt: skip

        await async_wait_until(both_refused, timeout=10, what="both peers reported refused, each naming the other")
        await async_wait_until(lambda: not view.prefixes(), timeout=10, what="the session ended")
        assert not agent_.sessions

        await publish_decisions(bus, in_force(*configured))
        await async_wait_until(lambda: view.prefixes() == {V4}, timeout=15, what="the session back, one peer left")


async def test_a_node_without_bgp_peers_leaves_the_port_to_others(bus: Bus) -> None:
    """L2 only (no BGPPeer): the agent does not take the BGP port another daemon on the node may want; the
    first peer makes it listen."""
    listen_port = free_port()
    await publish_observed(bus, node("node-a", NODE))
    await publish_decisions(bus, in_force(pool("lan", "198.51.100.0/24")))
    health = Health()
    health.set_ready("starting", True)  # readiness is the agent's alone here
    agent = BgpAgent(bus, node="node-a", collector=BgpCollector(), health=health, listen_port=listen_port)
    stopping = asyncio.Event()
    running = asyncio.create_task(agent.run(stopping))
    try:
        await async_wait_until(lambda: health.readiness()[0], timeout=10, what="the agent ready, its first plan made")
        with socket.socket() as other:  # another daemon takes the port: nothing holds it
            other.bind((NODE, listen_port))
        await publish_decisions(bus, in_force(pool("lan", "198.51.100.0/24"), tor(free_port() + 1)))
        await async_wait_until(lambda: bool(agent.sessions), timeout=10, what="the session of the first peer")
        with socket.socket() as other, pytest.raises(OSError):
            other.bind((NODE, listen_port))  # now the agent listens
    finally:
        stopping.set()
        await asyncio.wait_for(running, 10)
