"""Builders and scenario rows for the allocator tables: each row acts on one shared Allocator and
states what MetalLB would answer, so a table reads as a story."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from schemas.events import AllocationFailureReason, ReleaseReason
from schemas.metallb import IPFamily
from services.ipam.core import (
    Allocated,
    AllocationReason,
    Allocator,
    IPAddress,
    IPFamilyPolicy,
    MatchLabels,
    PoolName,
    PoolSpec,
    Port,
    Refused,
    ReplaceCause,
    ServiceAllocation,
    ServiceKey,
    ServiceRequest,
    TrafficPolicy,
)

_FAMILIES = {
    "4": (IPFamily.IPV4,),
    "6": (IPFamily.IPV6,),
    "46": (IPFamily.IPV4, IPFamily.IPV6),
    "64": (IPFamily.IPV6, IPFamily.IPV4),
}
_POLICIES = {
    "single": IPFamilyPolicy.SINGLE_STACK,
    "prefer": IPFamilyPolicy.PREFER_DUAL_STACK,
    "require": IPFamilyPolicy.REQUIRE_DUAL_STACK,
}


def ips(*texts: str) -> tuple[IPAddress, ...]:
    return tuple(ipaddress.ip_address(t) for t in texts)


def svc(
    name: str,
    *,
    ns: str = "default",
    fam: str = "4",
    policy: str = "single",
    ports: Sequence[str] = ("tcp/80",),
    share: str | None = None,
    local: bool = False,
    selector: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    ns_labels: Mapping[str, str] | None = None,
    want: Sequence[str] = (),
    pool: str | None = None,
    status: Sequence[str] = (),
) -> ServiceRequest:
    """A Service request in shorthand: ``fam`` "4", "6", "46" or "64" (primary first); ``ports``
    like "tcp/80"; ``want`` the requested IPs; ``pool`` the requested pool."""
    return ServiceRequest(
        key=ServiceKey(f"{ns}/{name}"),
        namespace=ns,
        families=_FAMILIES[fam],
        family_policy=_POLICIES[policy],
        ports=tuple(Port(p.split("/")[0].upper(), int(p.split("/")[1])) for p in ports),
        sharing_key=share,
        traffic_policy=TrafficPolicy.LOCAL if local else TrafficPolicy.CLUSTER,
        selector=dict(selector or {"app": name}),
        labels=dict(labels or {}),
        namespace_labels=dict(ns_labels or {}),
        requested_ips=ips(*want),
        requested_pool=PoolName(pool) if pool else None,
        status_ips=ips(*status),
    )


def pool(
    name: str,
    *addresses: str,
    auto: bool = True,
    buggy: bool = False,
    priority: int | None = None,
    namespaces: Sequence[str] = (),
    ns_selector: Mapping[str, str] | None = None,
    svc_selector: Mapping[str, str] | None = None,
    pinned: bool = False,
) -> PoolSpec:
    """A pool; any of priority / namespaces / selectors (or ``pinned``) gives it a serviceAllocation."""
    allocation = None
    if pinned or priority is not None or namespaces or ns_selector or svc_selector:
        allocation = ServiceAllocation(
            priority=priority,
            namespaces=frozenset(namespaces),
            namespace_selectors=(MatchLabels.of(ns_selector),) if ns_selector else (),
            service_selectors=(MatchLabels.of(svc_selector),) if svc_selector else (),
        )
    return PoolSpec.of(name, addresses, auto_assign=auto, avoid_buggy_ips=buggy, allocation=allocation)


class Row:
    def run(self, allocator: Allocator) -> None:
        raise NotImplementedError


@dataclass
class Gets(Row):
    """`allocate` gives these IPs from this pool (and, when given, for this reason)."""

    request: ServiceRequest
    ips: tuple[str, ...]
    pool: str
    reason: AllocationReason | None = None
    replaced: ReplaceCause | None = None

    def run(self, allocator: Allocator) -> None:
        decision = allocator.allocate(self.request)
        assert isinstance(decision, Allocated), decision
        assert tuple(map(str, decision.ips)) == self.ips, decision
        assert decision.pool == self.pool, decision
        if self.reason is not None:
            assert decision.reason is self.reason, decision
        if self.replaced is not None:
            assert decision.replaced is not None and decision.replaced.cause is self.replaced, decision
        assert allocator.ips(self.request.key) == decision.ips


@dataclass
class Refuses(Row):
    """`allocate` refuses for this reason; the Service then holds nothing."""

    request: ServiceRequest
    reason: AllocationFailureReason
    lost: tuple[str, ...] = ()

    def run(self, allocator: Allocator) -> None:
        decision = allocator.allocate(self.request)
        assert isinstance(decision, Refused), decision
        assert decision.reason is self.reason, decision
        assert decision.message
        lost = tuple(map(str, decision.released.ips)) if decision.released else ()
        assert lost == self.lost, decision
        assert allocator.ips(self.request.key) == ()


@dataclass
class Adopts(Row):
    """`assign` re-adopts these IPs (ok) or refuses for a reason, leaving what was held."""

    request: ServiceRequest
    ips: tuple[str, ...]
    refused: AllocationFailureReason | None = None
    pool: str | None = None

    def run(self, allocator: Allocator) -> None:
        before = allocator.ips(self.request.key)
        decision = allocator.assign(self.request, ips(*self.ips))
        if self.refused is None:
            assert isinstance(decision, Allocated), decision
            assert decision.reason is AllocationReason.ADOPTED
            assert tuple(map(str, decision.ips)) == self.ips
            if self.pool is not None:
                assert decision.pool == self.pool
        else:
            assert isinstance(decision, Refused), decision
            assert decision.reason is self.refused, decision
            assert allocator.ips(self.request.key) == before


@dataclass
class Releases(Row):
    name: str
    ns: str = "default"
    freed: tuple[str, ...] = ()

    def run(self, allocator: Allocator) -> None:
        released = allocator.release(ServiceKey(f"{self.ns}/{self.name}"), ReleaseReason.SERVICE_DELETED)
        got = tuple(map(str, released.ips)) if released else ()
        assert got == self.freed, released


@dataclass
class SetsPools(Row):
    """`set_pools`; these Services lose their IPs, those are re-pointed (service -> new pool)."""

    pools: Sequence[PoolSpec]
    released: tuple[str, ...] = ()
    moved: Mapping[str, str] = field(default_factory=dict)

    def run(self, allocator: Allocator) -> None:
        applied = allocator.set_pools(self.pools)
        assert tuple(r.service for r in applied.released) == self.released, applied
        assert {m.service: m.new_pool for m in applied.moved} == dict(self.moved), applied
        for r in applied.released:
            assert allocator.ips(r.service) == ()
            assert r.message


@dataclass
class Usage(Row):
    """Pool usage: (assigned v4, available v4, assigned v6, available v6)."""

    pool: str
    counts: tuple[int, int, int, int]

    def run(self, allocator: Allocator) -> None:
        u = allocator.usage(PoolName(self.pool))
        assert (u.assigned_v4, u.available_v4, u.assigned_v6, u.available_v6) == self.counts, u


def play(pools: Sequence[PoolSpec], rows: Sequence[Row]) -> Allocator:
    allocator = Allocator(pools)
    for number, row in enumerate(rows, 1):
        try:
            row.run(allocator)
        except AssertionError as error:
            raise AssertionError(f"row {number}: {row}\n{error}") from error
    return allocator
