"""Real announcers and routers that dial in: BIRD 2, FRR 8 and GoBGP 3 each configured to connect to the node,
whose own dials go to a port nobody listens on, get their session on the announcer's listener and the route;
when both ends dial, exactly one TCP connection carries the session and it stays; an address no BGPPeer has
connects and reads nothing at all (no OPEN), and the announcer says so once."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bgp_world import allocated, bgp_advertisement, bgp_peer, endpoints, node, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Router
from tests.network.bgp_agent.harness import NODES, ROUTER4, Fabric, fabric
from tests.network.bgp_agent.one_router import Daemon, daemon_params, node1_peering, router_for

_SKIP = skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

IP4 = "198.51.100.9"
V4 = f"{IP4}/32"
NODE_AS, ROUTER_AS = 64512, 64513
NODE4 = NODES["node1"][0]
CLOSED_PORT = 1179  # the routers listen on 179 only: the announcer's own dials to this port are refused
STRANGER = "10.77.0.99"


def publish_world(fab: Fabric, *, peer_port: int) -> None:
    fab.observe(
        pool("lan", "198.51.100.0/24"),
        bgp_peer("router", ROUTER4, my_asn=NODE_AS, peer_asn=ROUTER_AS, peerPort=peer_port, holdTime="9s"),
        bgp_advertisement("ads"),
        *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
        endpoints("web", {"node1": 1}),
        service("web"),
    )
    fab.allocate(allocated("web", IP4, pool="lan"))


def start_node1(fab: Fabric) -> None:
    fab.start_announcer("node1")


def bgp_connections(fab: Fabric) -> list[str]:
    """The established TCP connections of node1 on the BGP port, either end, as ``local peer`` pairs."""
    out = fab.lab.run(fab.nodes["node1"].ns, "ss", "-Htn", "state", "established",
                      "( sport = :179 or dport = :179 )").stdout  # fmt: skip
    ends = [" ".join(line.split()[2:4]) for line in out.splitlines() if line.strip()]
    return [end.replace("[::ffff:", "").replace("]", "") for end in ends]  # IPv4 on the dual-stack listener


@pytest.fixture(params=daemon_params())
def dialling(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Fabric, Router]]:
    """A router configured to connect to node1 (not passive), retrying every 2 s."""
    daemon: Daemon = request.param
    peering = node1_peering(router_as=ROUTER_AS, node_as=NODE_AS, passive=False)
    with fabric(tmp_path) as fab, router_for(fab, daemon, tmp_path / daemon.NAME, peering) as router:
        yield fab, router


def test_a_router_dials_in_and_gets_the_route(dialling: tuple[Fabric, Router]) -> None:
    fab, router = dialling
    publish_world(fab, peer_port=CLOSED_PORT)
    start_node1(fab)
    wait_for(router.established, timeout=30, message="the session the router dialled")
    route = wait_for(lambda: router.route(V4), timeout=15, message=f"{V4} at the router")
    assert route.next_hop == NODE4 and route.as_path == (NODE_AS,)
    assert [connection.split()[0] for connection in bgp_connections(fab)] == [f"{NODE4}:179"]  # the router's dial
    announcer = fab.nodes["node1"].announcer
    assert announcer is not None and announcer.logged("bgp connect failed")  # its own dials were refused


def test_both_ends_dial_and_one_connection_stays(dialling: tuple[Fabric, Router]) -> None:
    """The announcer dials 179 and listens; the router dials and listens: one session, on one TCP connection,
    which stays (no flap from a collision resolved two ways)."""
    fab, router = dialling
    publish_world(fab, peer_port=179)
    start_node1(fab)
    wait_for(router.established, timeout=30, message="the session")
    wait_for(lambda: router.route(V4), timeout=15, message=f"{V4} at the router")
    wait_for(lambda: len(bgp_connections(fab)) == 1, timeout=15, message="one TCP connection left")
    first = bgp_connections(fab)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # a sample every 100 ms for 5 s: the same connection, up, the route there
        assert bgp_connections(fab) == first and router.established() and router.route(V4) is not None
        time.sleep(0.1)


PROBE = """
import socket, sys
try:  # the reset may come back before the connect call does
    with socket.create_connection((sys.argv[1], 179), timeout=5, source_address=(sys.argv[2], 0)) as s:
        print(f"read {len(s.recv(4096))} octets")
except ConnectionResetError:
    print("reset")
"""


def test_an_address_no_bgppeer_has_reads_no_open(dialling: tuple[Fabric, Router]) -> None:
    fab, router = dialling
    publish_world(fab, peer_port=CLOSED_PORT)
    start_node1(fab)
    wait_for(router.established, timeout=30, message="the configured router's session")
    fab.lab.run(fab.router, "ip", "addr", "add", f"{STRANGER}/24", "dev", "eth0")
    for _ in range(3):
        read = fab.lab.run(fab.router, sys.executable, "-c", PROBE, NODE4, STRANGER).stdout.strip()
        assert read == "reset"  # before a single octet: no OPEN tells a stranger our AS or identifier
    announcer = fab.nodes["node1"].announcer
    assert announcer is not None
    announcer.wait_logged(f'refused before OPEN" source={STRANGER} ')
    lines = [line for line in announcer.log if f"source={STRANGER}" in line]
    assert len(lines) == 1, lines  # three attempts, one line
    wait_for(lambda: fab.metrics("node1").get("metalbus_bgp_refused_connections_total") == 3, timeout=5,
             message="three refusals counted")  # fmt: skip
    assert router.established()  # the configured router's session is untouched
