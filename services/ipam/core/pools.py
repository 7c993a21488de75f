"""Address pools: their spec, who they admit, the auto-assign order, and address-to-pool lookup."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from schemas.metallb.addresses import AddressRange, IPFamily, allocatable_count, is_buggy, parse_address_range
from services.ipam.core.service import PoolName, ServiceRequest


class LabelMatcher(Protocol):
    """A label selector (the metallb.io selector model satisfies this)."""

    def matches(self, labels: Mapping[str, str]) -> bool: ...


@dataclass(frozen=True, slots=True)
class MatchLabels:
    """The simplest selector: every given label present with that value (`matchLabels`)."""

    labels: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, labels: Mapping[str, str]) -> MatchLabels:
        return cls(tuple(sorted(labels.items())))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceAllocation:
    """A pool's `spec.serviceAllocation`. A priority of None or 0 means unset (last)."""

    priority: int | None = None
    namespaces: frozenset[str] = frozenset()
    namespace_selectors: tuple[LabelMatcher, ...] = ()
    service_selectors: tuple[LabelMatcher, ...] = ()

    @property
    def has_priority(self) -> bool:
        return bool(self.priority)

    def admits(self, request: ServiceRequest) -> bool:
        """MetalLB's `isPoolCompatibleWithService`, with namespace selectors evaluated against the
        Service's namespace labels: the namespace must be listed or selected (when either is given),
        and the Service must match one service selector (when any is given)."""
        if (self.namespaces or self.namespace_selectors) and not (
            request.namespace in self.namespaces
            or any(s.matches(request.namespace_labels) for s in self.namespace_selectors)
        ):
            return False
        return not self.service_selectors or any(s.matches(request.labels) for s in self.service_selectors)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSpec:
    """An IPAddressPool as the allocator sees it. ``ranges`` keep the order of `spec.addresses`."""

    name: PoolName
    ranges: tuple[AddressRange, ...]
    auto_assign: bool = True
    avoid_buggy_ips: bool = False
    allocation: ServiceAllocation | None = None

    def admits(self, request: ServiceRequest) -> bool:
        return self.allocation is None or self.allocation.admits(request)

    def families(self) -> frozenset[IPFamily]:
        return frozenset(r.family for r in self.ranges)

    def capacity(self, family: IPFamily) -> int:
        return sum(
            allocatable_count(r, avoid_buggy_ips=self.avoid_buggy_ips) for r in self.ranges if r.family is family
        )

    @classmethod
    def of(
        cls,
        name: str,
        addresses: Iterable[str],
        *,
        auto_assign: bool = True,
        avoid_buggy_ips: bool = False,
        allocation: ServiceAllocation | None = None,
    ) -> PoolSpec:
        """Build from `spec.addresses` strings (CIDRs and `a-b` ranges)."""
        return cls(
            name=PoolName(name),
            ranges=tuple(parse_address_range(a) for a in addresses),
            auto_assign=auto_assign,
            avoid_buggy_ips=avoid_buggy_ips,
            allocation=allocation,
        )


class InvalidPools(ValueError):
    """The pool set cannot be used (duplicate names, empty pool, overlapping ranges)."""


def validate_pools(pools: Sequence[PoolSpec]) -> None:
    names: set[str] = set()
    spans: list[tuple[AddressRange, PoolName]] = []
    for pool in pools:
        if pool.name in names:
            raise InvalidPools(f"duplicate pool {pool.name!r}")
        names.add(pool.name)
        if not pool.ranges:
            raise InvalidPools(f"pool {pool.name!r} has no addresses")
        spans.extend((r, pool.name) for r in pool.ranges)
    spans.sort(key=lambda s: (s[0].family, s[0].first))
    for (a, pa), (b, pb) in itertools.pairwise(spans):
        if a.overlaps(b):
            raise InvalidPools(f"range {b} of pool {pb!r} overlaps range {a} of pool {pa!r}")


@dataclass(frozen=True, slots=True)
class AutoAssignOrder:
    """The pools auto-assignment tries, in two tiers (MetalLB's `Allocate`).

    First the pinned pools (auto-assign, with a serviceAllocation that admits the Service) by
    priority, lower first, unset last, ties by name; then the auto-assign pools without a
    serviceAllocation, by name. A pool whose serviceAllocation does not admit a Service is never
    auto-assigned to it (the allocator checks admission as it walks the tiers).
    """

    pinned: tuple[PoolSpec, ...]
    unpinned: tuple[PoolSpec, ...]

    @classmethod
    def of(cls, pools: Iterable[PoolSpec]) -> AutoAssignOrder:
        auto = [p for p in pools if p.auto_assign]
        return cls(
            pinned=tuple(sorted((p for p in auto if p.allocation is not None), key=pool_order_key)),
            unpinned=tuple(sorted((p for p in auto if p.allocation is None), key=lambda p: p.name)),
        )


def pool_order_key(pool: PoolSpec) -> tuple[int, int, str]:
    prio = pool.allocation.priority if pool.allocation is not None else None
    return (0, prio, pool.name) if prio else (1, 0, pool.name)


@dataclass(slots=True)
class RangeTable:
    """Which pool and range own an address: sorted range starts per family, bisected."""

    starts: dict[IPFamily, list[int]] = field(default_factory=lambda: {IPFamily.IPV4: [], IPFamily.IPV6: []})
    entries: dict[IPFamily, list[tuple[AddressRange, PoolSpec, int]]] = field(
        default_factory=lambda: {IPFamily.IPV4: [], IPFamily.IPV6: []}
    )

    @classmethod
    def build(cls, pools: Iterable[PoolSpec]) -> RangeTable:
        table = cls()
        rows = sorted(
            ((r, p, i) for p in pools for i, r in enumerate(p.ranges)), key=lambda e: (e[0].family, e[0].first)
        )
        for row in rows:
            table.starts[row[0].family].append(row[0].first)
            table.entries[row[0].family].append(row)
        return table

    def lookup(self, family: IPFamily, value: int) -> tuple[PoolSpec, int] | None:
        """The pool owning the address and the range's index in that pool, honouring avoidBuggyIPs
        (a .0/.255 address is not part of a pool that avoids them)."""
        pos = bisect.bisect_right(self.starts[family], value) - 1
        if pos < 0:
            return None
        span, pool, index = self.entries[family][pos]
        if value > span.last or (pool.avoid_buggy_ips and is_buggy(family, value)):
            return None
        return pool, index
