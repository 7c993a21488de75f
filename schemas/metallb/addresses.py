"""Address ranges as MetalLB writes them in ``IPAddressPool.spec.addresses``.

An entry is a CIDR (``192.168.10.0/24``, ``fc00:f853:0ccd:e799::/124``) or an inclusive range
(``192.168.9.1-192.168.9.5``). Both become an :class:`AddressRange` of integers, exact at any size.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class IPFamily(StrEnum):
    IPV4 = "IPv4"
    IPV6 = "IPv6"

    @property
    def bits(self) -> int:
        return 32 if self is IPFamily.IPV4 else 128

    @property
    def version(self) -> int:
        """The IP version: 4 or 6."""
        return 4 if self is IPFamily.IPV4 else 6

    @classmethod
    def of(cls, address: IPAddress | IPNetwork) -> IPFamily:
        return cls.IPV4 if address.version == 4 else cls.IPV6


@dataclass(frozen=True, slots=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one family, as integers (``first <= last``)."""

    family: IPFamily
    first: int
    last: int

    def __post_init__(self) -> None:
        top = (1 << self.family.bits) - 1
        if not 0 <= self.first <= self.last <= top:
            raise ValueError(f"invalid {self.family.value} range {self.first}..{self.last}")

    @classmethod
    def from_network(cls, network: IPNetwork) -> AddressRange:
        return cls(IPFamily.of(network), int(network.network_address), int(network.broadcast_address))

    @classmethod
    def from_addresses(cls, start: IPAddress, end: IPAddress) -> AddressRange:
        return cls(IPFamily.of(start), int(start), int(end))

    @property
    def start(self) -> IPAddress:
        return to_address(self.family, self.first)

    @property
    def end(self) -> IPAddress:
        return to_address(self.family, self.last)

    @property
    def size(self) -> int:
        """Number of addresses, exact (a /64 has 2**64)."""
        return self.last - self.first + 1

    def networks(self) -> tuple[IPNetwork, ...]:
        """The smallest list of CIDRs covering exactly this range."""
        return tuple(ipaddress.summarize_address_range(self.start, self.end))

    def shortest_prefix(self) -> int:
        """The prefix length of the largest CIDR in :meth:`networks` (MetalLB's "lowest mask")."""
        return min(network.prefixlen for network in self.networks())

    def overlaps(self, other: AddressRange) -> bool:
        return self.family is other.family and self.first <= other.last and other.first <= self.last

    def __contains__(self, address: object) -> bool:
        if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return IPFamily.of(address) is self.family and self.first <= int(address) <= self.last
        return False

    def __iter__(self) -> Iterator[IPAddress]:
        for value in range(self.first, self.last + 1):
            yield to_address(self.family, value)

    def __str__(self) -> str:
        networks = self.networks()
        if len(networks) == 1:
            return str(networks[0])
        return f"{self.start}-{self.end}"


class UnusableKind(StrEnum):
    """Addresses no LoadBalancer Service can be reached on: never handed out from a pool."""

    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link-local"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"


@dataclass(frozen=True, slots=True)
class UnusableSpan:
    """An inclusive span of unusable addresses of one IP version (4 or 6)."""

    version: int
    first: int
    last: int
    kind: UnusableKind


def _span(cidr: str, kind: UnusableKind) -> UnusableSpan:
    network = ipaddress.ip_network(cidr)
    return UnusableSpan(network.version, int(network.network_address), int(network.broadcast_address), kind)


#: Every unusable address, by version and then address (disjoint spans).
UNUSABLE_SPANS: tuple[UnusableSpan, ...] = (
    _span("0.0.0.0/32", UnusableKind.UNSPECIFIED),
    _span("127.0.0.0/8", UnusableKind.LOOPBACK),
    _span("169.254.0.0/16", UnusableKind.LINK_LOCAL),
    _span("224.0.0.0/4", UnusableKind.MULTICAST),
    _span("255.255.255.255/32", UnusableKind.BROADCAST),
    _span("::/128", UnusableKind.UNSPECIFIED),
    _span("::1/128", UnusableKind.LOOPBACK),
    _span("fe80::/10", UnusableKind.LINK_LOCAL),
    _span("ff00::/8", UnusableKind.MULTICAST),
)


def unusable_spans(version: int, first: int, last: int) -> tuple[UnusableSpan, ...]:
    """The unusable spans meeting ``first..last`` of IP ``version``, cut to it, in address order."""
    return tuple(
        UnusableSpan(version, max(first, span.first), min(last, span.last), span.kind)
        for span in UNUSABLE_SPANS
        if span.version == version and span.first <= last and first <= span.last
    )


def _unusable_in(address_range: AddressRange) -> tuple[UnusableSpan, ...]:
    return unusable_spans(address_range.family.version, address_range.first, address_range.last)


def usable_count(address_range: AddressRange) -> int:
    """How many addresses of the range could be handed out (exact at any size)."""
    return address_range.size - sum(span.last - span.first + 1 for span in _unusable_in(address_range))


def unusable_kinds(address_range: AddressRange) -> tuple[UnusableKind, ...]:
    """The kinds of unusable addresses the range holds, in address order."""
    return tuple(dict.fromkeys(span.kind for span in _unusable_in(address_range)))


def unusable_kind(family: IPFamily, value: int) -> UnusableKind | None:
    """Why an address can never be handed out (unspecified, loopback, ...), or None when it can."""
    spans = unusable_spans(family.version, value, value)
    return spans[0].kind if spans else None


def is_buggy(family: IPFamily, value: int) -> bool:
    """An IPv4 address ending in .0 or .255, which some old consumer devices drop (smurf protection;
    MetalLB's ``ipConfusesBuggyFirmwares``)."""
    return family is IPFamily.IPV4 and (value & 0xFF) in (0, 0xFF)


def is_buggy_ip(address: IPAddress) -> bool:
    """:func:`is_buggy` of an address."""
    return is_buggy(IPFamily.of(address), int(address))


def _buggy_between(family: IPFamily, first: int, last: int) -> int:
    """How many addresses of ``first..last`` end in .0 or .255 (none in IPv6), counted, not listed."""
    if family is not IPFamily.IPV4:
        return 0

    def ending_in(residue: int) -> int:
        return (last - residue) // 256 - (first - 1 - residue) // 256

    return ending_in(0) + ending_in(0xFF)


def buggy_count(address_range: AddressRange) -> int:
    """Exact number of addresses of the range ending in .0 or .255 (0 for IPv6)."""
    return _buggy_between(address_range.family, address_range.first, address_range.last)


def allocatable_count(address_range: AddressRange, *, avoid_buggy_ips: bool) -> int:
    """How many addresses of the range a pool can hand out: the usable ones, less those ending in .0
    or .255 when the pool avoids them (exact at any size)."""
    count = usable_count(address_range)
    if avoid_buggy_ips:  # the .0/.255 addresses that are not unusable anyway
        unusable = _unusable_in(address_range)
        count -= buggy_count(address_range) - sum(
            _buggy_between(address_range.family, span.first, span.last) for span in unusable
        )
    return count


def to_address(family: IPFamily, value: int) -> IPAddress:
    """The address of ``family`` whose integer value is ``value``."""
    if family is IPFamily.IPV4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)


def _parse_ip(text: str) -> IPAddress | None:
    if "%" in text:  # zoned IPv6 addresses are not pool material (Go's ParseIP refuses them too)
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_address_range(text: str) -> AddressRange:
    """Parse one ``spec.addresses`` entry; a ``ValueError`` names the entry and the problem."""
    if "-" in text:
        start_text, end_text = (part.strip() for part in text.split("-", 1))
        start = _parse_ip(start_text)
        if start is None:
            raise ValueError(f'invalid IP range "{text}": invalid start IP "{start_text}"')
        end = _parse_ip(end_text)
        if end is None:
            raise ValueError(f'invalid IP range "{text}": invalid end IP "{end_text}"')
        if start.version != end.version:
            raise ValueError(
                f'invalid IP range "{text}": start and end are of different families '
                f"({IPFamily.of(start).value}, {IPFamily.of(end).value})"
            )
        if int(start) > int(end):
            raise ValueError(f'invalid IP range "{text}": start IP "{start}" is after the end IP "{end}"')
        return AddressRange.from_addresses(start, end)
    if "/" not in text:
        raise ValueError(f'invalid CIDR "{text}": expected a prefix such as 192.168.10.0/24 or a range a-b')
    address_text, _, length_text = text.partition("/")
    if _parse_ip(address_text.strip()) is None:
        raise ValueError(f'invalid CIDR "{text}": invalid IP "{address_text}"')
    try:
        if not (length_text.isascii() and length_text.isdigit()):
            raise ValueError(length_text)
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f'invalid CIDR "{text}": invalid prefix length "{length_text}"') from None
    # Host bits are masked away, as MetalLB does: "198.51.100.10/24" (in its own docs) is 198.51.100.0/24.
    return AddressRange.from_network(loose)
