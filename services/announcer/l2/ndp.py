"""IPv6 neighbor discovery over Ethernet (RFC 4861 sections 4.3, 4.4, 7.1, 7.2): parse, decide, build.

Pure: bytes and values only. `parse_ndp` returns a `NeighborSolicitation`, a `NeighborAdvertisement` or an
`NdpDrop` reason and never raises. Only frames without IPv6 extension headers are taken, as Linux sends them.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Container
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Final

from services.announcer.l2.ethernet import (
    ETH_HEADER_LEN,
    ETH_P_IPV6,
    build_frame,
    is_unicast_mac,
    parse_header,
)

IPPROTO_ICMPV6: Final = 58
HOP_LIMIT: Final = 255
ICMP_NS: Final = 135
ICMP_NA: Final = 136
OPT_SOURCE_LLADDR: Final = 1
OPT_TARGET_LLADDR: Final = 2
ALL_NODES: Final = IPv6Address("ff02::1")
UNSPECIFIED: Final = IPv6Address("::")

NA_ROUTER: Final = 0x80000000
NA_SOLICITED: Final = 0x40000000
NA_OVERRIDE: Final = 0x20000000

_IPV6 = struct.Struct("!IHBB16s16s")
_ICMP_HEAD = struct.Struct("!BBHI16s")  # type, code, checksum, flags/reserved, target
IPV6_LEN: Final = 40
ND_LEN: Final = 24


class NdpDrop(enum.Enum):
    """Why a frame was not taken as a neighbor solicitation or advertisement."""

    TOO_SHORT = "too_short"
    NOT_IPV6 = "not_ipv6"
    BAD_VERSION = "bad_version"
    TRUNCATED = "truncated"
    NOT_ICMPV6 = "not_icmpv6"
    NOT_NDP = "not_ndp"
    BAD_HOP_LIMIT = "bad_hop_limit"
    BAD_CHECKSUM = "bad_checksum"
    BAD_CODE = "bad_code"
    TARGET_MULTICAST = "target_multicast"
    BAD_OPTION = "bad_option"
    BAD_LLADDR = "bad_lladdr"
    BAD_SOURCE = "bad_source"
    BAD_DESTINATION = "bad_destination"


class NdpAction(enum.Enum):
    """What the responder does with a parsed NS or NA."""

    REPLY = "reply"  # a solicitation for an IP we own: advertise it
    CONFLICT = "conflict"  # another station claims an IP we own: report it, the caller may yield
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    eth_dst: bytes
    eth_src: bytes
    src_ip: IPv6Address
    dst_ip: IPv6Address
    target: IPv6Address
    source_lladdr: bytes | None

    @property
    def is_dad(self) -> bool:
        """Duplicate address detection: sent from the unspecified address."""
        return self.src_ip == UNSPECIFIED


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    eth_dst: bytes
    eth_src: bytes
    src_ip: IPv6Address
    dst_ip: IPv6Address
    target: IPv6Address
    router: bool
    solicited: bool
    override: bool
    target_lladdr: bytes | None


NdpMessage = NeighborSolicitation | NeighborAdvertisement


def solicited_node_address(ip: IPv6Address) -> IPv6Address:
    """ff02::1:ffXX:XXXX, from the low 24 bits of `ip`."""
    return IPv6Address(b"\xff\x02" + bytes(9) + b"\x01\xff" + ip.packed[13:])


def multicast_mac(ip: IPv6Address) -> bytes:
    """The Ethernet group address of an IPv6 multicast address (RFC 2464): 33:33 + low 32 bits."""
    return b"\x33\x33" + ip.packed[12:]


def icmpv6_checksum(src: IPv6Address, dst: IPv6Address, message: bytes) -> int:
    """The ICMPv6 checksum over the pseudo-header and `message` (its checksum field as given)."""
    data = src.packed + dst.packed + struct.pack("!I3xB", len(message), IPPROTO_ICMPV6) + message
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _parse_options(data: bytes) -> dict[int, bytes] | NdpDrop:
    """Type → value of the first occurrence of each option; any zero or overrunning length is fatal."""
    options: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if len(data) - offset < 2:
            return NdpDrop.BAD_OPTION
        kind, units = data[offset], data[offset + 1]
        size = units * 8
        if size == 0 or offset + size > len(data):
            return NdpDrop.BAD_OPTION
        options.setdefault(kind, data[offset + 2 : offset + size])
        offset += size
    return options


def _lladdr(options: dict[int, bytes], kind: int) -> bytes | NdpDrop | None:
    value = options.get(kind)
    if value is None:
        return None
    if len(value) != 6 or not is_unicast_mac(value):
        return NdpDrop.BAD_LLADDR
    return value


def parse_ndp(frame: bytes) -> NdpMessage | NdpDrop:
    """Parse an Ethernet II frame carrying an IPv6 neighbor solicitation or advertisement."""
    header = parse_header(frame)
    if header is None:
        return NdpDrop.TOO_SHORT
    if header.ethertype != ETH_P_IPV6:
        return NdpDrop.NOT_IPV6
    if len(frame) < ETH_HEADER_LEN + IPV6_LEN:
        return NdpDrop.TOO_SHORT
    vtf, payload_len, next_header, hop_limit, src_raw, dst_raw = _IPV6.unpack_from(frame, ETH_HEADER_LEN)
    if vtf >> 28 != 6:
        return NdpDrop.BAD_VERSION
    start = ETH_HEADER_LEN + IPV6_LEN
    if start + payload_len > len(frame):
        return NdpDrop.TRUNCATED
    if next_header != IPPROTO_ICMPV6:
        return NdpDrop.NOT_ICMPV6
    message = frame[start : start + payload_len]
    if len(message) < 1 or message[0] not in (ICMP_NS, ICMP_NA):
        return NdpDrop.NOT_NDP
    if len(message) < ND_LEN:
        return NdpDrop.TOO_SHORT
    if hop_limit != HOP_LIMIT:
        return NdpDrop.BAD_HOP_LIMIT
    src, dst = IPv6Address(src_raw), IPv6Address(dst_raw)
    if icmpv6_checksum(src, dst, message) != 0:
        return NdpDrop.BAD_CHECKSUM
    kind, code, _checksum, flags, target_raw = _ICMP_HEAD.unpack_from(message)
    if code != 0:
        return NdpDrop.BAD_CODE
    target = IPv6Address(target_raw)
    if target.is_multicast:
        return NdpDrop.TARGET_MULTICAST
    if src.is_multicast:
        return NdpDrop.BAD_SOURCE
    options = _parse_options(message[ND_LEN:])
    if isinstance(options, NdpDrop):
        return options
    if kind == ICMP_NS:
        return _solicitation(header.dst, header.src, src, dst, target, options)
    return _advertisement(header.dst, header.src, src, dst, target, flags, options)


def _solicitation(
    eth_dst: bytes,
    eth_src: bytes,
    src: IPv6Address,
    dst: IPv6Address,
    target: IPv6Address,
    options: dict[int, bytes],
) -> NeighborSolicitation | NdpDrop:
    lladdr = _lladdr(options, OPT_SOURCE_LLADDR)
    if isinstance(lladdr, NdpDrop):
        return lladdr
    if src == UNSPECIFIED:
        if lladdr is not None:
            return NdpDrop.BAD_SOURCE  # RFC 4861 7.1.1: DAD carries no source link-layer address
        if dst != solicited_node_address(target):
            return NdpDrop.BAD_DESTINATION
    return NeighborSolicitation(
        eth_dst=eth_dst, eth_src=eth_src, src_ip=src, dst_ip=dst, target=target, source_lladdr=lladdr
    )


def _advertisement(
    eth_dst: bytes,
    eth_src: bytes,
    src: IPv6Address,
    dst: IPv6Address,
    target: IPv6Address,
    flags: int,
    options: dict[int, bytes],
) -> NeighborAdvertisement | NdpDrop:
    lladdr = _lladdr(options, OPT_TARGET_LLADDR)
    if isinstance(lladdr, NdpDrop):
        return lladdr
    solicited = bool(flags & NA_SOLICITED)
    if solicited and dst.is_multicast:
        return NdpDrop.BAD_DESTINATION  # RFC 4861 7.1.2
    return NeighborAdvertisement(
        eth_dst=eth_dst,
        eth_src=eth_src,
        src_ip=src,
        dst_ip=dst,
        target=target,
        router=bool(flags & NA_ROUTER),
        solicited=solicited,
        override=bool(flags & NA_OVERRIDE),
        target_lladdr=lladdr,
    )


def decide_ndp(message: NdpMessage, *, owned: Container[IPv6Address], own_macs: Container[bytes]) -> NdpAction:
    """Advertise owned targets when solicited (DAD probes included: that defends the address); report an
    advertisement for an owned target, or a solicitation sourced from an owned IP, by a foreign MAC."""
    if message.eth_src in own_macs:
        return NdpAction.IGNORE
    if isinstance(message, NeighborAdvertisement):
        if message.target_lladdr in own_macs:
            return NdpAction.IGNORE
        return NdpAction.CONFLICT if message.target in owned else NdpAction.IGNORE
    if message.source_lladdr is not None and message.source_lladdr in own_macs:
        return NdpAction.IGNORE
    if message.src_ip in owned:
        return NdpAction.CONFLICT
    return NdpAction.REPLY if message.target in owned else NdpAction.IGNORE


def _nd_frame(
    *, kind: int, eth_dst: bytes, mac: bytes, src: IPv6Address, dst: IPv6Address, target: IPv6Address, flags: int,
    option: int,
) -> bytes:
    """One ND message about ``target`` with our link-layer address in ``option``, checksummed, in an IPv6
    packet of hop limit 255 from ``src`` to ``dst``, in an Ethernet frame from ``mac`` to ``eth_dst``."""
    message = bytearray(_ICMP_HEAD.pack(kind, 0, 0, flags, target.packed) + struct.pack("!BB6s", option, 1, mac))
    struct.pack_into("!H", message, 2, icmpv6_checksum(src, dst, bytes(message)))
    ip = _IPV6.pack(6 << 28, len(message), IPPROTO_ICMPV6, HOP_LIMIT, src.packed, dst.packed)
    return build_frame(dst=eth_dst, src=mac, ethertype=ETH_P_IPV6, payload=ip + bytes(message))


def _na_frame(
    *, eth_dst: bytes, mac: bytes, src: IPv6Address, dst: IPv6Address, target: IPv6Address, flags: int
) -> bytes:
    return _nd_frame(kind=ICMP_NA, eth_dst=eth_dst, mac=mac, src=src, dst=dst, target=target, flags=flags,
                     option=OPT_TARGET_LLADDR)


def build_solicitation(*, mac: bytes, ip: IPv6Address, target: IPv6Address) -> bytes:
    """A neighbor solicitation from ``ip`` at ``mac`` for ``target``, to its solicited-node group (what a
    host asking for ``target`` sends)."""
    group = solicited_node_address(target)
    return _nd_frame(kind=ICMP_NS, eth_dst=multicast_mac(group), mac=mac, src=ip, dst=group, target=target,
                     flags=0, option=OPT_SOURCE_LLADDR)


def build_solicited_na(solicitation: NeighborSolicitation, *, mac: bytes) -> bytes:
    """The advertisement answering `solicitation`: target is at `mac` (Override set, target link-layer
    option), sent from the target address with hop limit 255. To the solicitor with Solicited set; for a
    DAD probe (source ::) to all-nodes with Solicited clear (RFC 4861 7.2.4)."""
    if solicitation.is_dad:
        return _na_frame(
            eth_dst=multicast_mac(ALL_NODES),
            mac=mac,
            src=solicitation.target,
            dst=ALL_NODES,
            target=solicitation.target,
            flags=NA_OVERRIDE,
        )
    return _na_frame(
        eth_dst=solicitation.source_lladdr or solicitation.eth_src,
        mac=mac,
        src=solicitation.target,
        dst=solicitation.src_ip,
        target=solicitation.target,
        flags=NA_SOLICITED | NA_OVERRIDE,
    )


def build_unsolicited_na(*, mac: bytes, ip: IPv6Address) -> bytes:
    """An unsolicited advertisement to all-nodes: `ip` is at `mac`, Override set, Solicited clear."""
    return _na_frame(eth_dst=multicast_mac(ALL_NODES), mac=mac, src=ip, dst=ALL_NODES, target=ip, flags=NA_OVERRIDE)
