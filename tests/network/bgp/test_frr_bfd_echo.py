"""BFD echo mode with FRR's bfdd (``echo-mode`` on both sides): each side's echoes are looped back by the other
side's forwarding plane, and a cut link is seen by the echo function (Echo Function Failed) on both sides
before the control packets could tell."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab import skip_reason, wait_for
from tests.network.bgp.frr_bfd import BfdNeighbor, bfd_peer, bfdd_config, bgpd_config, frr_directory
from tests.network.bgp.harness import NODE4, ROUTER4, Net, lab_net
from tests.network.bgp.link_harness import PeerSessionProcess
from tests.network.bgp.routers import Frr, start_frr_with_zebra

_SKIP = skip_reason() or Frr.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

V4 = "198.51.100.7/32"
ECHO_MS, MULTIPLIER = 50, 3
NEIGHBOR = BfdNeighbor(NODE4, remote_as=64512, local=ROUTER4, echo_ms=ECHO_MS)
BGPD, BFDD = bgpd_config(router_as=64512, router_id=ROUTER4, neighbors=[NEIGHBOR]), bfdd_config([NEIGHBOR])
PEER = {"myASN": 64512, "peerASN": 64512, "peerAddress": ROUTER4, "holdTime": "90s", "bfdProfile": "echo"}
PROFILE = {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": MULTIPLIER, "echoMode": True,
           "echoInterval": ECHO_MS}  # fmt: skip


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with lab_net(tmp_path) as lab:
        for ns in (lab.node, lab.router):  # each side's forwarding plane loops the other side's echoes
            lab.lab.sysctl(ns, "net.ipv4.ip_forward", "1")
        yield lab


def test_echo_mode_with_frr_detects_a_cut_link_by_its_echoes(net: Net) -> None:
    with frr_directory(net.lab) as directory:
        echo_story(net, directory)


def echoes_back_at_frr(frr: Frr, *, more_than: int) -> int | None:
    received = int(bfd_peer(frr, NODE4, counters=True).get("echo-packet-input", 0))
    return received if received > more_than else None


def echo_story(net: Net, directory: Path) -> None:
    frr = start_frr_with_zebra(net.lab, net.router, directory, BGPD, neighbor=NODE4, bfdd_config=BFDD)
    node = PeerSessionProcess(net.lab, net.node, net.directory / "node.log", peer=PEER, routes=[V4],
                              node_addresses=[NODE4], bfd_profiles={"echo": PROFILE})  # fmt: skip
    logged = lambda: node.log.read_text() if node.log.exists() else ""  # noqa: E731
    wait_for(lambda: frr.route(V4), timeout=15, message="route at FRR")
    wait_for(lambda: bfd_peer(frr, NODE4).get("status") == "up", timeout=10, message="BFD up in FRR")

    # FRR's side: it sends echoes, our node's forwarding plane loops them, they keep coming back
    first = wait_for(lambda: echoes_back_at_frr(frr, more_than=0), timeout=10, message="FRR's echoes back")
    wait_for(lambda: echoes_back_at_frr(frr, more_than=first + 10), timeout=5, message="FRR's echoes flowing")
    peer = bfd_peer(frr, NODE4)
    assert peer["remote-echo-receive-interval"] == ECHO_MS  # what we advertise: our echoInterval
    # our side: echoes looped by FRR's forwarding plane, and control packets slowed to a second (RFC 5880 §6.8.3)
    wait_for(lambda: "bfd echo changed" in logged() and "active=True" in logged(), timeout=10,
             message="our echo function active")  # fmt: skip
    wait_for(lambda: bfd_peer(frr, NODE4).get("remote-transmit-interval") == 1000, timeout=10, message="slow control")

    cut = time.monotonic()
    net.lab.run(net.bridge, "ip", "link", "set", net.node_port, "down")  # the cable is cut
    wait_for(lambda: "diag=ECHO_FUNCTION_FAILED" in logged(), timeout=5, message="our echo failure")
    seen = time.monotonic() - cut
    wait_for(lambda: bfd_peer(frr, NODE4).get("status") == "down", timeout=5, message="BFD down in FRR")
    assert bfd_peer(frr, NODE4).get("diagnostic") == "echo function failed"  # FRR's own echoes, before its 3 s
    wait_for(lambda: node.states()[-1].startswith("Idle"), timeout=5, message="the BGP session torn down")
    wait_for(lambda: frr.route(V4) is None, timeout=5, message="route gone at FRR")
    print(f"cut -> our echo function failed seen after {seen:.3f} s (echo {ECHO_MS} ms x {MULTIPLIER})")

    net.lab.run(net.bridge, "ip", "link", "set", net.node_port, "up")
    wait_for(lambda: frr.route(V4), timeout=30, message="route back with the link")
