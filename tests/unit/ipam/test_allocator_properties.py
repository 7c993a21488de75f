"""Properties of the allocator under random operation sequences, checked against brute force over
small pools: no address is held by two Services that may not share it, every holding is inside its
pool, usage counts match, auto-assignment takes the lowest available address, and re-adopting a
snapshot gives the same allocations whatever the order."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.metallb import IPFamily
from schemas.metallb.addresses import is_buggy
from services.ipam.core import (
    Allocated,
    AllocationReason,
    Allocator,
    IPAddress,
    PoolSpec,
    ServiceRequest,
)
from tests.unit.ipam.scenario import pool, svc

POOLS = [
    pool("a", "10.0.0.0/29", "fd00::/126", "10.0.9.0/31"),
    pool("b", "10.0.1.254-10.0.2.2", "fd01::/127", buggy=True, priority=1, namespaces=("x",)),
    pool("c", "10.0.3.0/30", auto=False),
]
CANDIDATE_IPS = ["10.0.0.1", "10.0.0.7", "10.0.2.1", "10.0.3.2", "fd00::2", "fd01::1", "10.0.2.0", "192.0.2.1"]


@st.composite
def requests(draw: st.DrawFn) -> ServiceRequest:
    fam, policy = draw(
        st.sampled_from(
            [("4", "single")] * 4 + [("6", "single"), ("46", "prefer"), ("64", "prefer"), ("46", "require")]
        )
    )
    want: tuple[str, ...] = ()
    if draw(st.integers(0, 7)) == 0:
        want = tuple(draw(st.lists(st.sampled_from(CANDIDATE_IPS), min_size=1, max_size=2, unique=True)))
    return svc(
        draw(st.sampled_from("pqrst")),
        ns=draw(st.sampled_from(["x", "y"])),
        fam=fam,
        policy=policy,
        ports=draw(st.lists(st.sampled_from(["tcp/80", "tcp/443", "udp/53"]), min_size=1, max_size=2, unique=True)),
        share=draw(st.sampled_from([None, "k1", "k2"])),
        local=draw(st.booleans()),
        selector={"app": draw(st.sampled_from(["s1", "s2"]))},
        want=want,
        pool=draw(st.sampled_from([None] * 8 + ["a", "b", "c", "zz"])),
    )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), requests()),
        st.tuples(st.just("allocate"), requests()),
        st.tuples(st.just("release"), requests()),
        st.tuples(
            st.just("assign"),
            requests(),
            st.lists(st.sampled_from(CANDIDATE_IPS), min_size=1, max_size=2, unique=True),
        ),
    ),
    max_size=40,
)


def may_share(a: ServiceRequest, b: ServiceRequest) -> bool:
    return (
        bool(a.sharing_key)
        and a.sharing_key == b.sharing_key
        and a.backend == b.backend
        and not (set(a.ports) & set(b.ports))
    )


def addresses(spec: PoolSpec) -> list[IPAddress]:
    """The pool's addresses in allocation order (ranges in spec order), buggy ones left out."""
    out: list[IPAddress] = []
    for r in spec.ranges:
        for value in range(r.first, r.last + 1):
            if not (spec.avoid_buggy_ips and is_buggy(r.family, value)):
                out.append(ipaddress.ip_address(value) if r.family is IPFamily.IPV4 else ipaddress.IPv6Address(value))
    return out


def check_invariants(allocator: Allocator) -> None:
    holders: dict[IPAddress, list[ServiceRequest]] = defaultdict(list)
    specs = {p.name: p for p in allocator.pools}
    for h in allocator.holdings():
        assert 1 <= len(h.ips) <= 2
        assert len({ip.version for ip in h.ips}) == len(h.ips)
        assert set(h.ips) <= set(addresses(specs[h.pool])), h
        for ip in h.ips:
            holders[ip].append(h.request)
    for ip, users in holders.items():
        assert sorted(str(u.key) for u in users) == allocator.holders(ip)
        for i, a in enumerate(users):
            for b in users[i + 1 :]:
                assert may_share(a, b), (ip, a, b)
    for spec in allocator.pools:
        usage = allocator.usage(spec.name)
        held = [ip for ip in holders if ip in set(addresses(spec))]
        v4 = sum(1 for ip in held if ip.version == 4)
        v6 = len(held) - v4
        cap4 = sum(1 for ip in addresses(spec) if ip.version == 4)
        assert (usage.assigned_v4, usage.available_v4) == (v4, cap4 - v4)
        assert (usage.assigned_v6, usage.available_v6) == (v6, len(addresses(spec)) - cap4 - v6)


def check_lowest(allocator: Allocator, request: ServiceRequest, decision: Allocated) -> None:
    """Single-stack auto-assignment: no earlier address of the chosen pool was free or shareable."""
    spec = next(p for p in allocator.pools if p.name == decision.pool)
    others = {h.request.key: h for h in allocator.holdings() if h.request.key != request.key}
    for ip in addresses(spec):
        if ip == decision.ips[0]:
            return
        if ip.version != decision.ips[0].version:
            continue
        users = [h.request for h in others.values() if ip in h.ips]
        assert users, f"{ip} was free but {decision.ips[0]} was taken"
        assert not all(may_share(u, request) for u in users), f"{ip} was shareable"


def run(ops: list[tuple[object, ...]]) -> Allocator:
    allocator = Allocator(POOLS)
    for op in ops:
        kind, request = op[0], op[1]
        assert isinstance(request, ServiceRequest)
        if kind == "allocate":
            decision = allocator.allocate(request)
            if (
                isinstance(decision, Allocated)
                and decision.reason is AllocationReason.AUTO_ASSIGNED
                and not request.dual_stack
            ):
                check_lowest(allocator, request, decision)
        elif kind == "release":
            allocator.release(request.key)
        else:
            wanted = op[2]
            assert isinstance(wanted, list)
            allocator.assign(request, tuple(ipaddress.ip_address(t) for t in wanted))
        check_invariants(allocator)
    return allocator


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_random_operations_keep_invariants(ops: list[tuple[object, ...]]) -> None:
    run(ops)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, st.randoms(use_true_random=False))
def test_readoption_is_order_independent(ops: list[tuple[object, ...]], rnd: object) -> None:
    allocator = run(ops)
    snapshot = allocator.holdings()
    order = list(snapshot)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    replay = Allocator(POOLS)
    for h in order:
        assert isinstance(replay.assign(h.request, h.ips), Allocated), h
    assert replay.holdings() == snapshot
    assert replay.usages() == allocator.usages()
    check_invariants(replay)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations, requests())
def test_decisions_are_deterministic(ops: list[tuple[object, ...]], extra: ServiceRequest) -> None:
    first, second = run(ops), run(ops)
    assert first.allocate(extra) == second.allocate(extra)
    assert first.holdings() == second.holdings()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_unchanged_pools_keep_every_allocation(ops: list[tuple[object, ...]]) -> None:
    allocator = run(ops)
    before = allocator.holdings()
    applied = allocator.set_pools(POOLS)
    assert applied.released == () and applied.moved == ()
    assert allocator.holdings() == before
    check_invariants(allocator)
