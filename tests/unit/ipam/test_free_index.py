"""The allocator's free-address index and address-to-pool lookup, against brute force."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.metallb import AddressRange, IPFamily
from schemas.metallb.addresses import is_buggy, unusable_kind
from services.ipam.core import InvalidPools, PoolSpec
from services.ipam.core.free_index import FreeIndex
from services.ipam.core.pools import RangeTable, validate_pools


@settings(max_examples=300)
@given(
    st.integers(0, 600),
    st.integers(1, 40),
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(["take", "free", "lowest"]), st.integers(0, 45)), max_size=80),
)
def test_free_index_matches_brute_force(start: int, size: int, buggy: bool, ops: list[tuple[str, int]]) -> None:
    span = AddressRange(IPFamily.IPV4, start, start + size - 1)
    index = FreeIndex(span, buggy)
    usable = [
        v
        for v in range(span.first, span.last + 1)
        if not (buggy and is_buggy(IPFamily.IPV4, v)) and unusable_kind(IPFamily.IPV4, v) is None  # 0.0.0.0
    ]
    used: set[int] = set()
    for op, n in ops:
        if op == "take":
            free = [v for v in usable if v not in used]
            if free:
                used.add(free[n % len(free)])  # any address, not only the lowest (requested IPs)
        elif op == "free" and used:
            value = sorted(used)[n % len(used)]
            used.discard(value)
            index.freed(value)
        else:
            lowest = index.lowest_free(used)
            expected = next((v for v in usable if v not in used), None)
            assert lowest == expected
            if lowest is not None and n % 2:
                used.add(lowest)


def test_range_table_lookup_and_overlap_validation() -> None:
    pools = [
        PoolSpec.of("a", ["10.0.0.0/24", "fd00::/64"]),
        PoolSpec.of("b", ["10.0.1.0-10.0.1.9"], avoid_buggy_ips=True),
    ]
    validate_pools(pools)
    table = RangeTable.build(pools)

    def owner(family: IPFamily, text: str) -> str | None:
        found = table.lookup(family, int(ipaddress.ip_address(text)))
        return found[0].name if found else None

    assert owner(IPFamily.IPV4, "10.0.0.255") == "a"
    assert owner(IPFamily.IPV4, "10.0.1.9") == "b"
    assert owner(IPFamily.IPV4, "10.0.1.0") is None  # .0 avoided in b
    assert owner(IPFamily.IPV4, "10.0.1.10") is None
    assert owner(IPFamily.IPV4, "9.255.255.255") is None
    assert owner(IPFamily.IPV6, "fd00::ffff") == "a"
    assert owner(IPFamily.IPV6, "10.0.0.1") is None
    with pytest.raises(InvalidPools, match="overlaps"):
        validate_pools([*pools, PoolSpec.of("c", ["10.0.1.8/29"])])
    with pytest.raises(InvalidPools, match="duplicate"):
        validate_pools([*pools, PoolSpec.of("a", ["10.9.0.0/24"])])
