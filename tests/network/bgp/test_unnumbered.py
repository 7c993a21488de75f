"""BGP unnumbered: a node and a router joined by one veth that has IPv6 link-local addresses and nothing else.
The node's session (a BGPPeer with ``interface: eth0``) finds the router on the link from its router
advertisements, dials its link-local address, and its IPv4 service prefix reaches the router with the node's
link-local address as next hop (RFC 8950). Against FRR 8 (`neighbor eth0 interface remote-as external`, zebra
sending the advertisements and installing the route in the router's kernel through that next hop), BIRD 2
(its radv protocol, `extended next hop on`) and GoBGP 3 (`neighbor-interface`, advertisements from a daemon
beside it)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.frr_bfd import bfd_peer
from tests.network.bgp.link_harness import (
    GOBGP_UNNUMBERED,
    RADV_ONLY,
    PeerSessionProcess,
    bird_unnumbered,
    frr_unnumbered,
    node_link_local,
)
from tests.network.bgp.routers import GOBGP_API, Bird, Frr, GoBgp, start_frr_with_zebra

_SKIP = skip_reason() or Frr.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

V4, V6 = "198.51.100.7/32", "2001:db8:77::7/128"
UNNUMBERED_PEER = {"myASN": 64512, "peerASN": 64513, "interface": "eth0", "holdTime": "9s"}


@dataclass
class Link:
    lab: Lab
    node: str
    router: str
    frr: Frr
    directory: Path

    def node_ll(self) -> str:
        return node_link_local(self.lab, self.node)

    def neighbor(self) -> dict[str, Any]:
        return dict(json.loads(self.frr.vtysh("show bgp neighbors eth0 json").stdout or "{}").get("eth0", {}))

    def bgp_route(self, prefix: str) -> dict[str, Any] | None:
        family = "ipv6" if ":" in prefix else "ipv4"
        data = json.loads(self.frr.vtysh(f"show bgp {family} unicast {prefix} json").stdout or "{}")
        paths = data.get("paths") or []
        return dict(paths[0]) if paths else None

    def kernel_route(self, prefix: str) -> dict[str, Any] | None:
        family = "-6" if ":" in prefix else "-4"
        out = self.lab.run(self.router, "ip", "-j", family, "route", "show", prefix, check=False).stdout
        routes = json.loads(out) if out.strip() else []
        return dict(routes[0]) if routes else None

    def explain(self, session: PeerSessionProcess) -> str:
        return "\n".join([*session.states(), json.dumps(self.neighbor(), indent=1)[:2000]])


@pytest.fixture
def link(tmp_path: Path) -> Iterator[Link]:
    with Lab("mbunn") as lab:
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router)  # link-local addresses only
        with tempfile.TemporaryDirectory(prefix="mbunn-frr-") as frr_dir:  # zebra runs as frr: not in tmp_path
            frr = start_frr_with_zebra(lab, router, Path(frr_dir), frr_unnumbered(), neighbor="eth0")
            yield Link(lab, node, router, frr, tmp_path)


def test_ipv4_and_ipv6_prefixes_reach_frr_over_the_link_local_session(link: Link) -> None:
    session = PeerSessionProcess(link.lab, link.node, link.directory / "node.log", peer=UNNUMBERED_PEER,
                                 routes=[V4, V6])  # fmt: skip
    try:
        wait_for(lambda: link.neighbor().get("bgpState") == "Established", timeout=20, message="FRR Established")
    except TimeoutError:
        print(link.explain(session))
        raise
    node_ll = link.node_ll()
    neighbor = link.neighbor()
    assert neighbor["bgpNeighborAddr"] == node_ll  # FRR found the node on the link
    assert neighbor["neighborCapabilities"]["extendedNexthop"] == "advertisedAndReceived"

    route = wait_for(lambda: link.bgp_route(V4), timeout=10, message=f"{V4} in FRR")
    assert [h["ip"] for h in route["nexthops"]] == [node_ll] and route["valid"], route  # the 16-octet form
    v6 = wait_for(lambda: link.bgp_route(V6), timeout=10, message=f"{V6} in FRR")
    assert any(h["ip"] == node_ll for h in v6["nexthops"]), v6["nexthops"]

    # zebra installs the IPv4 route through the node's IPv6 link-local address (RFC 5549 in the kernel)
    kernel = wait_for(lambda: link.kernel_route(V4), timeout=10, message=f"{V4} in the router's kernel")
    assert kernel.get("dev") == "eth0" and kernel.get("via") == {"family": "inet6", "host": node_ll}, kernel
    assert session.reached("Established")


def test_the_session_waits_for_a_router_with_the_reason_in_its_state(link: Link) -> None:
    link.frr.vtysh("configure terminal\nrouter bgp 64513\nneighbor eth0 shutdown")
    session = PeerSessionProcess(link.lab, link.node, link.directory / "node.log",
                                 peer={**UNNUMBERED_PEER, "interface": "eth9"}, routes=[V4])  # fmt: skip
    wait_for(lambda: session.reached("Idle InterfaceMissing"), timeout=10, message="the missing interface told")
    assert "interface 'eth9' does not exist on this node" in session.states()[-1]


@pytest.mark.skipif(Bird.skip_reason() is not None, reason=Bird.skip_reason() or "")
def test_bird_takes_the_ipv4_prefix_with_the_link_local_next_hop(tmp_path: Path) -> None:
    with Lab("mbunn") as lab:
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router)
        node_ll = node_link_local(lab, node)
        config = bird_unnumbered(neighbor=node_ll, log_file=tmp_path / "bird" / "bird.log")
        bird = Bird.run(lab, router, tmp_path / "bird", config)
        session = PeerSessionProcess(lab, node, tmp_path / "node.log", peer=UNNUMBERED_PEER, routes=[V4, V6])
        try:
            wait_for(bird.established, timeout=20, message="BIRD Established")
        except TimeoutError:
            print(session.states(), bird.diagnostics())
            raise
        text = wait_for(lambda: bird.route_text(V4), timeout=10, message=f"{V4} at BIRD")
        assert f"BGP.next_hop: :: {node_ll}" in text, text  # IPv4 prefix, IPv6 next hop: link-local only
        assert f"via {node_ll} on eth0" in text, text
        v6 = wait_for(lambda: bird.route_text(V6), timeout=10, message=f"{V6} at BIRD")
        assert f"via {node_ll} on eth0" in v6, v6


@pytest.mark.skipif(Bird.skip_reason() or GoBgp.skip_reason(), reason="needs gobgpd, and bird for the advertisements")
def test_gobgp_with_neighbor_interface_takes_the_prefixes(tmp_path: Path) -> None:
    with Lab("mbunn") as lab:
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router)
        Bird.run(lab, router, tmp_path / "radv", RADV_ONLY.format(interface="eth0"))
        session = PeerSessionProcess(lab, node, tmp_path / "node.log", peer=UNNUMBERED_PEER, routes=[V4, V6])
        node_ll = node_link_local(lab, node)
        # GoBGP resolves its neighbour once, from the kernel's neighbour table: the node's advertisement put it there
        wait_for(lambda: node_ll in lab.run(router, "ip", "-6", "neigh", "show", "dev", "eth0").stdout, timeout=10,
                 message="the node in the router's neighbour table")  # fmt: skip
        conf = tmp_path / "gobgpd.toml"
        conf.write_text(GOBGP_UNNUMBERED.format(interface="eth0"))
        lab.popen(router, "gobgpd", "-f", str(conf), "-p", "--api-hosts", GOBGP_API, "--pprof-disable",
                  stdin=subprocess.DEVNULL)  # fmt: skip
        host, port = GOBGP_API.split(":")

        def rib(family: str, prefix: str) -> dict[str, Any] | None:
            run = lab.run(router, "gobgp", "-u", host, "-p", port, "global", "rib", "-a", family, prefix, "-j",
                          check=False)  # fmt: skip
            paths = json.loads(run.stdout or "{}").get(prefix) if run.returncode == 0 else None
            return {a["type"]: a for a in paths[0]["attrs"]} if paths else None

        try:
            v4 = wait_for(lambda: rib("ipv4", V4), timeout=20, message=f"{V4} at GoBGP")
        except TimeoutError:
            print(session.states(), lab.run(router, "gobgp", "-u", host, "-p", port, "neighbor", check=False).stdout)
            raise
        assert 3 not in v4 and v4[14]["nexthop"] == node_ll, v4  # MP_REACH_NLRI with the IPv6 link-local next hop
        v6 = wait_for(lambda: rib("ipv6", V6), timeout=10, message=f"{V6} at GoBGP")
        assert v6[14]["nexthop"] == node_ll, v6


def test_a_password_signs_the_link_local_session(tmp_path: Path) -> None:
    """TCP MD5 (RFC 2385) keyed on the peer's link-local address, found on the link: FRR, which drops every
    unsigned segment of a neighbour with a password, comes up."""
    config = frr_unnumbered(password="s3cret-md5")
    with Lab("mbunn") as lab, tempfile.TemporaryDirectory(prefix="mbunn-frr-") as frr_dir:
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router)
        frr = start_frr_with_zebra(lab, router, Path(frr_dir), config, neighbor="eth0")
        link = Link(lab, node, router, frr, tmp_path)
        session = PeerSessionProcess(lab, node, tmp_path / "node.log", routes=[V4],
                                     peer={**UNNUMBERED_PEER, "password": "s3cret-md5"})  # fmt: skip
        try:
            wait_for(lambda: link.neighbor().get("bgpState") == "Established", timeout=20, message="FRR Established")
        except TimeoutError:
            print(link.explain(session))
            raise
        wait_for(lambda: link.bgp_route(V4), timeout=10, message=f"{V4} in FRR")


def test_an_interface_that_goes_and_comes_back_takes_the_session_with_it(link: Link) -> None:
    session = PeerSessionProcess(link.lab, link.node, link.directory / "node.log", peer=UNNUMBERED_PEER,
                                 routes=[V4])  # fmt: skip
    wait_for(lambda: link.bgp_route(V4), timeout=20, message=f"{V4} in FRR")
    link.lab.run(link.node, "ip", "link", "del", "eth0")  # the veth pair goes, both ends
    wait_for(lambda: session.states()[-1].startswith("Idle InterfaceMissing"), timeout=10,
             message="the lost interface told")  # fmt: skip
    wait_for(lambda: link.bgp_route(V4) is None, timeout=20, message=f"{V4} gone from FRR")
    link.lab.veth(link.node, link.router)  # a new link, new link-local addresses
    try:
        wait_for(lambda: link.neighbor().get("bgpNeighborAddr") == link.node_ll() and link.bgp_route(V4),
                 timeout=30, message=f"{V4} back in FRR over the new link")  # fmt: skip
    except TimeoutError:
        print(link.explain(session))
        raise
    assert session.proc.poll() is None


LISTENING_NODE = """
import asyncio, ipaddress, sys
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig

async def main():
    async with Listener(address=ipaddress.IPv6Address("::"), port=179) as listener:
        speakers = []
        for index, device in enumerate(("eth0", "eth1"), start=1):
            session = SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address(f"10.0.0.{index}"))
            config = SpeakerConfig(session=session, peer_address=ipaddress.IPv6Address("fe80::1"), connect=False,
                                   device=device)
            speakers.append(Speaker(config))
            speakers[-1].start()
            listener.add(speakers[-1])
        print("listening", flush=True)
        await asyncio.get_running_loop().connect_read_pipe(asyncio.Protocol, sys.stdin)
        await asyncio.sleep(3600)

asyncio.run(main())
"""

DIAL_AND_READ_OPEN = """
import socket, sys
target, port = sys.argv[1], 179
with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
    sock.settimeout(5)
    sock.bind(("fe80::1", 0, 0, socket.if_nametoindex("eth0")))
    sock.connect((target, port, 0, socket.if_nametoindex("eth0")))
    head = sock.recv(29)
    print(socket.inet_ntoa(head[24:28]))  # the OPEN's BGP identifier
"""


def test_a_router_dialling_in_reaches_the_session_of_its_own_link(tmp_path: Path) -> None:
    """Two links, each with its router at fe80::1 (a common way to number unnumbered links): a connection
    from the router on eth1 is the eth1 session's, not the one that has the same address on eth0."""
    with Lab("mbunn") as lab:
        node = lab.namespace("node")
        routers = {"eth0": lab.namespace("ra"), "eth1": lab.namespace("rb")}
        for device, router in routers.items():
            lab.veth(node, router, ifname_a=device)
            lab.run(router, "ip", "-6", "addr", "flush", "dev", "eth0", "scope", "link")
            lab.run(router, "ip", "-6", "addr", "add", "fe80::1/64", "dev", "eth0")
        proc = lab.popen(node, sys.executable, "-c", LISTENING_NODE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        for device, identifier in (("eth1", "10.0.0.2"), ("eth0", "10.0.0.1")):
            target = node_link_local(lab, node, device)
            read = lab.run(routers[device], sys.executable, "-c", DIAL_AND_READ_OPEN, target)
            assert read.stdout.strip() == identifier, (device, read.stdout, read.stderr)


FAST_BFD = {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3}


@pytest.mark.skipif(skip_reason("ip6tables") is not None, reason=skip_reason("ip6tables") or "")
def test_bfd_beside_the_link_local_session_takes_it_down_on_a_cut_link(tmp_path: Path) -> None:
    """Single hop BFD (RFC 5881) between the link-local addresses, FRR's bfdd on the other side (`neighbor eth0
    bfd`): up with the session; when the link stops passing packets (the interfaces stay up, so only BFD can
    tell) the session and the route go in about a second, not after the 90 s hold time; back when it passes
    again; and over a new link (new link-local addresses) BFD follows the router found there."""
    with Lab("mbunn") as lab, tempfile.TemporaryDirectory(prefix="mbunn-frr-") as frr_dir:
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router)
        frr = start_frr_with_zebra(lab, router, Path(frr_dir), frr_unnumbered(bfd=True, timers=(30, 90)),
                                   neighbor="eth0", bfdd_config="hostname router\nbfd\n")  # fmt: skip
        link = Link(lab, node, router, frr, tmp_path)
        session = PeerSessionProcess(lab, node, tmp_path / "node.log", routes=[V4], bfd_profiles={"fast": FAST_BFD},
                                     peer={**UNNUMBERED_PEER, "holdTime": "90s", "bfdProfile": "fast"})  # fmt: skip
        node_ll = link.node_ll()
        try:
            wait_for(lambda: link.bgp_route(V4), timeout=20, message=f"{V4} in FRR")
            up = wait_for(lambda: (p := bfd_peer(frr, node_ll)).get("status") == "up" and p, timeout=10,
                          message="BFD up in FRR towards the node's link-local address")  # fmt: skip
        except TimeoutError:
            print(link.explain(session), frr.vtysh("show bfd peers").stdout, session.log.read_text()[-3000:])
            raise
        assert up.get("interface") == "eth0" and up.get("local", "").startswith("fe80:"), up

        drop = [("-I", "INPUT", "-i"), ("-I", "OUTPUT", "-o")]
        for verb, chain, way in drop:  # the cable is cut: nothing passes, both ends stay up
            lab.run(router, "ip6tables", verb, chain, way, "eth0", "-j", "DROP")
        cut = time.monotonic()
        wait_for(lambda: link.bgp_route(V4) is None, timeout=5, message=f"{V4} gone from FRR")
        wait_for(lambda: "new=DOWN" in session.log.read_text() and not session.states()[-1].startswith("Established"),
                 timeout=5, message="the node's BFD Down and its session down")  # fmt: skip
        print(f"cut link → session down on both sides in {time.monotonic() - cut:.2f} s (hold time 90 s)")
        assert bfd_peer(frr, node_ll).get("status") == "down"

        for _verb, chain, way in drop:
            lab.run(router, "ip6tables", "-D", chain, way, "eth0", "-j", "DROP")
        wait_for(lambda: link.bgp_route(V4) and bfd_peer(frr, node_ll).get("status") == "up", timeout=30,
                 message="the session and BFD back once the link passes packets")  # fmt: skip

        lab.run(node, "ip", "link", "del", "eth0")  # a new link: new link-local addresses at both ends
        lab.veth(node, router)
        new_ll = link.node_ll()
        try:
            wait_for(lambda: bfd_peer(frr, new_ll).get("status") == "up", timeout=30,
                     message="BFD up again towards the node's new link-local address")  # fmt: skip
        except TimeoutError:
            print(link.explain(session), frr.vtysh("show bfd peers").stdout, session.log.read_text()[-3000:])
            raise
        started = session.log.read_text().rsplit("bfd started", 1)[1].splitlines()[0]
        assert f"local={new_ll} remote={node_link_local(lab, router)} device=eth0" in started, started
