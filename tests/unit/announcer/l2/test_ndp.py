"""NDP codec: golden frames, built frames byte-exact, scapy cross-check, decisions, drops, fuzzing."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether

from services.announcer.l2.ndp import (
    NdpAction,
    NdpDrop,
    NeighborAdvertisement,
    NeighborSolicitation,
    build_solicitation,
    build_solicited_na,
    build_unsolicited_na,
    decide_ndp,
    icmpv6_checksum,
    multicast_mac,
    parse_ndp,
    solicited_node_address,
)

NODE_MAC = bytes.fromhex("020000000001")
CLIENT_MAC = bytes.fromhex("020000000009")
OTHER_MAC = bytes.fromhex("020000000002")
VIP = IPv6Address("fd00::100")
CLIENT = IPv6Address("fd00::9")

# NS from fd00::9 (02:00:00:00:00:09) for fd00::100 to its solicited-node group, with the source
# link-layer address option. Fields read by hand: hop limit ff, payload 0x20, next header 3a, type 87,
# checksum 7b8b (scapy agrees), option 01 01 <mac>.
NS = bytes.fromhex(
    "3333ff000100" "020000000009" "86dd"
    "60000000" "0020" "3a" "ff" "fd000000000000000000000000000009" "ff0200000000000000000001ff000100"
    "87" "00" "7b8b" "00000000" "fd000000000000000000000000000100"
    "01" "01" "020000000009"
)
# DAD probe for fd00::100: source ::, no option.
DAD = bytes.fromhex(
    "3333ff000100" "020000000009" "86dd"
    "60000000" "0018" "3a" "ff" "00000000000000000000000000000000" "ff0200000000000000000001ff000100"
    "87" "00" "7ba7" "00000000" "fd000000000000000000000000000100"
)
# The solicited NA answering NS: from the VIP to the solicitor, flags S|O (0x60), target option.
SOLICITED_NA = bytes.fromhex(
    "020000000009" "020000000001" "86dd"
    "60000000" "0020" "3a" "ff" "fd000000000000000000000000000100" "fd000000000000000000000000000009"
    "88" "00" "1a97" "60000000" "fd000000000000000000000000000100"
    "02" "01" "020000000001"
)
# The unsolicited NA: to ff02::1 (33:33:00:00:00:01), flag O only (0x20).
UNSOLICITED_NA = bytes.fromhex(
    "333300000001" "020000000001" "86dd"
    "60000000" "0020" "3a" "ff" "fd000000000000000000000000000100" "ff020000000000000000000000000001"
    "88" "00" "589d" "20000000" "fd000000000000000000000000000100"
    "02" "01" "020000000001"
)


def test_helpers() -> None:
    assert solicited_node_address(VIP) == IPv6Address("ff02::1:ff00:100")
    assert multicast_mac(solicited_node_address(IPv6Address("2001:db8::ab:cdef"))) == bytes.fromhex(
        "3333ffabcdef"
    )


def test_golden_solicitation() -> None:
    assert parse_ndp(NS) == NeighborSolicitation(
        eth_dst=bytes.fromhex("3333ff000100"),
        eth_src=CLIENT_MAC,
        src_ip=CLIENT,
        dst_ip=IPv6Address("ff02::1:ff00:100"),
        target=VIP,
        source_lladdr=CLIENT_MAC,
    )
    scapy = Ether(NS)
    assert scapy[ICMPv6ND_NS].tgt == "fd00::100" and scapy[ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:09"


def test_solicitation_byte_exact() -> None:
    """What a client asking for the VIP sends (the network tests' prober builds it so): the golden NS."""
    assert build_solicitation(mac=CLIENT_MAC, ip=CLIENT, target=VIP) == NS


def test_golden_frames_agree_with_scapy() -> None:
    built = (
        Ether(src="02:00:00:00:00:09", dst="33:33:ff:00:01:00")
        / IPv6(src="fd00::9", dst="ff02::1:ff00:100", hlim=255)
        / ICMPv6ND_NS(tgt="fd00::100")
        / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:09")
    )
    assert bytes(built) == NS


def test_solicited_na_byte_exact() -> None:
    solicitation = parse_ndp(NS)
    assert isinstance(solicitation, NeighborSolicitation)
    frame = build_solicited_na(solicitation, mac=NODE_MAC)
    assert frame == SOLICITED_NA
    scapy = Ether(frame)
    na = scapy[ICMPv6ND_NA]
    assert (scapy[IPv6].hlim, scapy[IPv6].src, scapy[IPv6].dst) == (255, "fd00::100", "fd00::9")
    assert (na.R, na.S, na.O, na.tgt) == (0, 1, 1, "fd00::100")
    assert scapy[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:01"
    rebuilt = Ether(frame)
    del rebuilt[ICMPv6ND_NA].cksum
    assert bytes(rebuilt) == frame  # scapy computes the same checksum


def test_dad_probe_is_answered_to_all_nodes_without_solicited() -> None:
    probe = parse_ndp(DAD)
    assert isinstance(probe, NeighborSolicitation) and probe.is_dad
    frame = build_solicited_na(probe, mac=NODE_MAC)
    na = parse_ndp(frame)
    assert isinstance(na, NeighborAdvertisement)
    assert na.dst_ip == IPv6Address("ff02::1") and na.eth_dst == bytes.fromhex("333300000001")
    assert (na.solicited, na.override, na.target_lladdr) == (False, True, NODE_MAC)


def test_unsolicited_na_byte_exact() -> None:
    frame = build_unsolicited_na(mac=NODE_MAC, ip=VIP)
    assert frame == UNSOLICITED_NA
    na = Ether(frame)[ICMPv6ND_NA]
    assert (na.S, na.O, na.R) == (0, 1, 0)
    parsed = parse_ndp(frame)
    assert isinstance(parsed, NeighborAdvertisement) and parsed.override and not parsed.solicited


def _mutate(frame: bytes, offset: int, value: bytes, *, fix_checksum: bool = True) -> bytes:
    out = bytearray(frame[:offset] + value + frame[offset + len(value) :])
    if fix_checksum and len(out) >= 58:
        out[56:58] = b"\x00\x00"
        src, dst = IPv6Address(bytes(out[22:38])), IPv6Address(bytes(out[38:54]))
        length = int.from_bytes(out[18:20], "big")
        out[56:58] = icmpv6_checksum(src, dst, bytes(out[54 : 54 + length])).to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"\x00" * 10, NdpDrop.TOO_SHORT),
        (NS[:50], NdpDrop.TOO_SHORT),
        (_mutate(NS, 12, b"\x08\x06", fix_checksum=False), NdpDrop.NOT_IPV6),
        (_mutate(NS, 14, b"\x40", fix_checksum=False), NdpDrop.BAD_VERSION),
        (NS[:-4], NdpDrop.TRUNCATED),
        (_mutate(NS, 20, b"\x11", fix_checksum=False), NdpDrop.NOT_ICMPV6),
        (_mutate(NS, 54, b"\x80"), NdpDrop.NOT_NDP),
        (_mutate(NS, 21, b"\x40"), NdpDrop.BAD_HOP_LIMIT),
        (_mutate(NS, 56, b"\x12\x34", fix_checksum=False), NdpDrop.BAD_CHECKSUM),
        (_mutate(NS, 55, b"\x01"), NdpDrop.BAD_CODE),
        (_mutate(NS, 62, bytes.fromhex("ff020000000000000000000000000001")), NdpDrop.TARGET_MULTICAST),
        (_mutate(NS, 79, b"\x00"), NdpDrop.BAD_OPTION),  # option length 0
        (_mutate(NS, 79, b"\x02"), NdpDrop.BAD_OPTION),  # option overruns the message
        (_mutate(NS, 80, b"\xff" * 6), NdpDrop.BAD_LLADDR),
        (_mutate(NS, 22, bytes.fromhex("ff020000000000000000000000000001")), NdpDrop.BAD_SOURCE),
        (_mutate(NS, 22, bytes(16)), NdpDrop.BAD_SOURCE),  # DAD with a source link-layer option
        (_mutate(DAD, 38, bytes.fromhex("ff020000000000000000000000000001")), NdpDrop.BAD_DESTINATION),
        (_mutate(UNSOLICITED_NA, 58, b"\x60"), NdpDrop.BAD_DESTINATION),  # solicited NA to multicast
    ],
)
def test_drop_reasons(frame: bytes, reason: NdpDrop) -> None:
    assert parse_ndp(frame) is reason


def test_trailing_ethernet_padding_is_ignored() -> None:
    assert parse_ndp(NS + bytes(10)) == parse_ndp(NS)


def _na(*, target: IPv6Address, mac: bytes) -> NeighborAdvertisement:
    return NeighborAdvertisement(
        eth_dst=bytes.fromhex("333300000001"),
        eth_src=mac,
        src_ip=target,
        dst_ip=IPv6Address("ff02::1"),
        target=target,
        router=False,
        solicited=False,
        override=True,
        target_lladdr=mac,
    )


def _ns(*, src: IPv6Address, target: IPv6Address, mac: bytes = CLIENT_MAC) -> NeighborSolicitation:
    return NeighborSolicitation(
        eth_dst=multicast_mac(solicited_node_address(target)),
        eth_src=mac,
        src_ip=src,
        dst_ip=solicited_node_address(target),
        target=target,
        source_lladdr=None if src == IPv6Address("::") else mac,
    )


@pytest.mark.parametrize(
    ("message", "action"),
    [
        (_ns(src=CLIENT, target=VIP), NdpAction.REPLY),
        (_ns(src=IPv6Address("::"), target=VIP), NdpAction.REPLY),  # DAD for our VIP: defend it
        (_ns(src=CLIENT, target=IPv6Address("fd00::1")), NdpAction.IGNORE),
        (_ns(src=VIP, target=CLIENT, mac=OTHER_MAC), NdpAction.CONFLICT),  # someone uses our VIP
        (_na(target=VIP, mac=OTHER_MAC), NdpAction.CONFLICT),  # another node claims our VIP
        (_na(target=VIP, mac=NODE_MAC), NdpAction.IGNORE),  # our own advertisement
        (_na(target=IPv6Address("fd00::1"), mac=OTHER_MAC), NdpAction.IGNORE),
        (_ns(src=CLIENT, target=VIP, mac=NODE_MAC), NdpAction.IGNORE),
    ],
)
def test_decisions(message: NeighborSolicitation | NeighborAdvertisement, action: NdpAction) -> None:
    assert decide_ndp(message, owned={VIP}, own_macs={NODE_MAC}) is action


@given(st.binary(max_size=200))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    assert isinstance(parse_ndp(data), NeighborSolicitation | NeighborAdvertisement | NdpDrop)


@given(
    st.sampled_from([NS, DAD, SOLICITED_NA, UNSOLICITED_NA]),
    st.lists(st.tuples(st.integers(0, 85), st.integers(0, 255)), max_size=6),
    st.integers(0, 90),
    st.booleans(),
)
def test_fuzz_mutated_frames(frame: bytes, flips: list[tuple[int, int]], cut: int, fix: bool) -> None:
    data = bytearray(frame)
    for offset, value in flips:
        if offset < len(data):
            data[offset] = value
    mutated = bytes(data[: len(data) - cut] if cut else data)
    if fix and len(mutated) >= 58:
        mutated = _mutate(mutated, 0, b"")  # a valid checksum gets the frame past the checksum check
    result = parse_ndp(mutated)
    assert isinstance(result, NeighborSolicitation | NeighborAdvertisement | NdpDrop)
    if isinstance(result, NeighborSolicitation):
        assert decide_ndp(result, owned={VIP}, own_macs={NODE_MAC}) in NdpAction
        assert isinstance(parse_ndp(build_solicited_na(result, mac=NODE_MAC)), NeighborAdvertisement)
