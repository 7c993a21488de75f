"""ipam's BGP decisions as an operator sees them: what is advertised for each IP, to which peers, from where.

The scenario tables are MetalLB's advertisement semantics (those the announcers' per-node plan had), each row
changing one thing in a small world and saying what the decision for the IP carries."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPRoute,
    BGPWithdrawReason,
    Event,
    ServicePort,
)
from schemas.metallb.common import LabelSelector
from services.common.subjects import bgp_decision_subject
from services.ipam.decider import Decider, Outgoing
from tests.bgp_world import bgp_advertisement, bgp_peer, config_object, endpoints, node
from tests.builders import pool, service, service_deleted
from tests.builders_l2 import labelled

V4, V6 = "198.51.100.7", "2001:db8:1::7"
DUAL: dict[str, Any] = {
    "ip_families": ("IPv4", "IPv6"),
    "ip_family_policy": "RequireDualStack",
    "cluster_ips": ("10.96.0.10", "fd96::10"),
    "annotations": {"metallb.io/loadBalancerIPs": f"{V4},{V6}"},
}
COMMUNITIES = config_object("Community", "names", {"communities": [
    {"name": "no-advertise", "value": "65535:65282"}, {"name": "big", "value": "large:64512:1:2"}]})  # fmt: skip
BASE: list[Event] = [
    pool("lan", "198.51.100.0/24", "2001:db8:1::/64"),
    pool("dmz", "203.0.113.0/28"),
    bgp_peer("tor1", "10.0.0.1", my_asn=64512, peer_asn=64513),
    bgp_peer("tor2", "10.0.0.2", my_asn=64512, peer_asn=64513),
    bgp_advertisement("all"),
    COMMUNITIES,
    node("node-a", labels={"zone": "a"}),
    node("node-b", labels={"zone": "b"}),
]
WEB = service("web", **DUAL)
WEB_ON_B = endpoints("web", {"node-b": 1})


def active(*world: Event, base: list[Event] | None = None) -> Decider:
    """A decider that took over with ``world`` laid over ``base`` (an object of the same kind and name
    replaces the base's)."""
    extra = {_identity(e) for e in world}
    decider = Decider()
    for event in (*(e for e in (BASE if base is None else base) if _identity(e) not in extra), *world):
        decider.load_observation(event)
    decider.activate()
    return decider


def _identity(event: Event) -> tuple[str, ...]:
    raw = getattr(event, "raw", None)
    if raw is not None:
        return (raw["kind"], raw["metadata"]["name"])
    return (type(event).__name__, str(getattr(event, "ref", "")))


def decided(decider: Decider) -> dict[str, BGPAdvertisementDecided]:
    return dict(sorted(decider.ledger.bgp.items()))


def bgp_events(outgoing: list[Outgoing]) -> list[Event]:
    return [o.event for o in outgoing if isinstance(o.event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn)]


def route(name: str, prefix: str, **fields: Any) -> BGPRoute:
    return BGPRoute(advertisement=name, prefix=prefix, communities=fields.pop("communities", ()),
                    large_communities=fields.pop("large_communities", ()), **fields)  # fmt: skip


def routes_of(*routes: BGPRoute) -> dict[str, tuple[BGPRoute, ...]]:
    """Routes per IP: those for V4 from the IPv4 prefixes, for V6 from the IPv6 ones."""
    return {V4: tuple(r for r in routes if ":" not in r.prefix), V6: tuple(r for r in routes if ":" in r.prefix)}


HOSTS = routes_of(route("all", f"{V4}/32"), route("all", f"{V6}/128"))
ZONE_B = {"matchLabels": {"zone": "b"}}
NONE: dict[str, tuple[BGPRoute, ...]] = {}

SCENARIOS: list[tuple[str, list[Event], dict[str, tuple[BGPRoute, ...]]]] = [
    ("one advertisement for all pools: both families, every peer, every node", [], HOSTS),
    ("no advertisement: nothing advertised", [bgp_advertisement("all", ipAddressPools=["nowhere"])], NONE),
    ("advertisement naming another pool", [bgp_advertisement("all", ipAddressPools=["dmz"])], NONE),
    ("pool picked by label selector",
     [labelled(pool("lan", "198.51.100.0/24", "2001:db8:1::/64"), tier="front"),
      bgp_advertisement("all", ipAddressPoolSelectors=[{"matchLabels": {"tier": "front"}}])], HOSTS),
    ("pool selector not matching",
     [bgp_advertisement("all", ipAddressPoolSelectors=[{"matchLabels": {"tier": "front"}}])], NONE),
    ("service selector not matching", [bgp_advertisement("all", serviceSelectors=[{"matchLabels": {"a": "b"}}])],
     NONE),
    ("advertisement limited to one peer", [bgp_advertisement("all", peers=["tor2"])],
     routes_of(route("all", f"{V4}/32", peers=("tor2",)), route("all", f"{V6}/128", peers=("tor2",)))),
    ("advertisement for other nodes: its nodeSelectors go with the route",
     [bgp_advertisement("all", nodeSelectors=[ZONE_B])],
     routes_of(*(route("all", p, node_selectors=(LabelSelector.model_validate(ZONE_B),))
                 for p in (f"{V4}/32", f"{V6}/128")))),
    ("a peer for other nodes changes no decision",
     [bgp_peer("tor2", "10.0.0.2", my_asn=64512, peer_asn=64513, nodeSelectors=[ZONE_B])], HOSTS),
    ("aggregation", [bgp_advertisement("all", ipAddressPools=["lan"], aggregationLength=24, aggregationLengthV6=64)],
     routes_of(route("all", "198.51.100.0/24"), route("all", "2001:db8:1::/64"))),
    ("communities, aliases and large, local preference",
     [bgp_advertisement("all", communities=["65000:7", "no-advertise", "big", "large:1:2:3"], localPref=150)],
     routes_of(*(route("all", p, communities=((65000 << 16) | 7, 0xFFFFFF02),
                       large_communities=((1, 2, 3), (64512, 1, 2)), local_pref=150)
                 for p in (f"{V4}/32", f"{V6}/128")))),
    ("two advertisements, one prefix: two routes, each with its communities (the announcers unite them)",
     [bgp_advertisement("all", communities=["65000:1"], localPref=100),
      bgp_advertisement("more", communities=["65000:2"], localPref=100, peers=["tor1"])],
     routes_of(*(route("all", p, communities=((65000 << 16) | 1,), local_pref=100) for p in (f"{V4}/32", f"{V6}/128")),
               *(route("more", p, communities=((65000 << 16) | 2,), local_pref=100, peers=("tor1",))
                 for p in (f"{V4}/32", f"{V6}/128")))),
    ("a specific and an aggregate advertisement both go out",
     [bgp_advertisement("agg", ipAddressPools=["lan"], aggregationLength=24, aggregationLengthV6=64,
                        communities=["65000:9"])],
     routes_of(route("agg", "198.51.100.0/24", communities=((65000 << 16) | 9,)),
               route("agg", "2001:db8:1::/64", communities=((65000 << 16) | 9,)),
               route("all", f"{V4}/32"), route("all", f"{V6}/128"))),
]  # fmt: skip


@pytest.mark.parametrize(("story", "world", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_advertisement_scenarios(story: str, world: list[Event], expected: dict[str, tuple[BGPRoute, ...]]) -> None:
    decisions = decided(active(*world, WEB, WEB_ON_B))
    assert {ip: d.routes for ip, d in decisions.items()} == expected, story
    for decision in decisions.values():
        assert [s.name for s in decision.services] == ["web"] and decision.nodes is None


ENDPOINT_STORY: list[tuple[str, str, dict[str, int], tuple[str, ...] | BGPWithdrawReason | None]] = [
    ("Cluster: an endpoint anywhere is enough, every node advertises", "Cluster", {"node-b": 1}, None),
    ("Cluster: no serving endpoint", "Cluster", {"node-b": 0}, BGPWithdrawReason.NO_SERVING_ENDPOINTS),
    ("Cluster: no endpoints at all", "Cluster", {}, BGPWithdrawReason.NO_SERVING_ENDPOINTS),
    ("Local: only the nodes with a serving endpoint", "Local", {"node-b": 2, "node-c": 1}, ("node-b", "node-c")),
    ("Local: a node whose endpoint stopped serving is left out", "Local", {"node-a": 0, "node-b": 2}, ("node-b",)),
    ("Local: nothing serves", "Local", {"node-a": 0}, BGPWithdrawReason.NO_SERVING_ENDPOINTS),
]


@pytest.mark.parametrize(("story", "policy", "serving", "where"), ENDPOINT_STORY, ids=[s[0] for s in ENDPOINT_STORY])
def test_traffic_policy_follows_endpoints(
    story: str, policy: str, serving: dict[str, int], where: tuple[str, ...] | BGPWithdrawReason | None
) -> None:
    decider = active(service("web", external_traffic_policy=policy, **DUAL), WEB_ON_B)
    assert decided(decider)[V4].nodes == (None if policy == "Cluster" else ("node-b",))
    out = bgp_events(decider.observe(endpoints("web", serving)))
    if isinstance(where, BGPWithdrawReason):
        assert out == [BGPAdvertisementWithdrawn(ip=V4, reason=where), BGPAdvertisementWithdrawn(ip=V6, reason=where)]
        assert decided(decider) == {}
        return
    assert {ip: d.nodes for ip, d in decided(decider).items()} == {V4: where, V6: where}, story


def test_nodes_do_not_enter_the_decision() -> None:
    """Usability and nodeSelectors are for each announcer to apply to itself: a node that goes, becomes
    unavailable or excluded changes no decision, so nothing is appended."""
    decider = active(WEB, WEB_ON_B)
    before = decided(decider)
    assert bgp_events(decider.observe(node("node-b", labels={
        "node.kubernetes.io/exclude-from-external-load-balancers": ""}, version="2"))) == []  # fmt: skip
    assert bgp_events(decider.observe(node("node-c"))) == []
    assert decided(decider) == before


def test_a_shared_ip_is_advertised_for_every_service_that_counts() -> None:
    shared = {"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "198.51.100.9"}
    local: dict[str, Any] = {"external_traffic_policy": "Local", "selector": {"app": "x"}, "annotations": shared}
    one = service("one", **local)
    two = service("two", labels={"tier": "db"}, ports=(ServicePort(port=443),), **local)
    decider = active(one, two, endpoints("one", {"node-a": 1}), endpoints("two", {"node-b": 1}),
                     bgp_advertisement("db", serviceSelectors=[{"matchLabels": {"tier": "db"}}], localPref=50))
    decision = decided(decider)["198.51.100.9"]
    assert [s.name for s in decision.services] == ["one", "two"]
    assert decision.nodes == ("node-a", "node-b")
    assert [r.advertisement for r in decision.routes] == ["all", "db"]
    # one Service without a serving endpoint does not hold the IP back for the other, and takes its nodes away
    [update] = bgp_events(decider.observe(endpoints("two", {})))
    assert isinstance(update, BGPAdvertisementDecided)
    assert [s.name for s in update.services] == ["one"] and update.nodes == ("node-a",)
    assert [r.advertisement for r in update.routes] == ["all"]


def test_release_withdraws_and_a_new_allocation_advertises() -> None:
    decider = active(WEB, WEB_ON_B)
    out = decider.observe(service_deleted("web"))
    assert bgp_events(out) == [BGPAdvertisementWithdrawn(ip=ip, reason=BGPWithdrawReason.RELEASED) for ip in (V4, V6)]
    assert [o.subject for o in out if isinstance(o.event, BGPAdvertisementWithdrawn)] == [
        bgp_decision_subject(V4), bgp_decision_subject(V6)]  # fmt: skip
    assert decided(decider) == {}
    out = decider.observe(WEB)
    assert set(decided(decider)) == {V4, V6} and len(bgp_events(out)) == 2


def test_removing_the_advertisement_withdraws_with_its_reason() -> None:
    decider = active(WEB, WEB_ON_B)
    out = decider.observe(bgp_advertisement("all", version="2", ipAddressPools=["dmz"]))
    assert bgp_events(out) == [
        BGPAdvertisementWithdrawn(ip=ip, reason=BGPWithdrawReason.NO_ADVERTISEMENT) for ip in (V4, V6)]  # fmt: skip


def test_a_configuration_change_that_bgp_does_not_see_appends_no_decision() -> None:
    decider = active(WEB, WEB_ON_B)
    assert bgp_events(decider.observe(bgp_peer("tor3", "10.0.0.3", my_asn=64512, peer_asn=64513))) == []
    out = decider.observe(bgp_advertisement("all", version="2", localPref=120))
    assert [e.routes[0].local_pref for e in bgp_events(out) if isinstance(e, BGPAdvertisementDecided)] == [120, 120]


def test_a_replica_taking_over_from_the_stream_appends_no_decision_again() -> None:
    first = Decider()
    for event in (*BASE, WEB, WEB_ON_B):
        first.load_observation(event)
    history = first.activate()
    assert len(bgp_events(history)) == 2
    second = Decider()
    for outgoing in history:
        second.load_decision(outgoing.event, outgoing.sequence)
    for event in (*BASE, WEB, WEB_ON_B):
        second.load_observation(event)
    assert bgp_events(second.activate()) == []
    assert second.ledger.bgp == first.ledger.bgp


def test_decisions_do_not_depend_on_the_order_things_were_seen() -> None:
    forward = active(WEB, WEB_ON_B)
    backward = Decider()
    for event in reversed([*BASE, WEB, WEB_ON_B]):
        backward.load_observation(event)
    backward.activate()
    assert decided(forward) == decided(backward)


def test_500_endpoint_changes_that_change_no_decision_append_nothing() -> None:
    services = [service(f"s{i}") for i in range(50)]
    local = [service(f"l{i}", external_traffic_policy="Local") for i in range(50)]
    decider = active(*services, *local, *(endpoints(s.ref.name, {"node-a": 1, "node-b": 1}) for s in services + local))
    before = decided(decider)
    assert len(before) == 100
    appended: list[Outgoing] = []
    for round_ in range(5):
        for s in services:  # Cluster: endpoints moving around while something serves changes nothing
            appended += decider.observe(endpoints(s.ref.name, {f"node-{round_}": round_ + 1, "node-b": 1}))
        for s in local:  # Local: endpoints scaling on the same nodes change nothing
            appended += decider.observe(endpoints(s.ref.name, {"node-a": round_ + 2, "node-b": 1}))
    assert appended == []
    assert decided(decider) == before
