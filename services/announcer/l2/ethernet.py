"""Ethernet II header and MAC address helpers (pure)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

ETH_HEADER_LEN: Final = 14
ETH_MIN_FRAME: Final = 60  # without FCS; shorter frames are padded with zeros
ETH_P_ARP: Final = 0x0806
ETH_P_IPV6: Final = 0x86DD

BROADCAST: Final = b"\xff" * 6
ZERO_MAC: Final = b"\x00" * 6

_HEADER = struct.Struct("!6s6sH")


@dataclass(frozen=True, slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int


def parse_header(frame: bytes) -> EthernetHeader | None:
    """The Ethernet II header, or None when the frame is shorter than one."""
    if len(frame) < ETH_HEADER_LEN:
        return None
    dst, src, ethertype = _HEADER.unpack_from(frame)
    return EthernetHeader(dst=dst, src=src, ethertype=ethertype)


def build_frame(*, dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    """An Ethernet II frame, zero-padded to the 60-byte minimum."""
    frame = _HEADER.pack(dst, src, ethertype) + payload
    if len(frame) < ETH_MIN_FRAME:
        frame += bytes(ETH_MIN_FRAME - len(frame))
    return frame


def is_multicast_mac(mac: bytes) -> bool:
    """True for group addresses (broadcast included): the I/G bit of the first octet."""
    return len(mac) == 6 and bool(mac[0] & 0x01)


def is_unicast_mac(mac: bytes) -> bool:
    """A usable station address: six octets, not a group address, not all zeros."""
    return len(mac) == 6 and not mac[0] & 0x01 and mac != ZERO_MAC


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes:
    """`aa:bb:cc:dd:ee:ff` (or with `-`) to six bytes; ValueError otherwise."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or any(len(p) != 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)
