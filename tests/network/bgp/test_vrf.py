"""A BGPPeer with ``vrf``: the session runs in the node's Linux VRF. The node has a VRF ``red`` enslaving the
interface towards FRR (reachable only through it) and, in its main table, an interface towards another
router. The VRF peer comes up and FRR gets the routes with next hops of the VRF's own interface (not the
node's main addresses); a VRF peer whose address is only reachable outside the VRF is not reached through
it; a password signs the session in the VRF (TCP MD5: FRR drops unsigned segments); an unnumbered session
finds FRR on its interface inside the VRF; a router that dials in reaches the VRF session where the node
accepts connections across VRFs (``tcp_l3mdev_accept``); a VRF that does not exist is the reason in the session's state
until it appears. Where the kernel has no VRF driver (CONFIG_NET_VRF) only
what needs no VRF device runs here, and test_vrf_in_guest.py runs this file in a guest whose kernel has one.
Deadlines are generous: in that guest (qemu's TCG) everything runs several times slower."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.frr_bfd import BfdNeighbor, bfd_peer, bfdd_config, bgpd_config
from tests.network.bgp.link_harness import PeerSessionProcess, frr_unnumbered, node_link_local
from tests.network.bgp.routers import Frr, Peering, start_frr_with_zebra

_SKIP = skip_reason() or Frr.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

V4, V6 = "198.51.100.7/32", "2001:db8:77::7/128"
IN_VRF = {"node": ("10.88.0.2", "fd88::2"), "router": ("10.88.0.1", "fd88::1")}
MAIN = {"node": ("10.99.0.2", "fd99::2"), "router": ("10.99.0.1", "fd99::1")}
NODE_FACTS = ("10.99.0.2", "fd99::2")  # the node's InternalIPs are in the main table
PASSWORD = "vrf-md5-s3cret"


@dataclass
class Net:
    lab: Lab
    node: str
    directory: Path
    in_vrf: Frr  # reachable through VRF red only
    outside: Frr  # reachable through the main table only

    def session(self, name: str, **peer: object) -> PeerSessionProcess:
        spec = {"myASN": 64512, "peerASN": 64513, "holdTime": "9s", **peer}
        return PeerSessionProcess(self.lab, self.node, self.directory / f"{name}.log", peer=spec, routes=[V4, V6],
                                  node_addresses=NODE_FACTS)  # fmt: skip


def frr(lab: Lab, ns: str, directory: Path, addresses: dict[str, tuple[str, str]], password: str | None,
        *, dials: bool = False) -> Frr:  # fmt: skip
    peering = Peering(router_id=addresses["router"][0], local=addresses["router"][0], local_as=64513,
                      neighbor=addresses["node"][0], neighbor_as=64512, graceful_restart=False,
                      password=password, passive=not dials)  # fmt: skip
    return Frr.start(lab, ns, directory, peering)


def prefixed(addresses: tuple[str, str]) -> list[str]:
    return [f"{addresses[0]}/24", f"{addresses[1]}/64"]


def add_vrf(lab: Lab, ns: str, name: str, table: int) -> None:
    result = lab.run(ns, "ip", "link", "add", name, "type", "vrf", "table", str(table), check=False)
    if result.returncode != 0:
        pytest.skip(f"no VRF device can be made here (a kernel without CONFIG_NET_VRF?): {result.stderr.strip()}")
    lab.run(ns, "ip", "link", "set", name, "up")


@contextmanager
def vrf_net(tmp_path: Path, *, password: str | None = None, router_dials: bool = False) -> Iterator[Net]:
    """The node, FRR behind its eth1 (to be put in a VRF) and FRR behind eth2 (the main table); with
    ``password``, FRR signs its session with it; with ``router_dials``, FRR behind eth1 dials the node."""
    with Lab("mbvrf") as lab:
        node, router, other = lab.namespace("node"), lab.namespace("router"), lab.namespace("other")
        lab.veth(node, router, ifname_a="eth1", addresses_a=prefixed(IN_VRF["node"]),
                 addresses_b=prefixed(IN_VRF["router"]))  # fmt: skip
        lab.veth(node, other, ifname_a="eth2", addresses_a=prefixed(MAIN["node"]), addresses_b=prefixed(MAIN["router"]))
        in_vrf = frr(lab, router, tmp_path / "frr-in-vrf", IN_VRF, password, dials=router_dials)
        outside = frr(lab, other, tmp_path / "frr-outside", MAIN, password)
        yield Net(lab, node, tmp_path, in_vrf, outside)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with vrf_net(tmp_path) as built:
        yield built


def test_the_session_runs_in_the_vrf_and_only_there(net: Net) -> None:
    add_vrf(net.lab, net.node, "red", 10)
    net.lab.run(net.node, "ip", "link", "set", "eth1", "master", "red")
    assert net.lab.run(net.node, "ip", "route", "get", IN_VRF["router"][0], check=False).returncode != 0
    in_vrf = net.session("in-vrf", peerAddress=IN_VRF["router"][0], vrf="red")
    astray = net.session("astray", peerAddress=MAIN["router"][0], vrf="red")  # reachable outside the VRF only
    try:
        wait_for(net.in_vrf.established, timeout=45, message="the VRF session Established")
    except TimeoutError:
        print(in_vrf.states(), net.in_vrf.diagnostics())
        raise
    v4 = wait_for(lambda: net.in_vrf.route(V4), timeout=30, message=f"{V4} at the router")
    v6 = wait_for(lambda: net.in_vrf.route(V6), timeout=30, message=f"{V6} at the router")
    assert (v4.next_hop, v6.next_hop) == IN_VRF["node"]  # the VRF's own addresses, not the node's main ones

    # the peer outside the VRF: by now it would have been Established through the main table
    assert not net.outside.established()
    assert not any(state.startswith(("OpenSent", "Established")) for state in astray.states()), astray.states()
    astray.proc.terminate()
    outside = net.session("outside", peerAddress=MAIN["router"][0])  # the same peer without the VRF: reached
    wait_for(net.outside.established, timeout=45, message="the main-table session Established")
    assert outside.reached("Established")


def test_a_missing_vrf_or_a_device_that_is_not_one_is_the_reason_in_the_state(net: Net) -> None:
    session = net.session("blue", peerAddress=IN_VRF["router"][0], vrf="blue")
    wait_for(lambda: session.reached("Idle VrfMissing"), timeout=30, message="the missing VRF told")
    assert session.states()[-1] == "Idle VrfMissing: VRF 'blue' does not exist on this node"
    net.lab.run(net.node, "ip", "link", "add", "blue", "type", "bridge")
    wait_for(lambda: session.reached("Idle NotAVrf"), timeout=30, message="a device that is not a VRF told")
    assert session.states()[-1] == "Idle NotAVrf: 'blue' is a bridge device, not a VRF"
    assert session.proc.poll() is None  # never a crash


def test_the_session_dials_once_its_vrf_appears(net: Net) -> None:
    session = net.session("red", peerAddress=IN_VRF["router"][0], vrf="red")
    wait_for(lambda: session.reached("Idle VrfMissing"), timeout=30, message="the missing VRF told")
    add_vrf(net.lab, net.node, "red", 10)
    net.lab.run(net.node, "ip", "link", "set", "eth1", "master", "red")
    wait_for(net.in_vrf.established, timeout=45, message="the VRF session Established")


def test_a_password_signs_the_session_in_the_vrf(tmp_path: Path) -> None:
    """TCP MD5 (RFC 2385) on a socket bound to the VRF: FRR, which drops every unsigned segment of a neighbour
    with a password, comes up and has the routes."""
    with vrf_net(tmp_path, password=PASSWORD) as net:
        add_vrf(net.lab, net.node, "red", 10)
        net.lab.run(net.node, "ip", "link", "set", "eth1", "master", "red")
        session = net.session("signed", peerAddress=IN_VRF["router"][0], vrf="red", password=PASSWORD)
        try:
            wait_for(net.in_vrf.established, timeout=45, message="the signed VRF session Established")
        except TimeoutError:
            print(session.states(), net.in_vrf.diagnostics())
            raise
        wait_for(lambda: net.in_vrf.route(V4), timeout=30, message=f"{V4} at the router")


def test_an_unnumbered_session_runs_in_the_vrf_of_its_interface(tmp_path: Path) -> None:
    """``interface`` and ``vrf`` together: until eth0 is in the VRF the reason is in the state; then the router
    is found on the link inside the VRF and FRR has the IPv4 route through the node's link-local address."""
    with Lab("mbvrfu") as lab, tempfile.TemporaryDirectory(prefix="mbvrfu-frr-") as frr_dir:
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router)  # link-local addresses only
        frr = start_frr_with_zebra(lab, router, Path(frr_dir), frr_unnumbered(), neighbor="eth0")
        add_vrf(lab, node, "red", 10)
        peer = {"myASN": 64512, "peerASN": 64513, "interface": "eth0", "vrf": "red", "holdTime": "9s"}
        session = PeerSessionProcess(lab, node, tmp_path / "node.log", peer=peer, routes=[V4, V6])
        wait_for(lambda: session.reached("Idle InterfaceNotInVrf"), timeout=30, message="eth0 outside the VRF told")
        lab.run(node, "ip", "link", "set", "eth0", "master", "red")
        try:
            wait_for(frr.established, timeout=60, message="the unnumbered session in the VRF Established")
        except TimeoutError:
            print(session.states(), frr.diagnostics())
            raise
        v4 = wait_for(lambda: frr.route(V4), timeout=30, message=f"{V4} at the router")
        assert v4.next_hop == node_link_local(lab, node)


def listening_speaker(net: Net, name: str, *, device: str | None) -> subprocess.Popen[str]:
    """speaker_proc in the node: the peer behind eth1 (in VRF red), waiting for it to dial in on every address
    of the main table as the announcer listens, its connections bound to ``device``; the route announced."""
    config = {"local_as": 64512, "peer_as": 64513, "router_id": IN_VRF["node"][0], "hold_time": 9,
              "peer_address": IN_VRF["router"][0], "device": device, "connect": False,
              "listen": True, "listen_address": "::"}  # fmt: skip
    module = "tests.network.bgp.speaker_proc"
    speaker = net.lab.popen(net.node, sys.executable, "-m", module, json.dumps(config), str(net.directory / name))
    assert speaker.stdin is not None
    speaker.stdin.write(json.dumps({"routes": [{"prefix": V4, "next_hop": IN_VRF["node"][0]}]}) + "\n")
    speaker.stdin.flush()
    return speaker


def accept_across_vrfs(net: Net) -> None:
    """``net.ipv4.tcp_l3mdev_accept=1`` in the node's namespace (sysctl may not be installed)."""
    net.lab.run(net.node, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_l3mdev_accept")


def test_a_router_dials_in_to_the_vrf_session_where_the_node_accepts_across_vrfs(tmp_path: Path) -> None:
    """The announcer listens on every address of the main table; with ``net.ipv4.tcp_l3mdev_accept=1`` a
    connection that arrives through the VRF reaches it and is handed to the VRF peer's session, which answers
    in the VRF: FRR, which dials and never waits, comes up and has the route."""
    with vrf_net(tmp_path, router_dials=True) as net:
        add_vrf(net.lab, net.node, "red", 10)
        net.lab.run(net.node, "ip", "link", "set", "eth1", "master", "red")
        accept_across_vrfs(net)
        listening_speaker(net, "listening.log", device="red")
        try:
            wait_for(net.in_vrf.established, timeout=45, message="FRR's dialled session Established")
        except TimeoutError:
            print((tmp_path / "listening.log").read_text(), net.in_vrf.diagnostics())
            raise
        v4 = wait_for(lambda: net.in_vrf.route(V4), timeout=30, message=f"{V4} at the router")
        assert v4.next_hop == IN_VRF["node"][0]


def test_a_router_that_dials_in_through_a_vrf_does_not_reach_a_peer_of_the_main_table(tmp_path: Path) -> None:
    """The same address configured for a peer of the main table: a connection from it that arrived through VRF
    red comes from another router (another VRF's), so it is refused before OPEN, not handed to that peer."""
    with vrf_net(tmp_path, router_dials=True) as net:
        add_vrf(net.lab, net.node, "red", 10)
        net.lab.run(net.node, "ip", "link", "set", "eth1", "master", "red")
        accept_across_vrfs(net)
        listening_speaker(net, "main-table.log", device=None)
        log = tmp_path / "main-table.log"
        wait_for(lambda: log.exists() and "refused before OPEN" in log.read_text(), timeout=45,
                 message="the connection refused")  # fmt: skip
        assert not net.in_vrf.established()
        assert "Established" not in log.read_text()


def test_bfd_beside_the_vrf_session_takes_it_down_on_a_cut_link(tmp_path: Path) -> None:
    """BFD beside a VRF session runs in the VRF: FRR's bfdd (`neighbor … bfd`) has it Up with the node's VRF
    address; when the node's packets towards the router are blackholed in the VRF's table (the router's towards
    the node in its own; the interfaces stay up, so only BFD can tell) the session and the route go well before
    the 90 s hold time."""
    neighbor = BfdNeighbor(IN_VRF["node"][0], remote_as=64512, local=IN_VRF["router"][0])
    bgpd = bgpd_config(router_as=64513, router_id=IN_VRF["router"][0], neighbors=[neighbor])
    with Lab("mbvrfb") as lab, tempfile.TemporaryDirectory(prefix="mbvrfb-frr-") as frr_dir:
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router, ifname_a="eth1", addresses_a=prefixed(IN_VRF["node"]),
                 addresses_b=prefixed(IN_VRF["router"]))  # fmt: skip
        add_vrf(lab, node, "red", 10)
        lab.run(node, "ip", "link", "set", "eth1", "master", "red")
        frr = start_frr_with_zebra(lab, router, Path(frr_dir), bgpd, neighbor=IN_VRF["node"][0],
                                   bfdd_config=bfdd_config([neighbor]))  # fmt: skip
        peer = {"myASN": 64512, "peerASN": 64513, "peerAddress": IN_VRF["router"][0], "vrf": "red",
                "holdTime": "90s", "bfdProfile": "fast"}  # fmt: skip
        fast = {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3}
        session = PeerSessionProcess(lab, node, tmp_path / "node.log", peer=peer, routes=[V4],
                                     node_addresses=NODE_FACTS, bfd_profiles={"fast": fast})  # fmt: skip
        try:
            wait_for(lambda: frr.route(V4), timeout=45, message=f"{V4} at the router")
            wait_for(lambda: bfd_peer(frr, IN_VRF["node"][0]).get("status") == "up", timeout=30,
                     message="BFD up in FRR towards the node's VRF address")  # fmt: skip
        except TimeoutError:
            print(session.states(), frr.vtysh("show bfd peers").stdout, frr.diagnostics())
            raise

        lab.run(router, "ip", "route", "add", "blackhole", f"{IN_VRF['node'][0]}/32")
        lab.run(node, "ip", "route", "add", "blackhole", f"{IN_VRF['router'][0]}/32", "table", "10")
        cut = time.monotonic()
        wait_for(lambda: frr.route(V4) is None, timeout=15, message=f"{V4} gone from the router")
        log = tmp_path / "node.log"
        wait_for(lambda: "new=DOWN" in log.read_text() and not session.states()[-1].startswith("Established"),
                 timeout=15, message="the node's BFD Down and its session down")  # fmt: skip
        print(f"cut link in the VRF → session down on both sides in {time.monotonic() - cut:.2f} s (hold 90 s)")
        # FRR's side is no longer Up: Down, or Init when a Down packet of the node's reached it (bfdd moves Down →
        # Init on one; the run before the node's own blackhole route takes effect can let one through).
        assert bfd_peer(frr, IN_VRF["node"][0]).get("status") in ("down", "init")
