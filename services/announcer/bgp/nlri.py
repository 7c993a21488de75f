"""NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5): a length in bits, then just enough octets."""

from __future__ import annotations

import ipaddress

from services.announcer.bgp.capabilities import Afi
from services.announcer.bgp.notification import Notification, UpdateSubcode, update_error

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _HashedIPv4Network(ipaddress.IPv4Network):
    def __init__(self, address: str) -> None:
        network = ipaddress.IPv4Network(address)
        self.network_address = network.network_address
        self.netmask = network.netmask
        self._prefixlen = network.prefixlen
        self._hash = hash(network)

    def __hash__(self) -> int:
        return self._hash


class _HashedIPv6Network(ipaddress.IPv6Network):
    def __init__(self, address: str) -> None:
        network = ipaddress.IPv6Network(address)
        self.network_address = network.network_address
        self.netmask = network.netmask
        self._prefixlen = network.prefixlen
        self._hash = hash(network)

    def __hash__(self) -> int:
        return self._hash


def hashed_prefix(text: str) -> Prefix:
    """The prefix ``text`` (``"10.1.0.0/24"``) whose hash is computed once: ipaddress computes it anew on
    every call, and route sets of tens of thousands of prefixes are hashed on every change. Equal to, and
    interchangeable with, the plain ``ipaddress`` network, in 225 octets rather than 530: only the attributes
    a network is made of are kept (not the ``hosts`` method ipaddress binds to each host route, which a route
    never needs: ``hosts()`` of a /32 or /128 made here lists nothing)."""
    return _HashedIPv6Network(text) if ":" in text else _HashedIPv4Network(text)


def afi_of(prefix: Prefix | IPAddress) -> Afi:
    return Afi.IPV4 if prefix.version == 4 else Afi.IPV6


def encode_prefix(prefix: Prefix) -> bytes:
    length = prefix.prefixlen
    return bytes((length,)) + prefix.network_address.packed[: (length + 7) // 8]


def encode_prefixes(prefixes: list[Prefix] | tuple[Prefix, ...]) -> bytes:
    return b"".join(encode_prefix(p) for p in prefixes)


def decode_prefixes(data: bytes, afi: int, *, error: Notification | None = None) -> tuple[Prefix, ...]:
    """Decode a run of prefixes. Host bits beyond the length are cleared.

    On malformed input raise ``error`` (by default UPDATE / Invalid Network Field).
    """
    width = _width(afi, error)
    make = _v4 if width == 4 else _v6
    out: list[Prefix] = []
    offset = 0
    while offset < len(data):
        length = data[offset]
        size = (length + 7) // 8
        if length > width * 8 or offset + 1 + size > len(data):
            raise _malformed(error, length, offset)
        packed = data[offset + 1 : offset + 1 + size].ljust(width, b"\x00")
        out.append(make(packed, length))
        offset += 1 + size
    return tuple(out)


def count_prefixes(data: bytes, afi: int, *, error: Notification | None = None) -> int:
    """How many prefixes a run holds, checked as :func:`decode_prefixes` checks them (every length in range,
    the last one ending with the data: RFC 7606 §5.3) but without building one object per prefix."""
    width = _width(afi, error)
    bits = width * 8
    count = offset = start = 0
    end = len(data)
    while offset < end:
        start, length = offset, data[offset]
        if length > bits:
            raise _malformed(error, length, start)
        offset += 1 + (length + 7) // 8
        count += 1
    if offset > end:  # the last prefix overruns the run
        raise _malformed(error, data[start], start)
    return count


def _width(afi: int, error: Notification | None) -> int:
    if afi == Afi.IPV4:
        return 4
    if afi == Afi.IPV6:
        return 16
    raise error or update_error(UpdateSubcode.INVALID_NETWORK_FIELD, reason=f"AFI {afi}")


def _malformed(error: Notification | None, length: int, offset: int) -> Notification:
    reason = f"prefix length {length} at offset {offset}"
    return error or update_error(UpdateSubcode.INVALID_NETWORK_FIELD, reason=reason)


def _v4(packed: bytes, length: int) -> Prefix:
    return ipaddress.IPv4Network((packed, length), strict=False)


def _v6(packed: bytes, length: int) -> Prefix:
    return ipaddress.IPv6Network((packed, length), strict=False)
