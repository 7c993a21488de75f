"""ARP codec: golden frames, built frames byte-exact, scapy cross-check, decisions, drops, fuzzing."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.l2 import ARP, Ether

from services.announcer.l2.arp import (
    ArpAction,
    ArpDrop,
    ArpOp,
    ArpPacket,
    build_arp_reply,
    build_gratuitous_reply,
    build_gratuitous_request,
    decide_arp,
    parse_arp,
)

NODE_MAC = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000009")
OTHER_MAC = bytes.fromhex("020000000002")
VIP = IPv4Address("10.0.0.100")
PAD = "00" * 18

# Captured in the lab: iputils arping (Debian 12) asking for 10.0.0.1 (42 bytes on a veth, no padding;
# iputils puts the broadcast address in the target hardware field).
ARPING_REQUEST = bytes.fromhex(
    "ffffffffffff" "020000000009" "0806"
    "0001" "0800" "06" "04" "0001" "020000000009" "0a000009" "ffffffffffff" "0a000001"
)
# ... and the Linux kernel's reply to it.
KERNEL_REPLY = bytes.fromhex(
    "020000000009" "020000000001" "0806"
    "0001" "0800" "06" "04" "0002" "020000000001" "0a000001" "020000000009" "0a000009"
)
# A request for the VIP, as a switch delivers it (padded to 60 bytes).
VIP_REQUEST = bytes.fromhex(
    "ffffffffffff" "020000000009" "0806"
    "0001" "0800" "06" "04" "0001" "020000000009" "0a000009" "000000000000" "0a000064" + PAD
)


def test_golden_arping_request() -> None:
    packet = parse_arp(ARPING_REQUEST)
    assert packet == ArpPacket(
        eth_dst=b"\xff" * 6,
        eth_src=CLIENT_MAC,
        op=ArpOp.REQUEST,
        sender_mac=CLIENT_MAC,
        sender_ip=IPv4Address("10.0.0.9"),
        target_mac=b"\xff" * 6,
        target_ip=IPv4Address("10.0.0.1"),
    )
    assert not packet.is_gratuitous and not packet.is_probe


def test_reply_matches_the_kernels_reply_byte_for_byte_plus_padding() -> None:
    request = parse_arp(ARPING_REQUEST)
    assert isinstance(request, ArpPacket)
    assert build_arp_reply(request, mac=NODE_MAC) == KERNEL_REPLY + bytes(18)


def test_reply_to_a_vip_request() -> None:
    request = parse_arp(VIP_REQUEST)
    assert isinstance(request, ArpPacket)
    assert request.target_ip == VIP
    reply = build_arp_reply(request, mac=NODE_MAC)
    assert reply.hex() == (
        "020000000009" "020000000001" "0806"
        "0001" "0800" "06" "04" "0002" "020000000001" "0a000064" "020000000009" "0a000009" + PAD
    )
    scapy = Ether(reply)
    assert scapy[Ether].dst == "02:00:00:00:00:09" and scapy[Ether].src == "02:00:00:00:00:01"
    assert scapy[ARP].op == 2 and scapy[ARP].psrc == "10.0.0.100" and scapy[ARP].hwsrc == "02:00:00:00:00:01"
    assert scapy[ARP].pdst == "10.0.0.9" and scapy[ARP].hwdst == "02:00:00:00:00:09"


def test_gratuitous_request_golden() -> None:
    frame = build_gratuitous_request(mac=NODE_MAC, ip=VIP)
    assert frame.hex() == (
        "ffffffffffff" "020000000001" "0806"
        "0001" "0800" "06" "04" "0001" "020000000001" "0a000064" "000000000000" "0a000064" + PAD
    )
    arp = Ether(frame)[ARP]
    assert (arp.op, arp.psrc, arp.pdst, arp.hwsrc) == (1, "10.0.0.100", "10.0.0.100", "02:00:00:00:00:01")


def test_gratuitous_reply_golden() -> None:
    frame = build_gratuitous_reply(mac=NODE_MAC, ip=VIP)
    assert frame.hex() == (
        "ffffffffffff" "020000000001" "0806"
        "0001" "0800" "06" "04" "0002" "020000000001" "0a000064" "020000000001" "0a000064" + PAD
    )
    arp = Ether(frame)[ARP]
    assert (arp.op, arp.hwsrc, arp.hwdst) == (2, "02:00:00:00:00:01", "02:00:00:00:00:01")


@pytest.mark.parametrize("build", [build_gratuitous_request, build_gratuitous_reply])
def test_gratuitous_round_trip(build: object) -> None:
    assert callable(build)
    packet = parse_arp(build(mac=NODE_MAC, ip=VIP))
    assert isinstance(packet, ArpPacket)
    assert packet.is_gratuitous and packet.sender_ip == VIP and packet.sender_mac == NODE_MAC


def _mutate(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value) :]


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", ArpDrop.TOO_SHORT),
        (VIP_REQUEST[:13], ArpDrop.TOO_SHORT),
        (VIP_REQUEST[:41], ArpDrop.TOO_SHORT),
        (_mutate(VIP_REQUEST, 12, b"\x08\x00"), ArpDrop.NOT_ARP),
        (_mutate(VIP_REQUEST, 14, b"\x00\x06"), ArpDrop.BAD_HTYPE),
        (_mutate(VIP_REQUEST, 16, b"\x86\xdd"), ArpDrop.BAD_PTYPE),
        (_mutate(VIP_REQUEST, 18, b"\x08"), ArpDrop.BAD_HLEN),
        (_mutate(VIP_REQUEST, 19, b"\x10"), ArpDrop.BAD_PLEN),
        (_mutate(VIP_REQUEST, 20, b"\x00\x03"), ArpDrop.UNKNOWN_OPCODE),
        (_mutate(VIP_REQUEST, 22, b"\xff" * 6), ArpDrop.BAD_SENDER_MAC),
        (_mutate(VIP_REQUEST, 22, b"\x00" * 6), ArpDrop.BAD_SENDER_MAC),
        (_mutate(VIP_REQUEST, 22, b"\x01\x00\x5e\x00\x00\x01"), ArpDrop.BAD_SENDER_MAC),
    ],
)
def test_drop_reasons(frame: bytes, reason: ArpDrop) -> None:
    assert parse_arp(frame) is reason


def _packet(op: ArpOp, *, sender: str, target: str, mac: bytes = CLIENT_MAC) -> ArpPacket:
    return ArpPacket(
        eth_dst=b"\xff" * 6,
        eth_src=mac,
        op=op,
        sender_mac=mac,
        sender_ip=IPv4Address(sender),
        target_mac=bytes(6),
        target_ip=IPv4Address(target),
    )


OWNED = {VIP}
OWN_MACS = {NODE_MAC}


@pytest.mark.parametrize(
    ("packet", "action"),
    [
        # a client asks for our VIP: answer
        (_packet(ArpOp.REQUEST, sender="10.0.0.9", target="10.0.0.100"), ArpAction.REPLY),
        # a RFC 5227 probe for our VIP: defend it by answering
        (_packet(ArpOp.REQUEST, sender="0.0.0.0", target="10.0.0.100"), ArpAction.REPLY),
        # someone else's address: not ours to answer
        (_packet(ArpOp.REQUEST, sender="10.0.0.9", target="10.0.0.1"), ArpAction.IGNORE),
        # another node announces our VIP (gratuitous request or reply): conflict, the caller may yield
        (_packet(ArpOp.REQUEST, sender="10.0.0.100", target="10.0.0.100", mac=OTHER_MAC), ArpAction.CONFLICT),
        (_packet(ArpOp.REPLY, sender="10.0.0.100", target="10.0.0.100", mac=OTHER_MAC), ArpAction.CONFLICT),
        # another node answers for our VIP
        (_packet(ArpOp.REPLY, sender="10.0.0.100", target="10.0.0.9", mac=OTHER_MAC), ArpAction.CONFLICT),
        # our own gratuitous ARP seen again (another of our interfaces on the same segment)
        (_packet(ArpOp.REQUEST, sender="10.0.0.100", target="10.0.0.100", mac=NODE_MAC), ArpAction.IGNORE),
        # a reply about someone else's address
        (_packet(ArpOp.REPLY, sender="10.0.0.1", target="10.0.0.9", mac=OTHER_MAC), ArpAction.IGNORE),
    ],
)
def test_decisions(packet: ArpPacket, action: ArpAction) -> None:
    assert decide_arp(packet, owned=OWNED, own_macs=OWN_MACS) is action


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    result = parse_arp(data)
    assert isinstance(result, ArpPacket | ArpDrop)


@given(
    st.sampled_from([ARPING_REQUEST, KERNEL_REPLY, VIP_REQUEST, build_gratuitous_reply(mac=NODE_MAC, ip=VIP)]),
    st.lists(st.tuples(st.integers(0, 59), st.integers(0, 255)), max_size=6),
    st.integers(0, 64),
)
def test_fuzz_mutated_frames(frame: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(frame)
    for offset, value in flips:
        if offset < len(data):
            data[offset] = value
    result = parse_arp(bytes(data[: len(data) - cut] if cut else data))
    assert isinstance(result, ArpPacket | ArpDrop)
    if isinstance(result, ArpPacket):
        decide_arp(result, owned=OWNED, own_macs=OWN_MACS)
        assert parse_arp(build_arp_reply(result, mac=NODE_MAC)) is not None
