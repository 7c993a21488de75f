"""A prefix the agent holds (CompactPrefix) stands for its ipaddress network: a route set may mix the two,
and what goes on the wire is the same."""

from __future__ import annotations

import ipaddress

import pytest

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
