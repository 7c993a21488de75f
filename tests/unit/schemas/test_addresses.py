"""Address entries: parsing, exact sizes and capacities, and round trips (tables plus hypothesis,
against brute force). The allocator takes its ranges from this one parser."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.metallb import AddressRange, IPFamily, parse_address_range
from schemas.metallb.addresses import allocatable_count, buggy_count, is_buggy


@pytest.mark.parametrize(
    ("text", "family", "size", "canonical"),
    [
        ("192.168.10.0/24", IPFamily.IPV4, 256, "192.168.10.0/24"),
        ("42.176.25.64/32", IPFamily.IPV4, 1, "42.176.25.64/32"),
        ("0.0.0.0/0", IPFamily.IPV4, 1 << 32, "0.0.0.0/0"),
        ("192.168.9.1-192.168.9.5", IPFamily.IPV4, 5, "192.168.9.1-192.168.9.5"),
        ("192.168.9.0 - 192.168.9.255", IPFamily.IPV4, 256, "192.168.9.0/24"),
        ("10.0.0.7-10.0.0.7", IPFamily.IPV4, 1, "10.0.0.7/32"),
        ("fc00:f853:0ccd:e799::/124", IPFamily.IPV6, 16, "fc00:f853:ccd:e799::/124"),
        ("2001:db8::/64", IPFamily.IPV6, 1 << 64, "2001:db8::/64"),
        ("2001:db8::/32", IPFamily.IPV6, 1 << 96, "2001:db8::/32"),
        ("::/0", IPFamily.IPV6, 1 << 128, "::/0"),
        ("fc00::1-fc00::ff", IPFamily.IPV6, 255, "fc00::1-fc00::ff"),
        ("10.0.0.250 - 10.0.1.3", IPFamily.IPV4, 10, "10.0.0.250-10.0.1.3"),
        ("fd00::/64", IPFamily.IPV6, 1 << 64, "fd00::/64"),
        ("fd00::1-fd00::9", IPFamily.IPV6, 9, "fd00::1-fd00::9"),
    ],
)
def test_entry_parses_exactly(text: str, family: IPFamily, size: int, canonical: str) -> None:
    parsed = parse_address_range(text)
    assert parsed.family is family
    assert parsed.size == size
    assert str(parsed) == canonical
    assert parse_address_range(canonical) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("10.0.0.0/255.255.255.0", "invalid prefix length"),
        ("10.0.0.0/", "invalid prefix length"),
        ("10.0.0.0/33", "invalid prefix length"),
        ("fe80::1%eth0/128", "invalid IP"),
        ("10.0.0.9-10.0.0.1", "is after the end IP"),
        ("::1-10.0.0.1", "different families"),
        ("10.0.0.1-fd00::1", "different families"),
        ("10.0.0.1-", 'invalid end IP ""'),
        ("garbage", 'invalid CIDR "garbage"'),
        ("nonsense", 'invalid CIDR "nonsense"'),
    ],
)
def test_entry_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_address_range(text)


def test_range_helpers() -> None:
    r = parse_address_range("192.168.9.1-192.168.9.5")
    assert ipaddress.ip_address("192.168.9.3") in r
    assert ipaddress.ip_address("192.168.9.6") not in r
    assert ipaddress.ip_address("::1") not in r
    assert [str(a) for a in r] == [f"192.168.9.{i}" for i in range(1, 6)]
    assert [str(n) for n in r.networks()] == ["192.168.9.1/32", "192.168.9.2/31", "192.168.9.4/31"]
    assert r.shortest_prefix() == 31
    assert r.overlaps(parse_address_range("192.168.9.0/30"))
    assert not r.overlaps(parse_address_range("192.168.9.6/31"))
    with pytest.raises(ValueError):
        AddressRange(IPFamily.IPV4, 5, 4)
    with pytest.raises(ValueError):
        AddressRange(IPFamily.IPV4, 0, 1 << 32)


@st.composite
def ranges(draw: st.DrawFn) -> AddressRange:
    family = draw(st.sampled_from(list(IPFamily)))
    top = (1 << family.bits) - 1
    first = draw(st.integers(min_value=0, max_value=top))
    last = draw(st.integers(min_value=first, max_value=top))
    return AddressRange(family, first, last)


@st.composite
def networks(draw: st.DrawFn) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    bits = draw(st.sampled_from([32, 128]))
    length = draw(st.integers(min_value=0, max_value=bits))
    value = draw(st.integers(min_value=0, max_value=(1 << bits) - 1))
    masked = value >> (bits - length) << (bits - length) if length else 0
    if bits == 32:
        return ipaddress.IPv4Network((masked, length))
    return ipaddress.IPv6Network((masked, length))


@given(ranges())
def test_range_format_parse_round_trip(address_range: AddressRange) -> None:
    text = str(address_range)
    parsed = parse_address_range(text)
    assert parsed == address_range
    assert parsed.size == address_range.last - address_range.first + 1


@given(ranges())
def test_range_written_as_start_end_parses_to_itself(address_range: AddressRange) -> None:
    parsed = parse_address_range(f"{address_range.start}-{address_range.end}")
    assert parsed == address_range
    assert sum(n.num_addresses for n in parsed.networks()) == parsed.size


@given(networks())
def test_cidr_size_is_exact(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    parsed = parse_address_range(str(network))
    assert parsed.size == network.num_addresses
    assert parsed.start == network.network_address
    assert parsed.end == network.broadcast_address
    assert str(parsed) == str(network)


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.0.0.5/24", "10.0.0.0/24"),
        ("10.0.0.7/24", "10.0.0.0/24"),
        ("fc00::1/64", "fc00::/64"),
        ("198.51.100.10/24", "198.51.100.0/24"),
    ],
)
def test_host_bits_are_masked_like_metallb_does(text: str, network: str) -> None:
    assert str(parse_address_range(text)) == network


def test_capacity_is_exact_for_huge_ranges() -> None:
    assert allocatable_count(parse_address_range("fd00::/64"), avoid_buggy_ips=True) == 2**64
    assert parse_address_range("::/0").size == 2**128
    assert allocatable_count(parse_address_range("10.0.0.0/8"), avoid_buggy_ips=True) == 2**24 - 2 * 2**16


@settings(max_examples=300)
@given(st.integers(0, 2**32 - 1), st.integers(0, 1500))
def test_buggy_count_matches_brute_force(first: int, length: int) -> None:
    last = min(first + length, 2**32 - 1)
    r = AddressRange(IPFamily.IPV4, first, last)
    assert buggy_count(r) == sum(1 for v in range(first, last + 1) if is_buggy(IPFamily.IPV4, v))
