"""The allocator's bookkeeping: who holds what, per-pool free and sharing indexes, legality checks.

Policy (which pool, which family, when to re-allocate) lives in `allocator.py`; this module only
answers "may this Service hold these addresses", "what is the lowest address it could take in this
pool" and records holdings, keeping every index consistent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from schemas.events import AllocationFailureReason
from schemas.metallb.addresses import IPAddress, IPFamily, to_address, unusable_kind
from services.ipam.core.decisions import PoolUsage
from services.ipam.core.free_index import FreeIndex
from services.ipam.core.pools import PoolSpec, RangeTable
from services.ipam.core.service import PoolName, Port, ServiceKey, ServiceRequest, ShareKey
from services.ipam.core.sharing import IPUse, KeyedAddresses, SharingConflict, check_sharing

_CONFLICT_REASON = {
    SharingConflict.NOT_SHARED: AllocationFailureReason.IP_NOT_SHARED,
    SharingConflict.KEY_MISMATCH: AllocationFailureReason.IP_SHARING_KEY_MISMATCH,
    SharingConflict.BACKEND_MISMATCH: AllocationFailureReason.IP_BACKEND_MISMATCH,
    SharingConflict.PORT_CONFLICT: AllocationFailureReason.IP_PORT_CONFLICT,
}

_CONFLICT_TEXT = {
    SharingConflict.NOT_SHARED: "is in use by {others}, and sharing is not allowed by both sides",
    SharingConflict.KEY_MISMATCH: "is in use by {others} under another sharing key",
    SharingConflict.BACKEND_MISMATCH: "is in use by {others} with another backend "
    "(externalTrafficPolicy Local needs an identical selector, and Local and Cluster never share)",
    SharingConflict.PORT_CONFLICT: "is in use by {others} on an overlapping port",
}


class Problem(NamedTuple):
    reason: AllocationFailureReason
    message: str


class Addr(NamedTuple):
    family: IPFamily
    value: int
    range_index: int


@dataclass(slots=True)
class PoolState:
    spec: PoolSpec
    free: list[FreeIndex]
    by_family: dict[IPFamily, list[int]]
    capacity: dict[IPFamily, int]
    assigned: dict[IPFamily, int] = field(default_factory=lambda: {IPFamily.IPV4: 0, IPFamily.IPV6: 0})
    keyed: dict[ShareKey, dict[int, KeyedAddresses]] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: PoolSpec) -> PoolState:
        by_family: dict[IPFamily, list[int]] = {IPFamily.IPV4: [], IPFamily.IPV6: []}
        for i, r in enumerate(spec.ranges):
            by_family[r.family].append(i)
        return cls(
            spec=spec,
            free=[FreeIndex(r, spec.avoid_buggy_ips) for r in spec.ranges],
            by_family=by_family,
            capacity={f: spec.capacity(f) for f in IPFamily},
        )

    def usage(self) -> PoolUsage:
        a4, a6 = self.assigned[IPFamily.IPV4], self.assigned[IPFamily.IPV6]
        return PoolUsage(
            pool=self.spec.name,
            assigned_v4=a4,
            available_v4=self.capacity[IPFamily.IPV4] - a4,
            assigned_v6=a6,
            available_v6=self.capacity[IPFamily.IPV6] - a6,
        )


@dataclass(slots=True)
class Record:
    """One Service's allocation: addresses (in decision order) from one pool."""

    request: ServiceRequest
    pool: PoolName
    addrs: tuple[Addr, ...]
    key: ShareKey
    ports: frozenset[Port]

    @property
    def ips(self) -> tuple[IPAddress, ...]:
        """The addresses, in decision order: made from ``addrs`` when asked (kept, they were ~150 bytes a
        Service)."""
        return tuple([to_address(a.family, a.value) for a in self.addrs])


@dataclass(slots=True)
class AddressBook:
    pools: dict[PoolName, PoolState] = field(default_factory=dict)
    table: RangeTable = field(default_factory=RangeTable)
    uses: dict[IPFamily, dict[int, IPUse]] = field(default_factory=lambda: {IPFamily.IPV4: {}, IPFamily.IPV6: {}})
    holdings: dict[ServiceKey, Record] = field(default_factory=dict)

    @classmethod
    def of(cls, specs: Sequence[PoolSpec]) -> AddressBook:
        return cls(pools={s.name: PoolState.of(s) for s in specs}, table=RangeTable.build(specs))

    # --- questions -------------------------------------------------------------------------

    def locate(self, ips: Iterable[IPAddress]) -> tuple[PoolState, tuple[Addr, ...]] | Problem:
        """The one pool holding all ``ips`` (MetalLB's `poolFor`)."""
        owner: PoolState | None = None
        addrs: list[Addr] = []
        for ip in ips:
            fam = IPFamily.of(ip)
            if (kind := unusable_kind(fam, int(ip))) is not None:
                return Problem(
                    AllocationFailureReason.REQUESTED_IP_UNUSABLE, f"{ip} is a {kind.value} address, never handed out"
                )
            found = self.table.lookup(fam, int(ip))
            if found is None:
                return Problem(AllocationFailureReason.REQUESTED_IP_NOT_IN_POOL, f"{ip} is not in any address pool")
            spec, index = found
            state = self.pools[spec.name]
            if owner is not None and owner is not state:
                return Problem(
                    AllocationFailureReason.REQUESTED_IP_NOT_IN_POOL,
                    f"{', '.join(map(str, ips))} are not in one address pool",
                )
            owner = state
            addrs.append(Addr(fam, int(ip), index))
        if owner is None:
            return Problem(AllocationFailureReason.REQUESTED_IP_NOT_IN_POOL, "no address given")
        return owner, tuple(addrs)

    def sharing_problem(self, request: ServiceRequest, addrs: Iterable[Addr]) -> Problem | None:
        key, ports = request.share, request.ports
        for a in addrs:
            found = check_sharing(self.uses[a.family].get(a.value), request.key, key, ports)
            if found is not None:
                conflict, others = found
                text = _CONFLICT_TEXT[conflict].format(others=", ".join(others))
                return Problem(_CONFLICT_REASON[conflict], f"{to_address(a.family, a.value)} {text}")
        return None

    def check(self, request: ServiceRequest, ips: Sequence[IPAddress]) -> tuple[PoolState, tuple[Addr, ...]] | Problem:
        """May ``request`` hold ``ips``? MetalLB's `Assign` checks: one pool owns them all, that pool
        admits the Service, and every address is free or legally shareable."""
        located = self.locate(ips)
        if isinstance(located, Problem):
            return located
        state, addrs = located
        if not state.spec.admits(request):
            return Problem(
                AllocationFailureReason.POOL_NOT_ALLOWED,
                f"pool {state.spec.name} does not admit {request.key} (serviceAllocation)",
            )
        problem = self.sharing_problem(request, addrs)
        return problem if problem is not None else (state, addrs)

    def candidate(self, state: PoolState, family: IPFamily, request: ServiceRequest) -> Addr | None:
        """The first address of ``family`` the Service could take in the pool: ranges in pool order,
        within a range the lowest address that is free or legally shareable."""
        key = request.share
        keyed = state.keyed.get(key) if key.sharing else None
        if keyed is None and state.assigned[family] >= state.capacity[family]:
            return None  # full, and nothing to share: O(1) whatever the pool size
        used = self.uses[family]
        ports = request.port_set
        for index in state.by_family[family]:
            best = state.free[index].lowest_free(used)
            if keyed is not None:
                shared = keyed.get(index)
                if shared is not None and shared.values:
                    joinable = shared.lowest_joinable(ports, used, best)
                    if joinable is not None:
                        best = joinable
            if best is not None:
                return Addr(family, best, index)
        return None

    # --- changes ---------------------------------------------------------------------------

    def commit(self, request: ServiceRequest, state: PoolState, addrs: tuple[Addr, ...]) -> Record:
        """Record the holding, replacing any previous one of the Service. The caller checked it."""
        service = request.key
        if service in self.holdings:
            self.drop(service, retaken=frozenset((a.family, a.value) for a in addrs))
        key, ports = request.share, request.port_set
        for a in addrs:
            uses = self.uses[a.family]
            use = uses.get(a.value)
            if use is None:
                use = uses[a.value] = IPUse(key)
                state.assigned[a.family] += 1
                if key.sharing:
                    by_range = state.keyed.setdefault(key, {})
                    keyed = by_range.get(a.range_index)
                    if keyed is None:
                        keyed = by_range[a.range_index] = KeyedAddresses()
                    keyed.add(a.value, ports)
            elif use.key.sharing:
                state.keyed[use.key][a.range_index].add_ports(ports)
            use.add(service, ports)
        holding = Record(
            request=request,
            pool=state.spec.name,
            addrs=addrs,
            key=key,
            ports=ports,
        )
        self.holdings[service] = holding
        return holding

    def drop(self, service: ServiceKey, retaken: frozenset[tuple[IPFamily, int]] = frozenset()) -> Record | None:
        """Forget the Service's holding. Addresses in ``retaken`` are about to be committed again,
        so they are not offered to the free index."""
        holding = self.holdings.pop(service, None)
        if holding is None:
            return None
        state = self.pools[holding.pool]
        for a in holding.addrs:
            uses = self.uses[a.family]
            use = uses[a.value]
            use.remove(service)
            keyed = state.keyed[use.key][a.range_index] if use.key.sharing else None
            if use:
                if keyed is not None:
                    keyed.remove_ports(holding.ports)
                continue
            del uses[a.value]
            state.assigned[a.family] -= 1
            if (a.family, a.value) not in retaken:
                state.free[a.range_index].freed(a.value)
            if keyed is not None:
                keyed.remove(a.value, holding.ports)
                if not keyed.values:
                    by_range = state.keyed[use.key]
                    del by_range[a.range_index]
                    if not by_range:
                        del state.keyed[use.key]
        return holding
