"""The address allocator: MetalLB's allocation policy over the bookkeeping of `book.py`.

State operations mirror MetalLB's allocator (`Assign`, `Allocate`, `Unassign`, `SetPools`) and its
controller's convergence of one Service (`convergeBalancer`): keep what a Service holds while it is
still legal and still what it asks for, otherwise release it and allocate afresh. Every answer is a
decision value; nothing here does I/O, reads a clock or depends on dict or set order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from schemas.events import AllocationFailureReason, ReleaseReason
from schemas.metallb.addresses import IPAddress, IPFamily
from services.ipam.core.book import Addr, AddressBook, PoolState, Problem, Record
from services.ipam.core.decisions import (
    Allocated,
    AllocationReason,
    Decision,
    Holding,
    Moved,
    PoolsApplied,
    PoolUsage,
    Refused,
    Released,
    ReplaceCause,
    Replaced,
)
from services.ipam.core.pools import AutoAssignOrder, PoolSpec, validate_pools
from services.ipam.core.service import IPFamilyPolicy, PoolName, ServiceKey, ServiceRequest, families_of


def _ips_text(ips: Sequence[IPAddress]) -> str:
    return ", ".join(str(ip) for ip in ips)


def _families_text(families: Sequence[IPFamily]) -> str:
    return "/".join(f.value for f in families)


class Allocator:
    """Tracks pools and allocations; decides addresses for Services."""

    def __init__(self, pools: Sequence[PoolSpec] = ()) -> None:
        self._specs: tuple[PoolSpec, ...] = ()
        self._book = AddressBook()
        self._tiers: tuple[tuple[PoolState, ...], ...] = ()
        if pools:
            self.set_pools(pools)

    # --- queries ---------------------------------------------------------------------------

    @property
    def pools(self) -> tuple[PoolSpec, ...]:
        return self._specs

    def holds(self, service: ServiceKey) -> bool:
        """Whether the Service holds addresses (then its status's addresses are never read: ``allocate``)."""
        return service in self._book.holdings

    def ips(self, service: ServiceKey) -> tuple[IPAddress, ...]:
        holding = self._book.holdings.get(service)
        return holding.ips if holding is not None else ()

    def pool_of(self, service: ServiceKey) -> PoolName | None:
        holding = self._book.holdings.get(service)
        return holding.pool if holding is not None else None

    def services(self) -> list[ServiceKey]:
        """Services holding addresses, sorted."""
        return sorted(self._book.holdings)

    def holdings(self) -> list[Holding]:
        """Every allocation, sorted by Service: what a snapshot or a re-adoption needs."""
        return [
            Holding(request=h.request, ips=h.ips, pool=h.pool)
            for h in (self._book.holdings[s] for s in sorted(self._book.holdings))
        ]

    def holders(self, ip: IPAddress) -> list[ServiceKey]:
        """Services using ``ip``, sorted."""
        use = self._book.uses[IPFamily.of(ip)].get(int(ip))
        return sorted(use.users) if use is not None else []

    def usage(self, pool: PoolName) -> PoolUsage:
        return self._book.pools[pool].usage()

    def usages(self) -> tuple[PoolUsage, ...]:
        return tuple(self._book.pools[p.name].usage() for p in sorted(self._specs, key=lambda s: s.name))

    # --- configuration ---------------------------------------------------------------------

    def set_pools(self, pools: Sequence[PoolSpec]) -> PoolsApplied:
        """Replace the pool set (raises `InvalidPools`). An allocation still inside one pool stays,
        re-pointed if that pool changed; one that is not is released and reported, to be
        re-allocated by the caller."""
        validate_pools(pools)
        old = self._book
        self._specs = tuple(pools)
        self._book = AddressBook.of(self._specs)
        order = AutoAssignOrder.of(self._specs)
        self._tiers = tuple(tuple(self._book.pools[p.name] for p in tier) for tier in (order.pinned, order.unpinned))
        released: list[Released] = []
        moved: list[Moved] = []
        for service in sorted(old.holdings):
            holding = old.holdings[service]
            located = self._book.locate(holding.ips)
            if isinstance(located, Problem):
                released.append(
                    Released(
                        service=service,
                        ips=holding.ips,
                        pool=holding.pool,
                        reason=ReleaseReason.NOT_COVERED_BY_POOL,
                        message=f"{_ips_text(holding.ips)} no longer in one address pool: {located.message}",
                    )
                )
                continue
            state, addrs = located
            self._book.commit(holding.request, state, addrs)
            if state.spec.name != holding.pool:
                moved.append(Moved(service=service, ips=holding.ips, old_pool=holding.pool, new_pool=state.spec.name))
        return PoolsApplied(released=tuple(released), moved=tuple(moved))

    # --- MetalLB's Assign / Unassign ---------------------------------------------------------

    def assign(self, request: ServiceRequest, ips: Sequence[IPAddress]) -> Decision:
        """Re-adopt ``ips`` for the Service if it may hold them (replay, or a status written by
        MetalLB): one pool owns them all and admits the Service, at most one per family, each free or
        legally shared. On refusal the Service keeps what it held."""
        given = tuple(ips)
        if families_of(given) is None:
            return self._refused(
                request,
                AllocationFailureReason.TOO_MANY_REQUESTED_IPS,
                f"{_ips_text(given)}: at most one address per family",
            )
        checked = self._book.check(request, given)
        if isinstance(checked, Problem):
            return self._refused(request, checked.reason, checked.message)
        state, addrs = checked
        holding = self._book.commit(request, state, addrs)
        return self._allocated(holding, AllocationReason.ADOPTED)

    def release(self, service: ServiceKey, reason: ReleaseReason = ReleaseReason.SERVICE_DELETED) -> Released | None:
        """Free whatever the Service holds; None if it held nothing."""
        holding = self._book.drop(service)
        if holding is None:
            return None
        return Released(service=service, ips=holding.ips, pool=holding.pool, reason=reason)

    # --- convergence of one Service ----------------------------------------------------------

    def allocate(self, request: ServiceRequest) -> Decision:
        """Decide the Service's addresses: keep what it holds (or what its status shows) while that
        is legal and still what it asks for, else allocate: the requested IPs, else from the
        requested pool, else from the auto-assign pools."""
        if not self._specs:
            released = self.release(request.key, ReleaseReason.REFUSED)
            return self._refused(request, AllocationFailureReason.NO_POOLS, "no address pool is configured", released)
        holding = self._book.holdings.get(request.key)
        current = holding.ips if holding is not None else request.status_ips
        replaced: Replaced | None = None
        if current:
            kept = self._try_keep(request, holding, current)
            if isinstance(kept, Allocated):
                return kept
            replaced = kept
            self._book.drop(request.key)
        decision = self._fresh(request)
        if replaced is None:
            return decision
        if isinstance(decision, Allocated):
            return replace(decision, replaced=replaced)
        if holding is None:
            return decision
        lost = Released(
            service=request.key,
            ips=holding.ips,
            pool=holding.pool,
            reason=ReleaseReason.REFUSED,
            message=replaced.message,
        )
        return replace(decision, released=lost)

    def kept(self, request: ServiceRequest) -> Allocated | None:
        """What ``allocate`` would decide if it kept what the Service holds exactly as it is, changing nothing
        (None: it would not, or it might not — a PreferDualStack Service holding one family may gain the
        other once an address is free). Pure."""
        holding = self._book.holdings.get(request.key)
        if not self._specs or holding is None or holding.request != request:
            return None
        if request.dual_stack and request.family_policy is IPFamilyPolicy.PREFER_DUAL_STACK and len(holding.ips) < 2:
            return None
        kept = self._keepable(request, holding, holding.ips)
        if isinstance(kept, Replaced) or kept[1] != holding.addrs:
            return None
        return self._allocated(holding, AllocationReason.UNCHANGED)

    def _try_keep(
        self, request: ServiceRequest, holding: Record | None, current: tuple[IPAddress, ...]
    ) -> Allocated | Replaced:
        kept = self._keepable(request, holding, current)
        if isinstance(kept, Replaced):
            return kept
        state, addrs = kept
        reason = AllocationReason.UNCHANGED if holding is not None else AllocationReason.ADOPTED_FROM_STATUS
        message = ""
        if len(addrs) == 1 and request.dual_stack and request.family_policy is IPFamilyPolicy.PREFER_DUAL_STACK:
            missing = request.families[1] if addrs[0].family is request.families[0] else request.families[0]
            extra = self._book.candidate(state, missing, request)
            if extra is not None:
                addrs = self._ordered(request, (*addrs, extra))
                reason = AllocationReason.ADDITIONAL_FAMILY
            else:
                message = f"PreferDualStack: no free {missing.value} address in pool {state.spec.name}"
        if holding is not None and holding.addrs == addrs and holding.request == request:
            return self._allocated(holding, reason, message)
        return self._allocated(self._book.commit(request, state, addrs), reason, message)

    def _keepable(
        self, request: ServiceRequest, holding: Record | None, current: tuple[IPAddress, ...]
    ) -> tuple[PoolState, tuple[Addr, ...]] | Replaced:
        """Whether the Service may keep ``current`` (its pool and addresses), or why not. Pure."""
        old_pool = holding.pool if holding is not None else None

        def dropped(cause: ReplaceCause, message: str) -> Replaced:
            return Replaced(ips=current, pool=old_pool, cause=cause, message=message)

        fams = families_of(current)
        wanted = set(request.families)
        if fams is None or (
            set(fams) != wanted
            and not (request.dual_stack and request.family_policy is IPFamilyPolicy.PREFER_DUAL_STACK)
        ):
            return dropped(
                ReplaceCause.FAMILY_CHANGED,
                f"{_ips_text(current)} do not match the Service's families {_families_text(request.families)}",
            )
        checked = self._book.check(request, current)
        if isinstance(checked, Problem):
            return dropped(ReplaceCause.NO_LONGER_ALLOWED, checked.message)
        state, addrs = checked
        if request.requested_pool is not None and state.spec.name != request.requested_pool:
            return dropped(
                ReplaceCause.DIFFERENT_POOL_REQUESTED,
                f"pool {request.requested_pool} requested, {_ips_text(current)} are in pool {state.spec.name}",
            )
        if request.requested_ips and set(request.requested_ips) != set(current):
            return dropped(
                ReplaceCause.DIFFERENT_IP_REQUESTED,
                f"{_ips_text(request.requested_ips)} requested instead of {_ips_text(current)}",
            )
        return state, addrs

    def _fresh(self, request: ServiceRequest) -> Decision:
        if request.requested_ips:
            return self._requested_ips(request)
        if request.requested_pool is not None:
            return self._requested_pool(request, request.requested_pool)
        for tier in self._tiers:
            found = self._best_pool(tier, request)
            if found is not None:
                state, addrs = found
                return self._allocated(self._book.commit(request, state, addrs), AllocationReason.AUTO_ASSIGNED)
        eligible = [s.spec.name for tier in self._tiers for s in tier if s.spec.admits(request)]
        if not eligible:
            return self._refused(
                request, AllocationFailureReason.NO_ELIGIBLE_POOL, "no auto-assign address pool admits this Service"
            )
        return self._refused(
            request,
            AllocationFailureReason.NO_AVAILABLE_IP,
            f"no available {_families_text(request.families)} addresses in eligible pools ({', '.join(eligible)})",
        )

    def _requested_ips(self, request: ServiceRequest) -> Decision:
        ips = request.requested_ips
        fams = families_of(ips)
        if fams is None:
            return self._refused(
                request,
                AllocationFailureReason.TOO_MANY_REQUESTED_IPS,
                f"{_ips_text(ips)}: at most one address per family",
            )
        if set(fams) != set(request.families):
            return self._refused(
                request,
                AllocationFailureReason.REQUESTED_FAMILY_MISMATCH,
                f"requested {_ips_text(ips)} do not match the Service's families {_families_text(request.families)}",
            )
        located = self._book.locate(ips)
        if isinstance(located, Problem):
            return self._refused(request, located.reason, located.message)
        if request.requested_pool is not None and located[0].spec.name != request.requested_pool:
            return self._refused(
                request,
                AllocationFailureReason.REQUESTED_IP_WRONG_POOL,
                f"requested {_ips_text(ips)} are in pool {located[0].spec.name}, "
                f"not in the requested pool {request.requested_pool}",
            )
        checked = self._book.check(request, ips)
        if isinstance(checked, Problem):
            return self._refused(request, checked.reason, checked.message)
        return self._allocated(self._book.commit(request, *checked), AllocationReason.REQUESTED_IPS)

    def _requested_pool(self, request: ServiceRequest, name: PoolName) -> Decision:
        state = self._book.pools.get(name)
        if state is None:
            return self._refused(request, AllocationFailureReason.UNKNOWN_POOL, f"requested pool {name} does not exist")
        if not state.spec.admits(request):
            return self._refused(
                request, AllocationFailureReason.POOL_NOT_ALLOWED, f"requested pool {name} does not admit this Service"
            )
        addrs = self._pick(state, request)
        if addrs is None:
            return self._refused(
                request,
                AllocationFailureReason.POOL_EXHAUSTED,
                f"no available {_families_text(request.families)} addresses in pool {name}",
            )
        return self._allocated(self._book.commit(request, state, addrs), AllocationReason.REQUESTED_POOL)

    def _pick(self, state: PoolState, request: ServiceRequest) -> tuple[Addr, ...] | None:
        """MetalLB's `selectIPsForFamilyAndPolicy` within one pool."""
        first = self._book.candidate(state, request.families[0], request)
        if not request.dual_stack:
            return (first,) if first is not None else None
        second = self._book.candidate(state, request.families[1], request)
        if first is not None and second is not None:
            return (first, second)
        if request.family_policy is not IPFamilyPolicy.PREFER_DUAL_STACK:
            return None
        single = first if first is not None else second
        return (single,) if single is not None else None

    def _best_pool(
        self, states: Sequence[PoolState], request: ServiceRequest
    ) -> tuple[PoolState, tuple[Addr, ...]] | None:
        """MetalLB's `findBestPoolForService` over the pools of one tier that admit the Service: the
        first pool with the Service's family (both families for a dual-stack Service); under
        PreferDualStack, failing that, the first pool with the primary family, then the first with
        the secondary one. Admission is checked only for pools with room (it is the costlier test)."""
        book = self._book
        primary = request.families[0]
        if not request.dual_stack:
            for state in states:
                found = book.candidate(state, primary, request)
                if found is not None and state.spec.admits(request):
                    return state, (found,)
            return None
        prefer = request.family_policy is IPFamilyPolicy.PREFER_DUAL_STACK
        first_primary: tuple[PoolState, tuple[Addr, ...]] | None = None
        first_secondary: tuple[PoolState, tuple[Addr, ...]] | None = None
        for state in states:
            one = book.candidate(state, primary, request)
            if one is None and not prefer:
                continue
            two = book.candidate(state, request.families[1], request)
            if (one is None and two is None) or not state.spec.admits(request):
                continue
            if one is not None and two is not None:
                return state, (one, two)
            if not prefer:
                continue
            if one is not None and first_primary is None:
                first_primary = state, (one,)
            if two is not None and first_secondary is None:
                first_secondary = state, (two,)
        return first_primary or first_secondary

    # --- decision helpers ------------------------------------------------------------------

    @staticmethod
    def _ordered(request: ServiceRequest, addrs: tuple[Addr, ...]) -> tuple[Addr, ...]:
        return tuple(sorted(addrs, key=lambda a: request.families.index(a.family)))

    @staticmethod
    def _allocated(holding: Record, reason: AllocationReason, message: str = "") -> Allocated:
        request = holding.request
        return Allocated(
            service=request.key,
            ips=holding.ips,
            pool=holding.pool,
            sharing_key=request.share.sharing,
            reason=reason,
            message=message,
            deprecated_annotations=request.deprecated_annotations,
        )

    @staticmethod
    def _refused(
        request: ServiceRequest, reason: AllocationFailureReason, message: str, released: Released | None = None
    ) -> Refused:
        return Refused(
            service=request.key,
            reason=reason,
            message=message,
            released=released,
            deprecated_annotations=request.deprecated_annotations,
        )
