"""The responder shell with socket pairs standing in for raw sockets: a story from takeover to release."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

import pytest

from services.announcer.l2 import arp, ndp, rawsock
from services.announcer.l2.interfaces import InterfaceFacts, IPAddress
from services.announcer.l2.responder import (
    ANY_INTERFACE,
    AllowedInterfaces,
    L2Responder,
    ResponderConfig,
)

NODE_MAC = bytes.fromhex("020000000001")
NODE_MAC2 = bytes.fromhex("020000000011")
CLIENT_MAC = bytes.fromhex("020000000009")
OTHER_MAC = bytes.fromhex("020000000002")
VIP4 = IPv4Address("10.0.0.100")
VIP6 = IPv6Address("fd00::100")


def arp_request(target: IPv4Address) -> bytes:
    return bytes.fromhex("ffffffffffff020000000009080600010800060400010200000000090a000009000000000000") + (
        target.packed
    )


def solicitation(target: IPv6Address) -> bytes:
    from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import Ether

    group = ndp.solicited_node_address(target)
    frame = (
        Ether(src="02:00:00:00:00:09", dst=ndp.multicast_mac(group).hex(":"))
        / IPv6(src="fd00::9", dst=str(group), hlim=255)
        / ICMPv6ND_NS(tgt=str(target))
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:09")
    )
    return bytes(frame)


class Wire:
    """The far ends of the fake raw sockets, by interface name, and the multicast groups joined."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ends: dict[str, socket.socket] = {}
        self.groups: set[bytes] = set()
        monkeypatch.setattr(rawsock, "open_packet_socket", self._open)
        monkeypatch.setattr(rawsock, "join_multicast", lambda _s, _i, mac: self.groups.add(mac))
        monkeypatch.setattr(rawsock, "leave_multicast", lambda _s, _i, mac: self.groups.discard(mac))

    def _open(self, name: str) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        ours.setblocking(False)
        theirs.setblocking(False)
        self.ends[name] = theirs
        return ours

    async def receive(self, name: str, count: int, timeout: float = 2.0) -> list[bytes]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            return [await loop.sock_recv(self.ends[name], 4096) for _ in range(count)]

    def pending(self, name: str) -> list[bytes]:
        frames = []
        while True:
            try:
                frames.append(self.ends[name].recv(4096))
            except BlockingIOError:
                return frames


async def test_takeover_answer_conflict_release(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)
    links = [
        InterfaceFacts(name="lo", index=1, mac=b"", up=True),
        InterfaceFacts(name="eth0", index=2, mac=NODE_MAC, up=True),
        InterfaceFacts(name="eth1", index=3, mac=NODE_MAC2, up=True),
        InterfaceFacts(name="veth7", index=4, mac=bytes.fromhex("020000000077"), up=True),
    ]
    conflicts: list[tuple[IPAddress, bytes, str]] = []
    config = ResponderConfig(gratuitous_schedule=(0.0, 0.05))

    async with L2Responder(
        config=config, on_conflict=lambda *a: conflicts.append(a), list_links=lambda: list(links)
    ) as responder:
        # Takeover: v4 on every eligible interface, v6 on eth0 only. veth7 is excluded by default.
        responder.set_desired({VIP4: ANY_INTERFACE, VIP6: AllowedInterfaces.of("eth0")})
        assert responder.announced() == {VIP4: ("eth0", "eth1"), VIP6: ("eth0",)}
        assert wire.groups == {bytes.fromhex("3333ff000100")}
        # ... gratuitous ARP request and reply and an unsolicited NA go out at once ...
        at_once = [arp.parse_arp(f) if f[12:14] == b"\x08\x06" else ndp.parse_ndp(f) for f in wire.pending("eth0")]
        assert [type(p).__name__ for p in at_once] == ["ArpPacket", "ArpPacket", "NeighborAdvertisement"]
        assert all(getattr(p, "sender_mac", None) in (None, NODE_MAC) for p in at_once)
        assert len(wire.pending("eth1")) == 2
        # ... and again on the schedule.
        assert len(await wire.receive("eth0", 3)) == 3
        assert len(await wire.receive("eth1", 2)) == 2
        assert responder.stats.gratuitous_sent == {VIP4: 8, VIP6: 2}

        # A request for the VIP is answered with the MAC of the interface it came in on.
        wire.ends["eth1"].send(arp_request(VIP4))
        (reply,) = await wire.receive("eth1", 1)
        parsed = arp.parse_arp(reply)
        assert isinstance(parsed, arp.ArpPacket)
        assert (parsed.op, parsed.sender_ip, parsed.sender_mac, parsed.eth_dst) == (
            arp.ArpOp.REPLY,
            VIP4,
            NODE_MAC2,
            CLIENT_MAC,
        )
        wire.ends["eth0"].send(solicitation(VIP6))
        (advert,) = await wire.receive("eth0", 1)
        na = ndp.parse_ndp(advert)
        assert isinstance(na, ndp.NeighborAdvertisement)
        assert (na.target, na.target_lladdr, na.solicited, na.override) == (VIP6, NODE_MAC, True, True)

        # Garbage is counted and dropped; the responder keeps answering.
        for junk in (b"", b"\x00" * 13, bytes(12) + b"\x08\x06" + b"\xff" * 30, bytes(12) + b"\x86\xdd" + bytes(60)):
            wire.ends["eth0"].send(junk)
        wire.ends["eth0"].send(arp_request(VIP4))
        (reply,) = await wire.receive("eth0", 1)
        assert sum(responder.stats.dropped.values()) == 4
        assert responder.stats.dropped[arp.ArpDrop.BAD_HTYPE] == 1

        # Another station announces the VIP: reported, not acted on (yielding is the caller's call).
        wire.ends["eth0"].send(arp.build_gratuitous_reply(mac=OTHER_MAC, ip=VIP4))
        wire.ends["eth0"].send(ndp.build_unsolicited_na(mac=OTHER_MAC, ip=VIP6))
        wire.ends["eth0"].send(arp_request(VIP4))  # processed in order: its answer means both were seen
        await wire.receive("eth0", 1)
        assert conflicts == [(VIP4, OTHER_MAC, "eth0"), (VIP6, OTHER_MAC, "eth0")]

        # Losing the v4 VIP stops answering for it at once; the v6 one still answers.
        responder.set_desired({VIP6: AllowedInterfaces.of("eth0")})
        assert responder.announced() == {VIP6: ("eth0",)}
        wire.ends["eth0"].send(arp_request(VIP4))
        wire.ends["eth0"].send(solicitation(VIP6))
        (only,) = await wire.receive("eth0", 1)
        assert isinstance(ndp.parse_ndp(only), ndp.NeighborAdvertisement)
        assert wire.pending("eth0") == []

        # A link flap: the interface goes down (closed) and comes back (reopened, announced again).
        links[1] = replace(links[1], up=False)
        responder.rescan()
        assert responder.announced() == {}
        links[1] = replace(links[1], up=True)
        responder.rescan()
        assert responder.announced() == {VIP6: ("eth0",)}
        assert len(wire.pending("eth0")) == 1  # the unsolicited NA at once

        # Re-created with another index (deleted and added back): a fresh socket.
        old_end = wire.ends["eth0"]
        links[1] = replace(links[1], index=9)
        responder.rescan()
        assert wire.ends["eth0"] is not old_end

        responder.set_desired({})
        assert responder.announced() == {}  # every socket closed, and its memberships with it
    assert responder.stats.requests_received == {VIP4: 3, VIP6: 2}
    assert responder.stats.responses_sent == {VIP4: 3, VIP6: 2}


async def test_a_quick_release_and_takeover_restarts_the_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    wire = Wire(monkeypatch)
    links = [InterfaceFacts(name="eth0", index=2, mac=NODE_MAC, up=True)]
    config = ResponderConfig(gratuitous_schedule=(0.0, 0.1))
    async with L2Responder(config=config, list_links=lambda: list(links)) as responder:
        responder.set_desired({VIP4: ANY_INTERFACE, VIP6: ANY_INTERFACE})
        responder.set_desired({VIP6: ANY_INTERFACE})
        responder.set_desired({VIP4: ANY_INTERFACE, VIP6: ANY_INTERFACE})
        # At once: two ARP and an NA (first takeover), two ARP (second takeover of VIP4).
        assert [f[12:14] for f in wire.pending("eth0")] == [b"\x08\x06"] * 2 + [b"\x86\xdd"] + [b"\x08\x06"] * 2
        # The first schedule repeats only VIP6; VIP4 follows its newer schedule, once.
        repeats = await wire.receive("eth0", 3)
        assert [f[12:14] for f in repeats] == [b"\x86\xdd", b"\x08\x06", b"\x08\x06"]
        assert responder.stats.gratuitous_sent == {VIP4: 6, VIP6: 2}
