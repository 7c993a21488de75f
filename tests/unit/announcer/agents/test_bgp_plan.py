"""MetalLB's BGP advertisement semantics, as scenario tables: each row changes one thing in a small world and
says what node-a advertises to which peer."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from schemas.events import ServiceId
from schemas.metallb import parse_config_object
from services.announcer.agents.bgp_plan import (
    Allocation,
    Configuration,
    NodeFacts,
    ServiceFacts,
    ServiceKey,
    Skip,
    next_hops,
    plan,
    resolve_communities,
    router_id_for,
)
from services.announcer.bgp.rib import Route

NS = "metallb-system"
WEB: ServiceKey = ("default", "web")
DB: ServiceKey = ("default", "db")


def obj(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    version = "metallb.io/v1beta2" if kind == "BGPPeer" else "metallb.io/v1beta1"
    return {"apiVersion": version, "kind": kind,
            "metadata": {"name": name, "namespace": NS, "labels": labels or {}}, "spec": spec}  # fmt: skip


def pool(name: str, *addresses: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return obj("IPAddressPool", name, {"addresses": list(addresses)}, labels)


def ad(name: str, **spec: Any) -> dict[str, Any]:
    return obj("BGPAdvertisement", name, spec)


def peer(name: str, address: str, **spec: Any) -> dict[str, Any]:
    return obj("BGPPeer", name, {"myASN": 64512, "peerASN": 64513, "peerAddress": address, **spec})


BASE = [
    pool("lan", "198.51.100.0/24", "2001:db8:1::/64", labels={"tier": "front"}),
    pool("dmz", "203.0.113.0/28"),
    peer("tor1", "10.0.0.1"),
    peer("tor2", "10.0.0.2"),
    ad("all"),
    obj("Community", "names", {"communities": [{"name": "no-advertise", "value": "65535:65282"},
                                               {"name": "big", "value": "large:64512:1:2"}]}),
]  # fmt: skip


@dataclass
class World:
    objects: list[dict[str, Any]] = field(default_factory=lambda: list(BASE))
    node: NodeFacts | None = field(
        default_factory=lambda: NodeFacts(name="node-a", labels={"zone": "a"}, addresses=("10.0.0.11", "fd00::11"))
    )
    services: dict[ServiceKey, ServiceFacts] = field(
        default_factory=lambda: {WEB: ServiceFacts(serving={"node-b": 1}), DB: ServiceFacts(serving={"node-a": 1})}
    )
    allocations: dict[ServiceKey, Allocation] = field(
        default_factory=lambda: {
            WEB: Allocation(ServiceId(namespace="default", name="web"), ("198.51.100.7", "2001:db8:1::7"), "lan"),
        }
    )

    def routes(self) -> dict[str, dict[str, Route]]:
        result = plan(
            node=self.node,
            configuration=Configuration.of(parse_config_object(o) for o in self.objects),
            services=self.services,
            allocations=self.allocations,
        )
        return {name: {str(p): r for p, r in peer_plan.routes.items()} for name, peer_plan in result.peers.items()}


def plain(*prefixes: str) -> dict[str, Route]:
    return {p: Route() for p in prefixes}


BOTH = plain("198.51.100.7/32", "2001:db8:1::7/128")


def with_objects(*extra: dict[str, Any], drop: tuple[str, ...] = ()) -> World:
    """The base world with ``extra`` objects replacing those of the same kind and name."""
    world = World()
    replaced = {(o["kind"], o["metadata"]["name"]) for o in extra}
    world.objects = [
        o
        for o in world.objects
        if o["metadata"]["name"] not in drop and (o["kind"], o["metadata"]["name"]) not in replaced
    ] + list(extra)
    return world


SCENARIOS: list[tuple[str, World, dict[str, dict[str, Route]]]] = [
    ("one advertisement for all pools: both families to every peer", World(), {"tor1": BOTH, "tor2": BOTH}),
    ("no advertisement: peers kept, nothing advertised", with_objects(drop=("all",)), {"tor1": {}, "tor2": {}}),
    ("advertisement naming another pool", with_objects(ad("all", ipAddressPools=["dmz"])),
     {"tor1": {}, "tor2": {}}),
    ("pool picked by label selector",
     with_objects(ad("all", ipAddressPoolSelectors=[{"matchLabels": {"tier": "front"}}])),
     {"tor1": BOTH, "tor2": BOTH}),
    ("advertisement limited to one peer", with_objects(ad("all", peers=["tor2"])), {"tor1": {}, "tor2": BOTH}),
    ("advertisement for other nodes", with_objects(ad("all", nodeSelectors=[{"matchLabels": {"zone": "b"}}])),
     {"tor1": {}, "tor2": {}}),
    ("peer for other nodes: no session", with_objects(peer("tor2", "10.0.0.2", nodeSelectors=[
        {"matchLabels": {"zone": "b"}}])), {"tor1": BOTH}),
    ("aggregation", with_objects(ad("all", aggregationLength=24, aggregationLengthV6=64)),
     {"tor1": plain("198.51.100.0/24", "2001:db8:1::/64"), "tor2": plain("198.51.100.0/24", "2001:db8:1::/64")}),
    ("communities, aliases and large, local preference",
     with_objects(ad("all", communities=["65000:7", "no-advertise", "big", "large:1:2:3"], localPref=150)),
     {name: {p: Route(communities=((65000 << 16) | 7, 0xFFFFFF02), large_communities=((1, 2, 3), (64512, 1, 2)),
                      local_pref=150) for p in BOTH} for name in ("tor1", "tor2")}),
    ("two advertisements, one prefix: communities merge, highest local preference wins",
     with_objects(ad("all", communities=["65000:1"], localPref=100),
                  ad("more", communities=["65000:2"], localPref=200, peers=["tor1"])),
     {"tor1": {p: Route(communities=((65000 << 16) | 1, (65000 << 16) | 2), local_pref=200) for p in BOTH},
      "tor2": {p: Route(communities=((65000 << 16) | 1,), local_pref=100) for p in BOTH}}),
    ("a specific and an aggregate advertisement both go out",
     with_objects(ad("agg", aggregationLength=24, aggregationLengthV6=64, communities=["65000:9"])),
     {name: {**BOTH, "198.51.100.0/24": Route(communities=((65000 << 16) | 9,)),
             "2001:db8:1::/64": Route(communities=((65000 << 16) | 9,))} for name in ("tor1", "tor2")}),
]  # fmt: skip


@pytest.mark.parametrize(("story", "world", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_advertisement_scenarios(story: str, world: World, expected: dict[str, dict[str, Route]]) -> None:
    assert world.routes() == expected, story


def endpoints_world(policy: str, serving: dict[str, int]) -> World:
    world = World()
    world.services = {WEB: ServiceFacts(external_traffic_policy=policy, serving=serving)}
    return world


ENDPOINT_STORY: list[tuple[str, str, dict[str, int], Skip | None]] = [
    ("Cluster: an endpoint anywhere is enough", "Cluster", {"node-b": 1}, None),
    ("Cluster: no serving endpoint withdraws", "Cluster", {"node-b": 0}, Skip.NO_ENDPOINTS),
    ("Cluster: no endpoints at all", "Cluster", {}, Skip.NO_ENDPOINTS),
    ("Local: the endpoint is elsewhere", "Local", {"node-b": 2}, Skip.NO_LOCAL_ENDPOINTS),
    ("Local: an endpoint here", "Local", {"node-a": 1, "node-b": 2}, None),
    ("Local: the local one stops serving", "Local", {"node-a": 0, "node-b": 2}, Skip.NO_LOCAL_ENDPOINTS),
]


@pytest.mark.parametrize(("story", "policy", "serving", "skip"), ENDPOINT_STORY, ids=[s[0] for s in ENDPOINT_STORY])
def test_traffic_policy_follows_endpoints(story: str, policy: str, serving: dict[str, int], skip: Skip | None) -> None:
    world = endpoints_world(policy, serving)
    result = plan(node=world.node, configuration=Configuration.of(parse_config_object(o) for o in world.objects),
                  services=world.services, allocations=world.allocations)  # fmt: skip
    assert result.skipped.get(WEB) is skip, story
    advertised = {str(p) for p in result.peers["tor1"].routes}
    assert advertised == (set() if skip else set(BOTH)), story
    assert ("198.51.100.7" in result.announcements) is (skip is None)


NODE_STORY: list[tuple[str, NodeFacts | None, Skip]] = [
    ("node not observed yet", None, Skip.NODE_UNKNOWN),
    ("network unavailable", NodeFacts(name="node-a", network_unavailable=True), Skip.NODE_NETWORK_UNAVAILABLE),
    ("excluded from load balancers",
     NodeFacts(name="node-a", labels={"node.kubernetes.io/exclude-from-external-load-balancers": ""}),
     Skip.NODE_EXCLUDED),
]  # fmt: skip


@pytest.mark.parametrize(("story", "node", "skip"), NODE_STORY, ids=[s[0] for s in NODE_STORY])
def test_unavailable_node_announces_nothing(story: str, node: NodeFacts | None, skip: Skip) -> None:
    world = World()
    world.node = node
    result = plan(node=node, configuration=Configuration.of(parse_config_object(o) for o in world.objects),
                  services=world.services, allocations=world.allocations)  # fmt: skip
    assert result.skipped == {WEB: skip}, story
    assert all(not p.routes for p in result.peers.values())


def test_announcements_name_services_and_peers_and_conflicts_are_reported() -> None:
    world = with_objects(ad("all", peers=["tor1"], localPref=100), ad("more", peers=["tor1"], localPref=300))
    world.allocations[DB] = Allocation(ServiceId(namespace="default", name="db"), ("198.51.100.7",), "lan")
    result = plan(node=world.node, configuration=Configuration.of(parse_config_object(o) for o in world.objects),
                  services=world.services, allocations=world.allocations)  # fmt: skip
    shared = result.announcements["198.51.100.7"]
    assert [s.name for s in shared.services] == ["db", "web"]
    assert shared.peers == ("tor1",)
    assert {(str(c.prefix), c.local_prefs, c.chosen) for c in result.conflicts} == {
        ("198.51.100.7/32", (100, 300), 300),
        ("2001:db8:1::7/128", (100, 300), 300),
    }


def test_unknown_pool_and_service_are_skipped_with_their_reason() -> None:
    world = World()
    world.allocations[DB] = Allocation(ServiceId(namespace="default", name="db"), ("203.0.113.1",), "gone")
    world.allocations[("x", "y")] = Allocation(ServiceId(namespace="x", name="y"), ("203.0.113.2",), "dmz")
    result = plan(node=world.node, configuration=Configuration.of(parse_config_object(o) for o in world.objects),
                  services=world.services, allocations=world.allocations)  # fmt: skip
    assert result.skipped == {DB: Skip.UNKNOWN_POOL, ("x", "y"): Skip.SERVICE_UNKNOWN}


def test_plan_is_deterministic_whatever_the_input_order() -> None:
    forward, backward = World(), World()
    backward.objects = list(reversed(forward.objects))
    assert forward.routes() == backward.routes()
    assert list(forward.routes()) == sorted(forward.routes())


def test_community_resolution_drops_unknown_aliases() -> None:
    assert resolve_communities(["1:2", "nope", "large:4:5:6"], {}) == ((65538,), ((4, 5, 6),))


def test_router_id_and_next_hops_from_node_addresses() -> None:
    node = NodeFacts(name="n", addresses=("fe80::1", "fd00::11", "10.0.0.11"))
    assert router_id_for(node) == ipaddress.IPv4Address("10.0.0.11")
    assert next_hops(node, session_family=4) == (None, ipaddress.IPv6Address("fd00::11"))
    assert next_hops(node, session_family=6) == (ipaddress.IPv4Address("10.0.0.11"), None)
    v6_only = replace(node, addresses=("fd00::11",))
    assert router_id_for(v6_only) == router_id_for(v6_only)  # stable, derived from the name
