"""MetalLB BGPPeer specs, as users write them, turned into speaker configurations or refusals."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from schemas.metallb.bgp import BGPPeerSpec
from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST
from services.announcer.bgp.peering import Refusal, Refused, speaker_config_for
from services.announcer.bgp.session import DynamicAsn
from services.announcer.bgp.speaker import SpeakerConfig

NODE_ID = ipaddress.IPv4Address("192.0.2.10")


def config(password: str | None = None, **spec: Any) -> SpeakerConfig | Refused:
    return speaker_config_for(BGPPeerSpec.model_validate(spec), router_id=NODE_ID, password=password)


def test_the_documented_ebgp_example() -> None:
    result = config(myASN=64500, peerASN=64501, peerAddress="10.0.0.1")
    assert isinstance(result, SpeakerConfig)
    assert (result.session.local_as, result.session.peer_as) == (64500, 64501)
    assert result.peer_address == ipaddress.ip_address("10.0.0.1") and result.peer_port == 179
    assert result.session.router_id == NODE_ID
    assert (result.session.hold_time, result.session.keepalive_time) == (90, None)
    assert result.session.families == {IPV4_UNICAST, IPV6_UNICAST}
    assert result.ttl == 1 and result.password is None and not result.session.graceful_restart


def test_every_supported_field() -> None:
    result = config(
        myASN=64500,
        dynamicASN="internal",
        peerAddress="fd00::1",
        sourceAddress="fd00::10",
        peerPort=1179,
        holdTime="30s",
        keepaliveTime="5s",
        connectTime="10s",
        routerID="10.9.9.9",
        password="s3cret",
        enableGracefulRestart=True,
    )
    assert isinstance(result, SpeakerConfig)
    session = result.session
    assert (session.peer_as, session.dynamic_asn) == (None, DynamicAsn.INTERNAL)
    assert (session.hold_time, session.keepalive_time) == (30, 5)
    assert session.router_id == ipaddress.IPv4Address("10.9.9.9") and session.graceful_restart
    assert result.source_address == ipaddress.ip_address("fd00::10") and result.peer_port == 1179
    assert (result.connect_time, result.password, result.ttl) == (10, "s3cret", None)


def test_keepalive_alone_gives_three_times_the_hold() -> None:
    result = config(myASN=64500, peerASN=64501, peerAddress="10.0.0.1", keepaliveTime="10s")
    assert isinstance(result, SpeakerConfig) and result.session.hold_time == 30


def test_multihop_and_secret_password_and_disable_mp() -> None:
    result = config(
        "from-secret", myASN=64500, peerASN=64501, peerAddress="10.0.0.1", ebgpMultiHop=True, disableMP=True
    )
    assert isinstance(result, SpeakerConfig)
    assert (result.ttl, result.password, result.session.families) == (255, "from-secret", frozenset({IPV4_UNICAST}))


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"peerAddress": "10.0.0.1", "bfdProfile": "fast"}, Refusal.BFD_UNAVAILABLE),
        ({"peerAddress": "10.0.0.1", "password": "x" * 81}, Refusal.PASSWORD_TOO_LONG),
    ],
)
def test_what_the_speaker_cannot_do_is_refused_with_a_reason(spec: dict[str, Any], reason: Refusal) -> None:
    result = config(myASN=64500, peerASN=64501, **spec)
    assert isinstance(result, Refused) and result.reason is reason and result.message


def test_a_vrf_session_is_bound_to_the_vrf_device() -> None:
    result = config(myASN=64500, peerASN=64501, peerAddress="10.0.0.1", vrf="red")
    assert isinstance(result, SpeakerConfig)
    assert (result.device, result.peer_address, result.session.extended_next_hop) == (
        "red",
        ipaddress.ip_address("10.0.0.1"),
        False,
    )


def test_an_interface_session_finds_its_peer_on_the_link_and_offers_extended_next_hop() -> None:
    result = config(myASN=64500, dynamicASN="external", interface="eth1", vrf="red")
    assert isinstance(result, SpeakerConfig)
    assert result.device == "eth1"  # the interface (in its VRF) scopes the peer's link-local address
    assert result.peer_address == ipaddress.ip_address("::")  # found on the link before the session dials
    assert result.session.extended_next_hop and result.session.families == {IPV4_UNICAST, IPV6_UNICAST}
    assert result.ttl == 1
