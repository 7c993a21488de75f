"""BGP unnumbered's router discovery as a story: what is read from the link, which router becomes the peer,
and what the node answers."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.announcer.bgp.unnumbered import (
    LinkPeer,
    RouterDiscovery,
    RouterDrop,
    RouterMessage,
    read_router_message,
    router_advertisement,
    router_solicitation,
)

ROUTER = ipaddress.IPv6Address("fe80::1")
OTHER = ipaddress.IPv6Address("fe80::2")
FRR_RA = bytes.fromhex("8600 1234 4000 001e 00000000 00000000")  # hop limit 64, lifetime 30 s, no options


def advert(source: ipaddress.IPv6Address) -> RouterMessage:
    return RouterMessage(RouterDiscovery.ADVERTISEMENT, source)


def test_what_the_node_sends() -> None:
    mac = bytes.fromhex("020000000010")
    assert router_solicitation(mac) == bytes.fromhex("85000000 00000000  0101 020000000010")  # with our address
    assert router_advertisement(mac) == bytes.fromhex("86000000 00000000 00000000 00000000  0101 020000000010")
    assert router_advertisement() == bytes.fromhex("86000000 00000000 00000000 00000000")  # lifetime 0


@pytest.mark.parametrize(
    ("data", "source", "hop_limit", "expected"),
    [
        (FRR_RA, ROUTER, 255, RouterMessage(RouterDiscovery.ADVERTISEMENT, ROUTER)),
        (FRR_RA, ROUTER, None, RouterMessage(RouterDiscovery.ADVERTISEMENT, ROUTER)),  # no hop limit reported
        (bytes.fromhex("8500 0000 00000000"), ipaddress.IPv6Address("::"), 255,
         RouterMessage(RouterDiscovery.SOLICITATION, ipaddress.IPv6Address("::"))),
        (FRR_RA, ROUTER, 64, RouterDrop.BAD_HOP_LIMIT),
        (FRR_RA, ipaddress.IPv6Address("2001:db8::1"), 255, RouterDrop.NOT_LINK_LOCAL),
        (FRR_RA[:12], ROUTER, 255, RouterDrop.TOO_SHORT),
        (bytes.fromhex("8500 0000"), ROUTER, 255, RouterDrop.TOO_SHORT),
        (b"\x86", ROUTER, 255, RouterDrop.TOO_SHORT),
        (bytes.fromhex("8601") + FRR_RA[2:], ROUTER, 255, RouterDrop.BAD_CODE),
        (bytes.fromhex("8700 0000") + bytes(20), ROUTER, 255, RouterDrop.NOT_ROUTER_DISCOVERY),
    ],
)  # fmt: skip
def test_reading_what_the_link_says(
    data: bytes, source: ipaddress.IPv6Address, hop_limit: int | None, expected: RouterMessage | RouterDrop
) -> None:
    assert read_router_message(data, source=source, hop_limit=hop_limit) == expected


def test_the_first_router_heard_is_the_peer_until_it_falls_silent() -> None:
    link = LinkPeer(stale_after=30)
    assert link.heard(RouterMessage(RouterDiscovery.SOLICITATION, OTHER), 0) is None  # a solicitation is no router
    assert link.heard(advert(ROUTER), 1) == ROUTER
    assert link.heard(advert(ROUTER), 11) is None  # heard again: nothing new
    assert link.heard(advert(OTHER), 12) is None  # a second router on a point-to-point link does not take over
    assert link.heard(advert(OTHER), 40) is None  # ROUTER was heard at 11: 29 s ago
    assert link.heard(advert(OTHER), 41.5) == OTHER  # ROUTER silent for 30 s: replaced
    assert link.peer == OTHER


def test_a_solicitation_is_answered_with_our_advertisement() -> None:
    link = LinkPeer(mac=bytes.fromhex("020000000010"))
    assert link.answer(RouterMessage(RouterDiscovery.SOLICITATION, ROUTER)) == router_advertisement(link.mac)
    assert link.answer(advert(ROUTER)) is None


@given(data=st.binary(max_size=64), source=st.integers(0, 2**128 - 1), hop_limit=st.none() | st.integers(0, 255))
def test_whatever_arrives_is_read_or_dropped_with_a_reason(data: bytes, source: int, hop_limit: int | None) -> None:
    result = read_router_message(data, source=ipaddress.IPv6Address(source), hop_limit=hop_limit)
    assert isinstance(result, RouterMessage | RouterDrop)
