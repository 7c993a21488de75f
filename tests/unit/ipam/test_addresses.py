"""Range arithmetic and the free-address index, against brute force."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ipam.core import AddressRange, Family, InvalidPools, PoolSpec
from services.ipam.core.addresses import FreeIndex, is_buggy
from services.ipam.core.pools import RangeTable, validate_pools

PARSED = [
    ("10.0.0.0/24", Family.V4, "10.0.0.0", "10.0.0.255"),
    ("10.0.0.7/24", Family.V4, "10.0.0.0", "10.0.0.255"),  # host bits masked, as Go's ParseCIDR does
    ("10.0.0.5/32", Family.V4, "10.0.0.5", "10.0.0.5"),
    ("10.0.0.250 - 10.0.1.3", Family.V4, "10.0.0.250", "10.0.1.3"),
    ("fd00::/64", Family.V6, "fd00::", "fd00::ffff:ffff:ffff:ffff"),
    ("fd00::1-fd00::9", Family.V6, "fd00::1", "fd00::9"),
]


@pytest.mark.parametrize(("text", "family", "first", "last"), PARSED)
def test_parse(text: str, family: Family, first: str, last: str) -> None:
    r = AddressRange.parse(text)
    assert (r.family, str(r.first_ip), str(r.last_ip)) == (family, first, last)


@pytest.mark.parametrize("text", ["10.0.0.9-10.0.0.1", "10.0.0.1-fd00::1", "10.0.0.0/33", "nonsense", "10.0.0.1-"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        AddressRange.parse(text)


def test_capacity_is_exact_for_huge_ranges() -> None:
    assert AddressRange.parse("fd00::/64").capacity(avoid_buggy_ips=True) == 2**64
    assert AddressRange.parse("::/0").size == 2**128
    assert AddressRange.parse("10.0.0.0/8").capacity(avoid_buggy_ips=True) == 2**24 - 2 * 2**16


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(0, 1500))
def test_buggy_count_matches_brute_force(first: int, length: int) -> None:
    last = min(first + length, 2**32 - 1)
    r = AddressRange(Family.V4, first, last)
    assert r.buggy_count() == sum(1 for v in range(first, last + 1) if is_buggy(Family.V4, v))


@settings(max_examples=300)
@given(
    st.integers(0, 600),
    st.integers(1, 40),
    st.booleans(),
    st.lists(st.tuples(st.sampled_from(["take", "free", "lowest"]), st.integers(0, 45)), max_size=80),
)
def test_free_index_matches_brute_force(start: int, size: int, buggy: bool, ops: list[tuple[str, int]]) -> None:
    span = AddressRange(Family.V4, start, start + size - 1)
    index = FreeIndex(span, buggy)
    usable = [v for v in range(span.first, span.last + 1) if not (buggy and is_buggy(Family.V4, v))]
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

    def owner(family: Family, text: str) -> str | None:
        found = table.lookup(family, int(ipaddress.ip_address(text)))
        return found[0].name if found else None

    assert owner(Family.V4, "10.0.0.255") == "a"
    assert owner(Family.V4, "10.0.1.9") == "b"
    assert owner(Family.V4, "10.0.1.0") is None  # .0 avoided in b
    assert owner(Family.V4, "10.0.1.10") is None
    assert owner(Family.V4, "9.255.255.255") is None
    assert owner(Family.V6, "fd00::ffff") == "a"
    assert owner(Family.V6, "10.0.0.1") is None
    with pytest.raises(InvalidPools, match="overlaps"):
        validate_pools([*pools, PoolSpec.of("c", ["10.0.1.8/29"])])
    with pytest.raises(InvalidPools, match="duplicate"):
        validate_pools([*pools, PoolSpec.of("a", ["10.9.0.0/24"])])
