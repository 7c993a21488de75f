"""ARP over Ethernet (RFC 826, RFC 5227): parse, decide, build. Pure: bytes and values only.

Every input is hostile: `parse_arp` returns an `ArpPacket` or an `ArpDrop` reason and never raises.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Container
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Final

from services.announcer.l2.ethernet import (
    BROADCAST,
    ETH_HEADER_LEN,
    ETH_P_ARP,
    ZERO_MAC,
    build_frame,
    is_unicast_mac,
    parse_header,
)

HTYPE_ETHERNET: Final = 1
PTYPE_IPV4: Final = 0x0800
ARP_LEN: Final = 28

_ARP = struct.Struct("!HHBBH6s4s6s4s")


class ArpOp(enum.IntEnum):
    REQUEST = 1
    REPLY = 2


class ArpDrop(enum.Enum):
    """Why a frame was not taken as an ARP packet."""

    TOO_SHORT = "too_short"
    NOT_ARP = "not_arp"
    BAD_HTYPE = "bad_htype"
    BAD_PTYPE = "bad_ptype"
    BAD_HLEN = "bad_hlen"
    BAD_PLEN = "bad_plen"
    UNKNOWN_OPCODE = "unknown_opcode"
    BAD_SENDER_MAC = "bad_sender_mac"


class ArpAction(enum.Enum):
    """What the responder does with a parsed ARP packet."""

    REPLY = "reply"  # a request for an IP we own: answer it
    CONFLICT = "conflict"  # another station claims an IP we own: report it, the caller may yield
    IGNORE = "ignore"  # not about us, or sent by us


@dataclass(frozen=True, slots=True)
class ArpPacket:
    eth_dst: bytes
    eth_src: bytes
    op: ArpOp
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address

    @property
    def is_gratuitous(self) -> bool:
        """Sender and target protocol addresses equal: an announcement (request or reply)."""
        return self.sender_ip == self.target_ip

    @property
    def is_probe(self) -> bool:
        """RFC 5227 probe: a request from 0.0.0.0 asking whether the target is in use."""
        return self.op is ArpOp.REQUEST and self.sender_ip == IPv4Address(0)


def parse_arp(frame: bytes) -> ArpPacket | ArpDrop:
    """Parse an Ethernet II frame carrying ARP for IPv4 over Ethernet. Trailing padding is ignored."""
    header = parse_header(frame)
    if header is None:
        return ArpDrop.TOO_SHORT
    if header.ethertype != ETH_P_ARP:
        return ArpDrop.NOT_ARP
    if len(frame) < ETH_HEADER_LEN + ARP_LEN:
        return ArpDrop.TOO_SHORT
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, ETH_HEADER_LEN)
    if htype != HTYPE_ETHERNET:
        return ArpDrop.BAD_HTYPE
    if ptype != PTYPE_IPV4:
        return ArpDrop.BAD_PTYPE
    if hlen != 6:
        return ArpDrop.BAD_HLEN
    if plen != 4:
        return ArpDrop.BAD_PLEN
    if op not in (ArpOp.REQUEST, ArpOp.REPLY):
        return ArpDrop.UNKNOWN_OPCODE
    if not is_unicast_mac(sha):
        return ArpDrop.BAD_SENDER_MAC
    return ArpPacket(
        eth_dst=header.dst,
        eth_src=header.src,
        op=ArpOp(op),
        sender_mac=sha,
        sender_ip=IPv4Address(spa),
        target_mac=tha,
        target_ip=IPv4Address(tpa),
    )


def decide_arp(packet: ArpPacket, *, owned: Container[IPv4Address], own_macs: Container[bytes]) -> ArpAction:
    """Answer requests for owned IPs; report any packet from a foreign MAC that uses an owned IP as its
    sender address (gratuitous request or reply, ordinary reply, or a request sourced from it)."""
    if packet.sender_mac in own_macs or packet.eth_src in own_macs:
        return ArpAction.IGNORE
    if packet.sender_ip in owned:
        return ArpAction.CONFLICT
    if packet.op is ArpOp.REQUEST and packet.target_ip in owned:
        return ArpAction.REPLY
    return ArpAction.IGNORE


def _arp_frame(*, eth_dst: bytes, op: ArpOp, sha: bytes, spa: IPv4Address, tha: bytes, tpa: IPv4Address) -> bytes:
    payload = _ARP.pack(HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, op, sha, spa.packed, tha, tpa.packed)
    return build_frame(dst=eth_dst, src=sha, ethertype=ETH_P_ARP, payload=payload)


def build_arp_reply(request: ArpPacket, *, mac: bytes) -> bytes:
    """The reply to `request` saying `request.target_ip` is at `mac`, unicast to the requester.

    A probe (sender 0.0.0.0) is answered the same way: RFC 5227 defends an address with a reply."""
    return _arp_frame(
        eth_dst=request.sender_mac,
        op=ArpOp.REPLY,
        sha=mac,
        spa=request.target_ip,
        tha=request.sender_mac,
        tpa=request.sender_ip,
    )


def build_gratuitous_request(*, mac: bytes, ip: IPv4Address) -> bytes:
    """RFC 5227 announcement: a broadcast request with sender and target IP both `ip`, target MAC zero."""
    return _arp_frame(eth_dst=BROADCAST, op=ArpOp.REQUEST, sha=mac, spa=ip, tha=ZERO_MAC, tpa=ip)


def build_gratuitous_reply(*, mac: bytes, ip: IPv4Address) -> bytes:
    """A broadcast gratuitous reply. Target MAC equals sender MAC: Linux takes a gratuitous reply as
    such (and overrides its lock time) only then."""
    return _arp_frame(eth_dst=BROADCAST, op=ArpOp.REPLY, sha=mac, spa=ip, tha=mac, tpa=ip)
