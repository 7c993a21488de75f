"""A BGPPeer's BFDProfile, as MetalLB users write it, turned into the BFD session beside the BGP session, or a
refusal with its reason: single hop or multihop (``ebgpMultiHop``), echo mode where it can run."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.metallb import parse_config_object
from schemas.metallb.advertisements import ipv6_pool_advertised_to
from schemas.metallb.bfd import BFDProfileSpec
from schemas.metallb.bgp import BGPPeerSpec
from schemas.metallb.rules import NodeFacts
from services.announcer.agents.bgp_plan import Configuration
from services.announcer.agents.bgp_sessions import session_spec_for
from services.announcer.bgp.bfd import BfdConfig
from services.announcer.bgp.peer_session import SessionSpec
from services.announcer.bgp.peering import Refusal, Refused, bfd_config_for
from tests.bgp_world import bgp_advertisement, bgp_peer, config_object
from tests.builders import pool

PEERS = (("router", "10.0.0.1"), ("other", "10.0.0.2"))
EBGP = {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1"}


def ipv6_advertised(peer_name: str, *observed: Any) -> tuple[str, str] | None:
    configuration = Configuration.of(parse_config_object(o.raw) for o in observed)
    return ipv6_pool_advertised_to(peer_name, configuration.pools.values(), configuration.advertisements)


def peer(**spec: Any) -> BGPPeerSpec:
    return BGPPeerSpec.model_validate({**EBGP, **spec})


def profile(**spec: Any) -> BFDProfileSpec:
    return BFDProfileSpec.model_validate(spec)


def test_a_single_hop_profile() -> None:
    timers = profile(receiveInterval=100, transmitInterval=200, passiveMode=True)
    assert bfd_config_for(timers, peer=peer()) == BfdConfig(
        desired_min_tx=0.2, required_min_rx=0.1, detect_mult=3, passive=True
    )


def test_an_ebgp_multihop_peer_gets_multihop_bfd_with_the_profile_s_minimum_ttl() -> None:
    config = bfd_config_for(profile(minimumTtl=250), peer=peer(ebgpMultiHop=True))
    assert isinstance(config, BfdConfig) and config.multihop and config.minimum_ttl == 250 and config.port == 4784
    default = bfd_config_for(profile(), peer=peer(ebgpMultiHop=True))
    assert isinstance(default, BfdConfig) and default.minimum_ttl == 254  # MetalLB's default


def test_echo_mode_runs_the_echo_function_every_echo_interval() -> None:
    config = bfd_config_for(profile(echoMode=True, echoInterval=30), peer=peer())
    assert isinstance(config, BfdConfig) and config.echo_interval == pytest.approx(0.03)
    unset = bfd_config_for(profile(echoInterval=30), peer=peer())
    assert isinstance(unset, BfdConfig) and unset.echo_interval is None


@pytest.mark.parametrize(
    ("spec", "ipv6_advertised", "reason", "words"),
    [
        ({"ebgpMultiHop": True}, None, Refusal.BFD_ECHO_MULTIHOP, "single hop only"),
        ({"peerAddress": "fd00::1"}, None, Refusal.BFD_ECHO_IPV6, "IPv6 session"),
        ({}, "pool 'v6' by BGPAdvertisement 'ads'", Refusal.BFD_ECHO_IPV6, "pool 'v6' by BGPAdvertisement 'ads'"),
    ],
)
def test_echo_mode_is_refused_where_it_cannot_run(
    spec: dict[str, Any], ipv6_advertised: str | None, reason: Refusal, words: str
) -> None:
    refused = bfd_config_for(profile(echoMode=True), peer=peer(**spec), ipv6_advertised=ipv6_advertised)
    assert isinstance(refused, Refused) and refused.reason is reason and words in refused.message
    assert isinstance(bfd_config_for(profile(), peer=peer(**spec), ipv6_advertised=ipv6_advertised), BfdConfig)


def test_ipv6_advertised_to_a_peer_as_metallb_counts_it() -> None:
    """MetalLB's check: a pool with an IPv6 range, an advertisement selecting it and naming the peer (or no
    peer: all of them), whatever its node selectors."""
    dual, v4 = pool("dual", "198.51.100.0/24", "fd00:1::/120"), pool("v4", "203.0.113.0/24")
    router, other = (bgp_peer(name, address, my_asn=64500, peer_asn=64501) for name, address in PEERS)
    to_router = bgp_advertisement("to-router", ipAddressPools=["dual"], peers=["router"])
    only_v4 = bgp_advertisement("v4-to-all", ipAddressPools=["v4"])
    everywhere = bgp_advertisement("all", nodeSelectors=[{"matchLabels": {"rack": "a"}}])
    named = (dual, v4, router, other, to_router, only_v4)
    assert ipv6_advertised("router", *named) == ("dual", "to-router")
    assert ipv6_advertised("other", *named) is None
    assert ipv6_advertised("other", dual, v4, other, everywhere) == ("dual", "all")


def test_the_session_of_an_echo_peer_sent_ipv6_prefixes_is_refused_with_the_pool_named() -> None:
    observed = (
        pool("dual", "198.51.100.0/24", "fd00:1::/120"),
        bgp_peer("router", "10.0.0.1", my_asn=64500, peer_asn=64501, bfdProfile="echo"),
        bgp_advertisement("ads"),
        config_object("BFDProfile", "echo", {"echoMode": True}),
    )
    configuration = Configuration.of(parse_config_object(o.raw) for o in observed)
    node = NodeFacts(name="node-a", addresses=("10.0.0.11",))
    refused = session_spec_for(configuration.peers[0], node=node, password=None, configuration=configuration)
    assert isinstance(refused, Refused) and refused.reason is Refusal.BFD_ECHO_IPV6
    assert "pool 'dual' by BGPAdvertisement 'ads'" in refused.message
    v4_only = Configuration.of(parse_config_object(o.raw) for o in (pool("v4", "198.51.100.0/24"), *observed[1:]))
    spec = session_spec_for(v4_only.peers[0], node=node, password=None, configuration=v4_only)
    assert isinstance(spec, SessionSpec) and spec.bfd is not None and spec.bfd.echo_interval == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("where", "device"),
    [
        ({"peerAddress": "10.0.0.1", "vrf": "red"}, "red"),
        ({"interface": "eth1"}, "eth1"),
        ({"interface": "eth1", "vrf": "red"}, "eth1"),
    ],
)
def test_bfd_runs_beside_a_vrf_or_unnumbered_session_through_its_device(where: dict[str, Any], device: str) -> None:
    """As MetalLB's FRR mode accepts it: the BFD session goes where the BGP session goes (the device the
    speaker is bound to), single hop."""
    observed = (
        config_object("BGPPeer", "router", {"myASN": 64500, "peerASN": 64501, "bfdProfile": "fast", **where}),
        config_object("BFDProfile", "fast", {"receiveInterval": 100, "transmitInterval": 100}),
    )
    configuration = Configuration.of(parse_config_object(o.raw) for o in observed)
    node = NodeFacts(name="node-a", addresses=("10.0.0.11",))
    spec = session_spec_for(configuration.peers[0], node=node, password=None, configuration=configuration)
    assert isinstance(spec, SessionSpec) and spec.bfd is not None and not spec.bfd.multihop
    assert spec.speaker.device == device and spec.bfd.desired_min_tx == pytest.approx(0.1)


def test_echo_mode_beside_an_unnumbered_session_is_refused_as_ipv6() -> None:
    """An unnumbered session runs between IPv6 link-local addresses: no IPv4 to loop echoes over."""
    refused = bfd_config_for(profile(echoMode=True), peer=BGPPeerSpec.model_validate(
        {"myASN": 64500, "peerASN": 64501, "interface": "eth1"}))  # fmt: skip
    assert isinstance(refused, Refused) and refused.reason is Refusal.BFD_ECHO_IPV6
