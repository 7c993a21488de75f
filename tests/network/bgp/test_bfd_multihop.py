"""Multihop BFD (RFC 5883) beside an ebgpMultiHop session, across a routed hop, against FRR's bfdd (``peer X
multihop local-address Y``) and BIRD (``multihop`` in its BFD protocol): the session comes up on port 4784,
a path cut beyond the first router takes BFD and the BGP session down long before the 90 s hold time, and a
minimum TTL the packets cannot meet keeps BFD from coming up.

    node (eth0 10.78.1.2/24) ── hop (eth0 10.78.1.1, eth1 10.78.2.1: forwards) ── router (eth0 10.78.2.2/24)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.frr_bfd import BfdNeighbor, bfd_peer, bfdd_config, bgpd_config, frr_directory
from tests.network.bgp.harness import Net
from tests.network.bgp.link_harness import PeerSessionProcess
from tests.network.bgp.routers import Bird, Frr, start_frr_with_zebra

_SKIP = skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

NODE, HOP_NODE_SIDE, HOP_ROUTER_SIDE, ROUTER = "10.78.1.2", "10.78.1.1", "10.78.2.1", "10.78.2.2"
NODE6, HOP_NODE_SIDE6, HOP_ROUTER_SIDE6, ROUTER6 = "fd78:1::2", "fd78:1::1", "fd78:2::1", "fd78:2::2"
NODE_AS, ROUTER_AS = 64512, 64513
V4 = "198.51.100.9/32"


@contextmanager
def routed_hop(directory: Path) -> Iterator[tuple[Net, str]]:
    """The three namespaces; yields the net (node and router) and the hop's namespace."""
    with Lab("mbmh") as lab:
        node, hop, router = lab.namespace("node"), lab.namespace("hop"), lab.namespace("router")
        lab.veth(node, hop, ifname_a="eth0", ifname_b="eth0", addresses_a=[f"{NODE}/24", f"{NODE6}/64"],
                 addresses_b=[f"{HOP_NODE_SIDE}/24", f"{HOP_NODE_SIDE6}/64"])  # fmt: skip
        lab.veth(hop, router, ifname_a="eth1", ifname_b="eth0", addresses_a=[f"{HOP_ROUTER_SIDE}/24",
                 f"{HOP_ROUTER_SIDE6}/64"], addresses_b=[f"{ROUTER}/24", f"{ROUTER6}/64"])  # fmt: skip
        lab.sysctl(hop, "net.ipv4.ip_forward", "1")
        lab.sysctl(hop, "net.ipv6.conf.all.forwarding", "1")
        for ns, gateway in ((node, HOP_NODE_SIDE), (node, HOP_NODE_SIDE6), (router, HOP_ROUTER_SIDE),
                            (router, HOP_ROUTER_SIDE6)):  # fmt: skip
            lab.run(ns, "ip", "route", "add", "default", "via", gateway)
        yield Net(lab, node, router, directory), hop


def node_session(net: Net, *, minimum_ttl: int = 254, ipv6: bool = False) -> PeerSessionProcess:
    """The node's side, as the announcer runs a BGPPeer with ebgpMultiHop and a BFDProfile (300 ms x 3); with
    ``ipv6`` the session (and BFD) runs between the IPv6 addresses."""
    peer = {"myASN": NODE_AS, "peerASN": ROUTER_AS, "peerAddress": ROUTER6 if ipv6 else ROUTER,
            "sourceAddress": NODE6 if ipv6 else NODE, "ebgpMultiHop": True, "holdTime": "90s",
            "bfdProfile": "multihop"}  # fmt: skip
    profile = {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3, "minimumTtl": minimum_ttl}
    return PeerSessionProcess(net.lab, net.node, net.directory / "node.log", peer=peer, routes=[V4],
                              node_addresses=[NODE, NODE6], bfd_profiles={"multihop": profile})  # fmt: skip


def logged(session: PeerSessionProcess) -> str:
    return session.log.read_text() if session.log.exists() else ""


# --- FRR ----------------------------------------------------------------------------------------------------


@contextmanager
def frr_lab(tmp_path: Path, neighbor: BfdNeighbor) -> Iterator[tuple[Net, str, Frr]]:
    if (reason := Frr.skip_reason()) is not None:
        pytest.skip(reason)
    bgpd, bfdd = bgpd_config(router_as=ROUTER_AS, router_id=ROUTER, neighbors=[neighbor]), bfdd_config([neighbor])
    with routed_hop(tmp_path) as (net, hop), frr_directory(net.lab) as directory:
        frr = start_frr_with_zebra(net.lab, net.router, directory, bgpd, neighbor=neighbor.address,
                                   bfdd_config=bfdd)  # fmt: skip
        yield net, hop, frr


@pytest.mark.parametrize("ipv6", [False, True], ids=["ipv4", "ipv6"])
def test_frr_multihop_bfd_takes_the_session_down_beyond_the_first_router(tmp_path: Path, ipv6: bool) -> None:
    address = NODE6 if ipv6 else NODE
    with frr_lab(tmp_path, BfdNeighbor(address, remote_as=NODE_AS, local=ROUTER6 if ipv6 else ROUTER,
                                       interface=None)) as (net, hop, frr):  # fmt: skip
        node = node_session(net, ipv6=ipv6)
        wait_for(lambda: frr.route(V4), timeout=20, message="route at FRR")
        peer = wait_for(lambda: (p := bfd_peer(frr, address)).get("status") == "up" and p, timeout=10,
                        message="BFD up")  # fmt: skip
        assert peer["multihop"] is True
        wait_for(lambda: "new=UP" in logged(node), timeout=5, message="our BFD up")

        net.lab.run(hop, "ip", "link", "set", "eth1", "down")  # the path is cut one router away
        wait_for(lambda: "old=UP new=DOWN diag=CONTROL_DETECTION_TIME_EXPIRED" in logged(node), timeout=5,
                 message="our BFD down")  # fmt: skip
        wait_for(lambda: node.states()[-1].startswith("Idle"), timeout=5, message="the BGP session torn down")
        wait_for(lambda: bfd_peer(frr, address).get("status") == "down", timeout=5, message="BFD down at FRR")
        wait_for(lambda: frr.route(V4) is None, timeout=5, message="route gone at FRR (hold time is 90 s)")

        net.lab.run(hop, "ip", "link", "set", "eth1", "up")
        wait_for(lambda: frr.route(V4), timeout=30, message="route back with the path")


# --- BIRD ---------------------------------------------------------------------------------------------------

BIRD_MINIMUM_TTL = 60  # BIRD sends multihop BFD with the system's default TTL (64), not 255: minimumTtl must allow it
BIRD_CONF = f"""
router id {ROUTER};
log "{{log}}" all;
protocol device {{ scan time 1; }}
protocol bfd {{ multihop {{ min rx interval 300 ms; min tx interval 300 ms; multiplier 3; }}; }}
protocol bgp node {{
    local {ROUTER} as {ROUTER_AS};
    neighbor {NODE} as {NODE_AS};
    multihop;
    passive on;
    hold time 90;
    bfd on;
    ipv4 {{ import all; export none; }};
}}
"""


@contextmanager
def bird_lab(tmp_path: Path) -> Iterator[tuple[Net, str, Bird]]:
    if (reason := Bird.skip_reason()) is not None:
        pytest.skip(reason)
    with routed_hop(tmp_path) as (net, hop):
        directory = tmp_path / "bird"
        directory.mkdir()
        conf = directory / "bird.conf"
        conf.write_text(BIRD_CONF.replace("{log}", str(directory / "bird.log")))
        bird = Bird(net.lab, net.router, directory)
        bird.proc = net.lab.popen(net.router, "bird", "-f", "-c", str(conf), "-s", bird.socket, "-P",
                                  str(directory / "bird.pid"), stdin=subprocess.DEVNULL)  # fmt: skip
        yield net, hop, bird


def bird_bfd(bird: Bird) -> str:
    """BIRD's state of the session with the node (Down, Init, Up), or "" before it has one."""
    for line in bird.birdc("show bfd sessions", check=False).stdout.splitlines():
        if line.startswith(NODE):
            return line.split()[2]
    return ""


def test_bird_multihop_bfd_takes_the_session_down_beyond_the_first_router(tmp_path: Path) -> None:
    with bird_lab(tmp_path) as (net, hop, bird):
        node = node_session(net, minimum_ttl=BIRD_MINIMUM_TTL)
        wait_for(lambda: bird.route_text(V4), timeout=20, message="route at BIRD")
        wait_for(lambda: bird_bfd(bird) == "Up", timeout=10, message="BFD up at BIRD")

        net.lab.run(hop, "ip", "link", "set", "eth1", "down")
        wait_for(lambda: node.states()[-1].startswith("Idle"), timeout=5, message="the BGP session torn down")
        wait_for(lambda: bird.route_text(V4) is None, timeout=5, message="route gone at BIRD (hold time is 90 s)")


def test_the_default_minimum_ttl_refuses_packets_from_further_than_one_router(tmp_path: Path) -> None:
    """MetalLB's default minimumTtl (254) accepts one router on the way; BIRD's TTL-64 packets stay unheard."""
    with bird_lab(tmp_path) as (net, _, bird):
        node = node_session(net)
        wait_for(lambda: bird.route_text(V4), timeout=20, message="BGP up (BFD does not hold it back)")
        wait_for(lambda: bird_bfd(bird) == "Init", timeout=10, message="BIRD hears our Down")
        # three more of BIRD's packets reach the node (tcpdump exits once it saw them), each dropped
        net.lab.run(net.node, "tcpdump", "-i", "eth0", "-c", "3", "-n", f"udp and src {ROUTER} and dst port 4784",
                    timeout=15)  # fmt: skip
        assert bird_bfd(bird) == "Init"
        assert "new=UP" not in logged(node)
