"""Address arithmetic and the per-range free-address index.

Addresses are plain ints tagged with a :class:`Family`; nothing here ever materialises the addresses
of a range, so a /64 costs the same as a /30. The free index answers "lowest free address of this
range" in amortised O(log n), whatever the number of used addresses (MetalLB scans linearly).
Unspecified, loopback, link-local, multicast and broadcast addresses are never part of a range's
usable addresses (``0.0.0.0/0`` hands out neither ``0.0.0.0`` nor ``127.0.0.1``); the free index
steps over such a span in one move, so a ``/0`` costs no more than a ``/24``.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Container
from dataclasses import dataclass, field
from enum import IntEnum

from schemas.metallb.addresses import UnusableKind, unusable_spans

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Family(IntEnum):
    """An IP family, valued as the IP version."""

    V4 = 4
    V6 = 6

    @property
    def bits(self) -> int:
        return 32 if self is Family.V4 else 128

    @property
    def label(self) -> str:
        """The Kubernetes spelling (`spec.ipFamilies`)."""
        return "IPv4" if self is Family.V4 else "IPv6"


def family_of(ip: IPAddress) -> Family:
    return Family.V4 if ip.version == 4 else Family.V6


def to_int(ip: IPAddress) -> tuple[Family, int]:
    return family_of(ip), int(ip)


def to_ip(family: Family, value: int) -> IPAddress:
    if family is Family.V4:
        return ipaddress.IPv4Address(value)
    return ipaddress.IPv6Address(value)


def is_buggy(family: Family, value: int) -> bool:
    """True for an IPv4 address ending in .0 or .255 (MetalLB's `ipConfusesBuggyFirmwares`)."""
    return family is Family.V4 and (value & 0xFF) in (0, 0xFF)


def unusable_kind(family: Family, value: int) -> UnusableKind | None:
    """Why an address can never be handed out (unspecified, loopback, ...), or None when it can."""
    spans = unusable_spans(family.value, value, value)
    return spans[0].kind if spans else None


def _count_residue(first: int, last: int, residue: int) -> int:
    """How many x in [first, last] have x % 256 == residue."""
    return (last - residue) // 256 - (first - 1 - residue) // 256


@dataclass(frozen=True, slots=True, order=True)
class AddressRange:
    """An inclusive range of addresses of one family: a CIDR or an `a-b` range of a pool."""

    family: Family
    first: int
    last: int

    def __post_init__(self) -> None:
        if self.first < 0 or self.last >= 1 << self.family.bits:
            raise ValueError(f"range {self.first}-{self.last} outside the IPv{self.family} space")
        if self.first > self.last:
            raise ValueError(f"range start {self.first_ip} is after its end {self.last_ip}")

    @classmethod
    def parse(cls, text: str) -> AddressRange:
        """Parse a pool `addresses` entry: a CIDR (`10.0.0.0/24`) or a range (`10.0.0.1-10.0.0.9`)."""
        text = text.strip()
        if "-" in text:
            start_text, end_text = text.split("-", 1)
            start = ipaddress.ip_address(start_text.strip())
            end = ipaddress.ip_address(end_text.strip())
            if start.version != end.version:
                raise ValueError(f"range {text!r} mixes IPv4 and IPv6")
            return cls(family_of(start), int(start), int(end))
        # strict=False: MetalLB (Go's net.ParseCIDR) masks host bits instead of refusing them.
        network = ipaddress.ip_network(text, strict=False)
        fam = Family.V4 if network.version == 4 else Family.V6
        return cls(fam, int(network.network_address), int(network.broadcast_address))

    @property
    def first_ip(self) -> IPAddress:
        return to_ip(self.family, self.first)

    @property
    def last_ip(self) -> IPAddress:
        return to_ip(self.family, self.last)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def contains(self, family: Family, value: int) -> bool:
        return family is self.family and self.first <= value <= self.last

    def overlaps(self, other: AddressRange) -> bool:
        return self.family is other.family and self.first <= other.last and other.first <= self.last

    def buggy_count(self) -> int:
        """Exact number of .0/.255 addresses in the range (0 for IPv6)."""
        if self.family is not Family.V4:
            return 0
        return _count_residue(self.first, self.last, 0) + _count_residue(self.first, self.last, 0xFF)

    def unusable(self) -> tuple[AddressRange, ...]:
        """The spans of the range that are never handed out (unspecified, loopback, ...), in order."""
        return tuple(
            AddressRange(self.family, span.first, span.last)
            for span in unusable_spans(self.family.value, self.first, self.last)
        )

    def capacity(self, *, avoid_buggy_ips: bool) -> int:
        unusable = self.unusable()
        count = self.size - sum(span.size for span in unusable)
        if avoid_buggy_ips:  # the .0/.255 addresses that are not unusable anyway
            count -= self.buggy_count() - sum(span.buggy_count() for span in unusable)
        return count

    def __str__(self) -> str:
        return f"{self.first_ip}-{self.last_ip}"


@dataclass(slots=True)
class FreeIndex:
    """Lowest-free-address index of one range.

    Every address below ``frontier`` is either in use or sits in the ``holes`` min-heap (freed
    addresses below the frontier; entries are checked lazily against the in-use table, so a hole
    that was taken again is dropped when it reaches the top). Addresses at or above the frontier are
    free unless the in-use table says otherwise; the frontier only moves forward, so each address
    is stepped over at most once. Hence lowest-free is O(log n) amortised.
    """

    span: AddressRange
    avoid_buggy_ips: bool
    frontier: int = field(init=False)
    holes: list[int] = field(init=False, default_factory=list)
    #: The range's unusable spans as (first, last), usually none.
    gaps: tuple[tuple[int, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.frontier = self.span.first
        self.gaps = tuple((gap.first, gap.last) for gap in self.span.unusable())

    def usable(self, value: int) -> bool:
        if self.avoid_buggy_ips and is_buggy(self.span.family, value):
            return False
        return not any(first <= value <= last for first, last in self.gaps)

    def lowest_free(self, used: Container[int]) -> int | None:
        holes = self.holes
        while holes:
            top = holes[0]
            if top in used:
                heapq.heappop(holes)
                continue
            return top
        value, last, gaps = self.frontier, self.span.last, self.gaps
        buggy = self.avoid_buggy_ips and self.span.family is Family.V4
        while value <= last:
            if value in used or (buggy and (value & 0xFF) in (0, 0xFF)):
                value += 1
            elif gaps and (gap_end := _gap_end(gaps, value)) is not None:
                value = gap_end + 1
            else:
                break
        self.frontier = value
        return value if value <= last else None

    def freed(self, value: int) -> None:
        """Record that ``value`` (an address of this range) is no longer in use."""
        if value < self.frontier and self.usable(value):
            heapq.heappush(self.holes, value)


def _gap_end(gaps: tuple[tuple[int, int], ...], value: int) -> int | None:
    """The last address of the gap holding ``value``, if one does (a handful of gaps at most)."""
    for first, last in gaps:
        if first <= value <= last:
            return last
    return None
