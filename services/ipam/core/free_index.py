"""The per-range free-address index of the allocator.

A range is the schema's :class:`~schemas.metallb.addresses.AddressRange` (from ``parse_address_range``,
the one parser production uses): plain ints tagged with an ``IPFamily``; nothing here ever
materialises the addresses of a range, so a /64 costs the same as a /30. The index answers "lowest
free address of this range" in amortised O(log n), whatever the number of used addresses (MetalLB
scans linearly). Unspecified, loopback, link-local, multicast and broadcast addresses are never
handed out (``0.0.0.0/0`` gives neither ``0.0.0.0`` nor ``127.0.0.1``); the index steps over such
a span in one move, so a ``/0`` costs no more than a ``/24``.
"""

from __future__ import annotations

import heapq
from collections.abc import Container
from dataclasses import dataclass, field

from schemas.metallb.addresses import AddressRange, IPFamily, is_buggy, unusable_spans


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
        self.gaps = tuple(
            (gap.first, gap.last) for gap in unusable_spans(self.span.family.version, self.span.first, self.span.last)
        )

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
        buggy = self.avoid_buggy_ips and self.span.family is IPFamily.IPV4
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
