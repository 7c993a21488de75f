"""The L2 responder on a real (namespaced) Ethernet segment, seen by real `arping` and `ndisc6`.

    bridge namespace: br0 ── node1 (eth0 10.0.0.1, fd00::1; eth1; veth9)
                         ── node2 (eth0 10.0.0.2, fd00::2)
                         ── client (eth0 10.0.0.9, fd00::9)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest

from services.announcer.l2 import arp, ndp
from services.announcer.l2.ethernet import parse_mac
from tests.netlab import Lab, skip_reason, wait_for
from tests.network.l2.tools import Announcer, arping, ndisc6, neighbor, send_raw

_SKIP = skip_reason("arping", "ndisc6")
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

VIP4 = "10.0.0.100"
VIP6 = "fd00::100"


@dataclass
class Segment:
    lab: Lab
    bridge: str
    node1: str
    node2: str
    client: str

    def mac(self, ns: str, ifname: str = "eth0") -> str:
        return self.lab.mac(ns, ifname)


@pytest.fixture
def segment() -> Iterator[Segment]:
    with Lab("mbl2") as lab:
        bridge = lab.namespace("br")
        lab.bridge(bridge)
        node1, node2, client = (lab.namespace(role) for role in ("node1", "node2", "client"))
        lab.link(node1, bridge_ns=bridge, addresses=["10.0.0.1/24", "fd00::1/64"])
        lab.link(node1, bridge_ns=bridge, ifname="eth1")
        lab.link(node1, bridge_ns=bridge, ifname="veth9")
        lab.link(node2, bridge_ns=bridge, addresses=["10.0.0.2/24", "fd00::2/64"])
        lab.link(client, bridge_ns=bridge, addresses=["10.0.0.9/24", "fd00::9/64"])
        yield Segment(lab, bridge, node1, node2, client)


def test_client_resolves_both_vips_to_the_node(segment: Segment) -> None:
    lab = segment.lab
    Announcer(lab, segment.node1, "--ip", f"{VIP4}@eth0", "--ip", f"{VIP6}@eth0")
    node_mac = segment.mac(segment.node1)
    assert arping(lab, segment.client, VIP4) == [node_mac]
    assert ndisc6(lab, segment.client, VIP6) == node_mac


def test_answers_only_on_eligible_interfaces(segment: Segment) -> None:
    lab, node = segment.lab, segment.node1
    eth0, eth1 = segment.mac(node, "eth0"), segment.mac(node, "eth1")
    announcer = Announcer(lab, node, "--ip", f"{VIP4}@eth1", "--ip", f"{VIP6}@eth1")
    assert announcer.ready["announced"] == {VIP4: ["eth1"], VIP6: ["eth1"]}
    assert arping(lab, segment.client, VIP4, count=2) == [eth1, eth1]  # eth0 is silent
    assert ndisc6(lab, segment.client, VIP6) == eth1
    # No interfaces list: every eligible interface answers; veth9 is excluded by name.
    announced = announcer.set_desired({VIP4: [], VIP6: []})["announced"]
    assert announced == {VIP4: ["eth0", "eth1"], VIP6: ["eth0", "eth1"]}
    assert sorted(arping(lab, segment.client, VIP4, count=2)) == sorted([eth0, eth1])


def test_handover_moves_the_clients_neighbor_entry(segment: Segment) -> None:
    lab = segment.lab
    mac1, mac2 = segment.mac(segment.node1), segment.mac(segment.node2)
    node1 = Announcer(lab, segment.node1, "--ip", f"{VIP4}@eth0", "--ip", f"{VIP6}@eth0")
    node2 = Announcer(lab, segment.node2)
    # The client has talked to the VIPs: entries exist (gratuitous ARP/NA only update existing entries).
    for vip in (VIP4, VIP6):
        lab.run(segment.client, "ip", "neigh", "replace", vip, "lladdr", mac1, "dev", "eth0", "nud", "stale")
    assert arping(lab, segment.client, VIP4) == [mac1]

    node1.set_desired({})
    started = time.monotonic()
    node2.set_desired({VIP4: ["eth0"], VIP6: ["eth0"]})
    wait_for(lambda: neighbor(lab, segment.client, VIP4) == mac2, timeout=5, message="v4 entry to follow")
    wait_for(lambda: neighbor(lab, segment.client, VIP6) == mac2, timeout=5, message="v6 entry to follow")
    elapsed = time.monotonic() - started
    print(f"client neighbor entries followed the handover in {elapsed * 1000:.0f} ms")
    assert arping(lab, segment.client, VIP4, count=2) == [mac2, mac2]  # node1 is silent
    assert ndisc6(lab, segment.client, VIP6) == mac2
    assert node2.stats()["gratuitous_sent"][VIP4] >= 2


def test_another_node_claiming_the_vip_is_reported(segment: Segment) -> None:
    lab = segment.lab
    node1 = Announcer(lab, segment.node1, "--ip", f"{VIP4}@eth0", "--ip", f"{VIP6}@eth0")
    Announcer(lab, segment.node2, "--ip", f"{VIP4}@eth0", "--ip", f"{VIP6}@eth0")  # split brain
    mac2 = segment.mac(segment.node2)
    for vip in (VIP4, VIP6):
        conflict = node1.expect(lambda e, vip=vip: e["event"] == "conflict" and e["ip"] == vip)
        assert (conflict["other_mac"], conflict["interface"]) == (mac2, "eth0")
    counted = node1.stats()["conflicts"]
    assert counted[VIP4] >= 1 and counted[VIP6] >= 1


def test_survives_link_flaps_and_a_recreated_interface(segment: Segment) -> None:
    lab, node, client = segment.lab, segment.node1, segment.client
    announcer = Announcer(lab, node, "--ip", f"{VIP4}@eth0", "--ip", f"{VIP6}@eth0")
    mac = segment.mac(node)
    assert arping(lab, client, VIP4) == [mac]
    # Admin down/up on the node's own interface.
    lab.run(node, "ip", "link", "set", "eth0", "down")
    wait_for(lambda: announcer.set_desired({VIP4: ["eth0"], VIP6: ["eth0"]})["announced"] == {}, timeout=5)
    lab.run(node, "ip", "link", "set", "eth0", "up")
    wait_for(lambda: arping(lab, client, VIP4) == [mac], timeout=10, message="an answer after link up")
    assert ndisc6(lab, client, VIP6) == mac
    # Carrier loss: the bridge side of the node's veth goes down and up.
    port = lab.run(node, "cat", "/sys/class/net/eth0/iflink").stdout.strip()
    bridge_port = next(
        line.split(":")[1].strip().split("@")[0]
        for line in lab.run(segment.bridge, "ip", "-o", "link").stdout.splitlines()
        if line.split(":")[0] == port
    )
    lab.run(segment.bridge, "ip", "link", "set", bridge_port, "down")
    lab.run(segment.bridge, "ip", "link", "set", bridge_port, "up")
    wait_for(lambda: arping(lab, client, VIP4) == [mac], timeout=10, message="an answer after carrier back")
    # The interface disappears and a new one with the same name appears.
    lab.run(node, "ip", "link", "del", "eth0")
    lab.link(node, bridge_ns=segment.bridge, addresses=["10.0.0.1/24", "fd00::1/64"])
    new_mac = segment.mac(node)
    wait_for(lambda: arping(lab, client, VIP4) == [new_mac], timeout=10, message="an answer on the new eth0")
    assert ndisc6(lab, client, VIP6) == new_mac
    assert announcer.proc.poll() is None


def _hostile_frames(client_mac: bytes) -> list[bytes]:
    """Frames that pass the socket filter but are malformed, ten of each. (IPv6 header corruption is left
    to the unit fuzzing: a bridge with br_netfilter loaded drops such frames before they reach a port.)"""
    good_arp = (
        b"\xff" * 6 + client_mac + b"\x08\x06" + bytes.fromhex("0001080006040001") + client_mac
        + IPv4Address("10.0.0.9").packed + bytes(6) + IPv4Address(VIP4).packed
    )  # fmt: skip
    assert isinstance(arp.parse_arp(good_arp), arp.ArpPacket)
    good_ns = _ns(client_mac)
    assert isinstance(ndp.parse_ndp(good_ns), ndp.NeighborSolicitation)

    def patch(frame: bytes, offset: int, value: bytes) -> bytes:
        return frame[:offset] + value + frame[offset + len(value) :]

    return [
        good_arp[:30],  # truncated ARP
        patch(good_arp, 14, b"\x00\x06"),  # bad htype
        patch(good_arp, 16, b"\x86\xdd"),  # bad ptype
        patch(good_arp, 18, b"\x10"),  # bad hlen
        patch(good_arp, 20, b"\x00\x09"),  # unknown opcode
        patch(good_arp, 22, b"\xff" * 6),  # broadcast sender
        patch(good_ns, 21, b"\x40"),  # hop limit 64
        patch(good_ns, 56, b"\xde\xad"),  # bad checksum
        _ns(client_mac, code=1),
        _ns(client_mac, target="ff02::1"),
        _ns(client_mac, option=b"\x01\x00" + bytes(6)),  # option length 0
        _ns(client_mac, option=b"\x01\x01" + b"\xff" * 6),  # broadcast source link-layer address
    ] * 10


def _ns(client_mac: bytes, *, code: int = 0, target: str = VIP6, option: bytes | None = None) -> bytes:
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    group = ndp.solicited_node_address(IPv6Address(VIP6))
    option = b"\x01\x01" + client_mac if option is None else option
    return bytes(
        Ether(src=client_mac.hex(":"), dst=ndp.multicast_mac(group).hex(":"))
        / IPv6(src="fd00::9", dst=str(group), hlim=255)
        / ICMPv6ND_NS(tgt=target, code=code)
        / Raw(option)
    )


def test_malformed_frames_are_counted_and_do_not_stop_it(segment: Segment) -> None:
    lab, client = segment.lab, segment.client
    announcer = Announcer(lab, segment.node1, "--ip", f"{VIP4}@eth0", "--ip", f"{VIP6}@eth0")
    frames = _hostile_frames(parse_mac(segment.mac(client)))
    send_raw(lab, client, frames)
    wait_for(
        lambda: sum(announcer.stats()["dropped"].values()) >= len(frames),
        timeout=5,
        message="every hostile frame counted",
    )
    dropped = announcer.stats()["dropped"]
    assert dropped == {
        f"{kind}.{reason}": 10
        for kind, reasons in {
            "ArpDrop": ("too_short", "bad_htype", "bad_ptype", "bad_hlen", "unknown_opcode", "bad_sender_mac"),
            "NdpDrop": ("bad_hop_limit", "bad_checksum", "bad_code", "target_multicast", "bad_option", "bad_lladdr"),
        }.items()
        for reason in reasons
    }
    node_mac = segment.mac(segment.node1)
    assert arping(lab, client, VIP4) == [node_mac]
    assert ndisc6(lab, client, VIP6) == node_mac
