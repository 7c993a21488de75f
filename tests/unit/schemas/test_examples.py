"""MetalLB's documented examples parse unchanged, with MetalLB's defaults filled in."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import yaml

from schemas.metallb import (
    BFDProfile,
    BGPAdvertisement,
    BGPPeer,
    Community,
    IPAddressPool,
    IPFamily,
    L2Advertisement,
    LargeCommunity,
    ServiceAllocation,
    StandardCommunity,
    parse_config_object,
)
from tests.unit.schemas import metallb_docs as docs


def load(text: str) -> dict[str, Any]:
    raw = yaml.safe_load(text)
    assert isinstance(raw, dict)
    return raw


@pytest.mark.parametrize("name", sorted(docs.ALL_ACCEPTED))
def test_documented_example_is_accepted(name: str) -> None:
    raw = load(docs.ALL_ACCEPTED[name])
    parsed = parse_config_object(raw)
    assert parsed.kind == raw["kind"]
    assert parsed.name == raw["metadata"]["name"]
    assert parsed.namespace == raw["metadata"].get("namespace")


@pytest.mark.parametrize("name", sorted(docs.ALL_ACCEPTED))
def test_documented_example_round_trips_through_its_wire_form(name: str) -> None:
    parsed = parse_config_object(load(docs.ALL_ACCEPTED[name]))
    again = parse_config_object(parsed.model_dump(mode="json"))
    assert again == parsed


def test_pool_defaults_and_ranges() -> None:
    pool = parse_config_object(load(docs.FIRST_POOL_MIXED))
    assert isinstance(pool, IPAddressPool)
    assert pool.spec.auto_assign is True
    assert pool.spec.avoid_buggy_ips is False
    assert pool.spec.service_allocation is None
    ranges = pool.ranges()
    assert [(r.family, r.size) for r in ranges] == [
        (IPFamily.IPV4, 256),
        (IPFamily.IPV4, 5),
        (IPFamily.IPV6, 16),
    ]
    assert ranges[1].start == ipaddress.ip_address("192.168.9.1")
    assert ranges[1].end == ipaddress.ip_address("192.168.9.5")
    assert ranges[2].first == int(ipaddress.ip_address("fc00:f853:ccd:e799::"))
    assert pool.size == 256 + 5 + 16


def test_expensive_pool_is_not_auto_assigned() -> None:
    pool = parse_config_object(load(docs.EXPENSIVE_POOL))
    assert isinstance(pool, IPAddressPool)
    assert pool.spec.auto_assign is False


def test_service_allocation() -> None:
    pool = parse_config_object(load(docs.SERVICE_ALLOCATION_POOL))
    assert isinstance(pool, IPAddressPool)
    allocation = pool.spec.service_allocation
    assert allocation is not None
    assert pool.spec.avoid_buggy_ips is True
    assert allocation.priority == 50
    assert allocation.namespaces == ("namespace-a", "namespace-b")
    assert allocation.allows_namespace("namespace-a", {})
    assert allocation.allows_namespace("other", {"foo": "bar"})
    assert not allocation.allows_namespace("other", {"foo": "baz"})
    assert allocation.allows_service_labels({"app": "bar"})
    assert not allocation.allows_service_labels({"app": "foo"})


def test_l2_advertisement_without_spec_selects_everything() -> None:
    ad = parse_config_object(load(docs.L2_ALL_POOLS))
    assert isinstance(ad, L2Advertisement)
    assert ad.spec.selects_all_pools
    assert ad.spec.selects_pool("anything", {})
    assert ad.spec.selects_node({"kubernetes.io/hostname": "NodeZ"})
    assert ad.spec.interfaces == ()


def test_l2_advertisement_node_selectors_and_interfaces() -> None:
    ad = parse_config_object(load(docs.L2_NODE_AND_INTERFACE))
    assert isinstance(ad, L2Advertisement)
    assert ad.spec.interfaces == ("eth3",)
    assert ad.spec.selects_pool("fourth-pool", {})
    assert not ad.spec.selects_pool("first-pool", {})
    assert ad.spec.selects_node({"kubernetes.io/hostname": "NodeA"})
    assert not ad.spec.selects_node({"kubernetes.io/hostname": "NodeB"})


def test_bgp_peer_defaults() -> None:
    peer = parse_config_object(load(docs.BGP_PEER_SAMPLE))
    assert isinstance(peer, BGPPeer)
    spec = peer.spec
    assert (spec.my_asn, spec.peer_asn, spec.peer_address) == (64500, 64501, "10.0.0.1")
    assert spec.peer_port == 179
    assert spec.timers() is None
    assert spec.dynamic_asn is None
    assert not spec.is_ibgp
    assert spec.password_secret is None


def test_bgp_peer_node_selectors() -> None:
    peer = parse_config_object(load(docs.BGP_PEER_NODE_SELECTORS))
    assert isinstance(peer, BGPPeer)
    assert peer.spec.peer_port == 180
    assert peer.spec.is_ibgp
    assert peer.spec.selects_node({"rack": "frontend", "network-speed": "fast"})
    assert not peer.spec.selects_node({"rack": "frontend", "network-speed": "slow"})
    assert peer.spec.selects_node({"kubernetes.io/hostname": "hostB"})
    assert not peer.spec.selects_node({"kubernetes.io/hostname": "hostC"})


def test_bfd_profile_keeps_given_values_and_fills_frr_defaults() -> None:
    profile = parse_config_object(load(docs.BFD_PROFILE))
    assert isinstance(profile, BFDProfile)
    spec = profile.spec
    assert (spec.receive_interval, spec.transmit_interval) == (380, 270)
    assert (spec.detect_multiplier, spec.echo_interval, spec.minimum_ttl) == (3, 50, 254)
    assert (spec.echo_mode, spec.passive_mode) == (False, False)


def test_bgp_advertisement_defaults() -> None:
    ad = parse_config_object(load(docs.BGP_ADV_ALL_POOLS))
    assert isinstance(ad, BGPAdvertisement)
    assert (ad.spec.aggregation_length, ad.spec.aggregation_length_v6, ad.spec.local_pref) == (32, 128, 0)
    assert ad.spec.communities == ()
    assert ad.spec.selects_peer("any")


def test_bgp_advertisement_local() -> None:
    ad = parse_config_object(load(docs.BGP_ADV_LOCAL))
    assert isinstance(ad, BGPAdvertisement)
    assert ad.spec.local_pref == 100
    assert ad.spec.communities == ("65535:65282",)
    assert ad.namespace is None


def test_bgp_advertisement_peers() -> None:
    ad = parse_config_object(load(docs.BGP_ADV_PEERS))
    assert isinstance(ad, BGPAdvertisement)
    assert ad.spec.selects_peer("PeerA")
    assert not ad.spec.selects_peer("PeerC")


def test_community_aliases() -> None:
    community = parse_config_object(load(docs.COMMUNITY_ALIASES))
    assert isinstance(community, Community)
    assert community.aliases() == {
        "vpn-only": StandardCommunity(1234, 1),
        "NO_ADVERTISE": StandardCommunity(65535, 65282),
    }
    assert StandardCommunity(65535, 65282).as_int == 0xFFFFFF02
    assert str(LargeCommunity(1, 2, 3)) == "large:1:2:3"


def test_documented_pool_with_host_bits_means_the_whole_network() -> None:
    # MetalLB masks the host bits away, and its docs rely on it: existing YAML must keep working.
    pool = parse_config_object(load(docs.ADVANCED_BGP_POOL_WITH_HOST_BITS))
    assert isinstance(pool, IPAddressPool)
    assert [str(r) for r in pool.ranges()] == ["198.51.100.0/24"]
    assert pool.size == 256


def test_unknown_fields_are_ignored_and_metadata_kept() -> None:
    raw = load(docs.CHEAP_POOL)
    raw["metadata"].update(
        uid="6f0b", resourceVersion="812", generation=3, labels={"tier": "cheap"}, annotations={"a": "b"}
    )
    raw["spec"]["futureField"] = {"x": 1}
    raw["status"] = {}
    pool = parse_config_object(raw)
    assert pool.metadata.uid == "6f0b"
    assert pool.metadata.resource_version == "812"
    assert pool.metadata.generation == 3
    assert pool.labels == {"tier": "cheap"}


def test_models_are_frozen() -> None:
    pool = parse_config_object(load(docs.CHEAP_POOL))
    assert isinstance(pool, IPAddressPool)
    with pytest.raises(ValueError, match="frozen"):
        pool.spec.auto_assign = False  # type: ignore[misc]


def test_avoid_buggy_ips_and_priority_order() -> None:
    pool = parse_config_object(load(docs.SERVICE_ALLOCATION_POOL))
    assert isinstance(pool, IPAddressPool)
    assert pool.avoids(ipaddress.ip_address("192.168.20.0"))
    assert pool.avoids(ipaddress.ip_address("192.168.20.255"))
    assert not pool.avoids(ipaddress.ip_address("192.168.20.1"))
    cheap = parse_config_object(load(docs.CHEAP_POOL))
    assert isinstance(cheap, IPAddressPool)
    assert not cheap.avoids(ipaddress.ip_address("192.168.10.0"))
    ranks = {p: ServiceAllocation(priority=p).rank for p in (0, 1, 50)}
    assert sorted(ranks, key=ranks.__getitem__) == [1, 50, 0]


def test_v1beta1_bgp_peer_is_read_into_the_v1beta2_model() -> None:
    raw = load(docs.BGP_PEER_SAMPLE)
    raw["apiVersion"] = "metallb.io/v1beta1"
    raw["spec"].update(peerPort=0, holdTime="90s", passwordSecret={"name": "ignored-in-v1beta1"})
    peer = parse_config_object(raw)
    assert isinstance(peer, BGPPeer)
    assert peer.api_version == "metallb.io/v1beta1"
    assert peer.spec.peer_port == 179  # 0 meant "default" in v1beta1
    assert peer.spec.password_secret is None  # v1beta1 has no passwordSecret
    timers = peer.spec.timers()
    assert timers is not None
    assert (timers.hold_time, timers.keepalive_time) == (90.0, 30.0)


def test_models_can_be_built_by_attribute_name() -> None:
    pool = IPAddressPool.model_validate(
        {"metadata": {"name": "lan", "namespace": "metallb-system"}, "spec": {"addresses": ["10.0.0.0/30"]}}
    )
    assert pool.kind == "IPAddressPool"
    spec = pool.spec.model_validate({"addresses": ["10.0.0.0/30"], "auto_assign": False})
    assert spec.auto_assign is False
