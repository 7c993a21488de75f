"""RFC 8950: IPv4 prefixes with an IPv6 next hop. The capability's bytes, what two OPENs agree on, and a
session on a link-local connection (BGP unnumbered) announcing IPv4 and IPv6 prefixes to a router core."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from services.announcer.bgp.capabilities import (
    IPV4_OVER_IPV6,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddressFamily,
    ExtendedNextHop,
    Negotiated,
    NextHopEncoding,
    decode_capabilities,
    encode_capability,
)
from services.announcer.bgp.notification import ErrorCode, Notification
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import Session, SessionConfig
from tests.unit.announcer.bgp.test_session import A_CONFIG, B_CONFIG, Pair, attrs_dict, net

NODE_LL = ipaddress.IPv6Address("fe80::10")
ROUTER_LL = ipaddress.IPv6Address("fe80::1")
GLOBAL = ipaddress.IPv6Address("2001:db8::10")
V4, V6 = net("198.51.100.5/32"), net("2001:db8:1::5/128")

UNNUMBERED = replace(A_CONFIG, next_hop_v6=None, extended_next_hop=True)  # what an interface peer runs
ROUTER = replace(B_CONFIG, extended_next_hop=True)  # FRR's `neighbor eth0 interface` offers it too


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


def on_the_link(a: SessionConfig, b: SessionConfig) -> Pair:
    """Both cores Established over a connection between two link-local addresses."""
    pair = Pair(Session(a), Session(b))
    pair.a.start(pair.now)
    pair.b.start(pair.now, passive=True)
    pair.a.connection_made(pair.now, local_address=NODE_LL)
    pair.b.connection_made(pair.now, local_address=ROUTER_LL)
    pair.pump()
    return pair


def test_the_capability_is_code_5_with_afi_safi_and_next_hop_afi() -> None:
    wire = encode_capability(ExtendedNextHop((IPV4_OVER_IPV6,)))
    assert wire == h("05 06  0001 0001 0002")  # IPv4 unicast may carry an IPv6 next hop
    assert decode_capabilities(wire) == [ExtendedNextHop((NextHopEncoding(IPV4_UNICAST, 2),))]
    assert ExtendedNextHop((IPV4_OVER_IPV6,)).to_dict() == {"extended_next_hop": ["ipv4/unicast via ipv6"]}


@pytest.mark.parametrize(
    ("value", "why"),
    [("05 00", "empty"), ("05 04 0001 0001", "not a whole triple"), ("05 06 0001 0100 0002", "SAFI above 255")],
)
def test_a_malformed_capability_is_an_open_error(value: str, why: str) -> None:
    with pytest.raises(Notification) as error:
        decode_capabilities(h(value))
    assert error.value.code == ErrorCode.OPEN_MESSAGE, why


def test_negotiated_only_when_both_ends_offer_it() -> None:
    offered = [ExtendedNextHop((IPV4_OVER_IPV6, NextHopEncoding(AddressFamily(1, 128), 2)))]
    assert Negotiated.from_capabilities(offered, offered).extended_next_hops == {
        IPV4_OVER_IPV6,
        NextHopEncoding(AddressFamily(1, 128), 2),
    }
    assert Negotiated.from_capabilities(offered, []).extended_next_hops == frozenset()
    assert Negotiated.from_capabilities([ExtendedNextHop((IPV4_OVER_IPV6,))], offered).extended_next_hops == {
        IPV4_OVER_IPV6
    }


def test_offered_only_when_configured_and_ipv4_is_carried() -> None:
    assert ExtendedNextHop((IPV4_OVER_IPV6,)) in UNNUMBERED.capabilities()
    assert not any(isinstance(c, ExtendedNextHop) for c in A_CONFIG.capabilities())
    v6_only = replace(UNNUMBERED, families=frozenset({IPV6_UNICAST}))
    assert not any(isinstance(c, ExtendedNextHop) for c in v6_only.capabilities())


def test_unnumbered_ipv4_prefix_travels_in_mp_reach_with_the_link_local_next_hop() -> None:
    pair = on_the_link(UNNUMBERED, ROUTER)
    pair.a.set_advertisements({V4: Route(), V6: Route()}, pair.now)
    pair.pump()
    table = pair.received_by_b()
    v4 = attrs_dict(table[V4])
    assert "NEXT_HOP" not in v4
    assert v4["MP_REACH_NLRI"] == {"family": "ipv4/unicast", "next_hops": ["fe80::10"], "nlri": ["198.51.100.5/32"]}
    assert attrs_dict(table[V6])["MP_REACH_NLRI"]["next_hops"] == ["fe80::10"]
    assert pair.a.unroutable == []


def test_a_global_next_hop_goes_with_the_link_local_one_in_32_octets() -> None:
    pair = on_the_link(replace(UNNUMBERED, next_hop_v6=GLOBAL), ROUTER)
    pair.a.set_advertisements({V4: Route(), V6: Route()}, pair.now)
    pair.pump()
    table = pair.received_by_b()
    for prefix in (V4, V6):
        assert attrs_dict(table[prefix])["MP_REACH_NLRI"]["next_hops"] == ["2001:db8::10", "fe80::10"]


def test_the_update_on_the_wire() -> None:
    pair = on_the_link(UNNUMBERED, ROUTER)
    pair.wire_a_to_b.clear()
    pair.a.set_advertisements({V4: Route()}, pair.now)
    pair.pump()
    assert b"".join(pair.wire_a_to_b) == h(
        "ffffffffffffffffffffffffffffffff 0041 02  0000  002a"
        "  40 01 01 00"  # ORIGIN IGP
        "  40 02 06 02 01 0000fc00"  # AS_PATH 64512
        "  80 0e 1a  0001 01  10 fe800000000000000000000000000010  00  20 c6336405"  # MP_REACH: AFI 1, 16-octet NH
    )


def test_without_the_capability_ipv4_prefixes_cannot_go_over_an_ipv6_only_link() -> None:
    pair = on_the_link(UNNUMBERED, B_CONFIG)  # a router that does not offer RFC 8950
    pair.a.set_advertisements({V4: Route(), V6: Route()}, pair.now)
    pair.pump()
    assert set(pair.received_by_b()) == {V6}
    assert pair.a.unroutable == [V4]


def test_a_numbered_session_keeps_its_ipv4_next_hop_and_16_octet_ipv6_one() -> None:
    pair = Pair.established(replace(A_CONFIG, extended_next_hop=True), ROUTER)
    pair.a.set_advertisements({V4: Route(), V6: Route()}, pair.now)
    pair.pump()
    table = pair.received_by_b()
    assert attrs_dict(table[V4])["NEXT_HOP"] == "192.0.2.10"
    assert attrs_dict(table[V6])["MP_REACH_NLRI"]["next_hops"] == ["2001:db8::10"]
