"""A prefix the agent holds (CompactPrefix) stands for its ipaddress network: a route set may mix the two,
and what goes on the wire is the same."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.announcer.bgp.nlri import Prefix, encode_prefix, hashed_prefix
from services.announcer.bgp.rib import prefix_key

TEXTS = ["198.51.100.7/32", "198.51.100.0/24", "0.0.0.0/0", "2001:db8::7/128", "2001:db8::/64", "::/0"]


@pytest.mark.parametrize("text", TEXTS)
def test_a_compact_prefix_is_its_network(text: str) -> None:
    compact, network = hashed_prefix(text), ipaddress.ip_network(text)
    assert compact == network and network == compact and hash(compact) == hash(network)
    by_network: dict[Prefix, str] = {network: "route"}
    by_compact: dict[Prefix, str] = {compact: "route"}
    assert by_network[compact] == "route" and by_compact[network] == "route"
    assert str(compact) == str(network) and encode_prefix(compact) == encode_prefix(network)
    assert (compact.version, compact.prefixlen, compact.max_prefixlen, compact.network_address) == (
        network.version, network.prefixlen, network.max_prefixlen, network.network_address)  # fmt: skip
    assert prefix_key(compact) == prefix_key(network)


def test_compact_prefixes_differ_and_order_as_their_networks() -> None:
    compact = [hashed_prefix(text) for text in TEXTS]
    assert len(set(compact)) == len(TEXTS)
    assert hashed_prefix("198.51.100.6/32") != hashed_prefix("198.51.100.6/31")
    assert sorted(compact, key=prefix_key) == sorted(compact)  # IPv4 first, then by address and length
    networks = sorted((ipaddress.ip_network(t) for t in TEXTS), key=prefix_key)
    assert [str(p) for p in sorted(compact)] == [str(n) for n in networks]


def test_a_prefix_ipaddress_refuses_is_refused() -> None:
    with pytest.raises(ValueError):
        hashed_prefix("198.51.100.7/24")  # host bits set
    with pytest.raises(ValueError):
        hashed_prefix("198.51.100.300/32")


ODD_TEXTS = ["198.51.100.7/032", "198.51.100.7/+32", "198.51.100.7/ 32", "198.51.100.7/33", "198.51.100.7/",
             "198.51.100.7", "198.051.100.7/32", "2001:db8::7/129", "::ffff:198.51.100.7/128",
             "1::2::3/128", "2001:db8::/0", "0.0.0.0/00", "198.51.100.7/٣٢", "/32", "0x1.2.3.4/32", "1.2.3.4/1000"]


@pytest.mark.parametrize("text", TEXTS + ODD_TEXTS)
def test_a_prefix_is_read_as_ipaddress_reads_it(text: str) -> None:
    """The usual form is read by the C library, anything else by ``ipaddress``: the same prefixes either way,
    refused alike."""
    try:
        network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = ipaddress.ip_network(text)
    except ValueError:
        network = None
    if network is None:
        with pytest.raises(ValueError):
            hashed_prefix(text)
    else:
        compact = hashed_prefix(text)
        assert compact == network and hash(compact) == hash(network) and str(compact) == str(network)


@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**128 - 1), st.integers(0, 128))
def test_any_prefix_is_read_as_ipaddress_reads_it(v4: int, v4_length: int, v6: int, v6_length: int) -> None:
    for address, length in ((ipaddress.IPv4Address(v4), v4_length), (ipaddress.IPv6Address(v6), v6_length)):
        text = f"{address}/{length}"
        try:
            network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = ipaddress.ip_network(text)
        except ValueError:  # host bits set
            network = None
        if network is None:
            with pytest.raises(ValueError):
                hashed_prefix(text)
        else:
            assert hashed_prefix(text) == network and str(hashed_prefix(text)) == text
