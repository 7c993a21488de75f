"""ipam's BGP decisions are cheap at takeover (compared field by field, selections remembered, a standby kept warm)
and still exactly MetalLB's: a mixed world, changed step by step, is decided as the rules worked out from scratch
decide it; a standby that kept warm takes over with the decisions a cold one makes."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPRoute,
    Event,
    ServiceId,
)
from schemas.metallb import BGPAdvertisement, Community, IPAddressPool
from schemas.metallb.community import BGPCommunity
from schemas.metallb.rules import aggregate_prefix, resolve_communities
from services.ipam.core import ServiceKey
from services.ipam.decider import Decider, Outgoing
from tests.bgp_world import bgp_advertisement, bgp_peer, config_object, endpoints, node, read_back
from tests.builders import pool, service, service_deleted
from tests.builders_l2 import labelled

DUAL: dict[str, Any] = {
    "ip_families": ("IPv4", "IPv6"),
    "ip_family_policy": "RequireDualStack",
    "cluster_ips": ("10.96.0.10", "fd96::10"),
}
NODES = [f"node-{i}" for i in range(6)]
CONFIG: list[Event] = [
    pool("lan", "198.51.100.0/24", "2001:db8:1::/64"),
    labelled(pool("dmz", "203.0.113.0/26", autoAssign=False), tier="dmz"),
    bgp_peer("tor1", "10.0.0.1", my_asn=64512, peer_asn=64513),
    bgp_peer("tor2", "10.0.0.2", my_asn=64512, peer_asn=64513),
    config_object("Community", "names", {"communities": [
        {"name": "no-advertise", "value": "65535:65282"}, {"name": "big", "value": "large:64512:1:2"}]}),
    bgp_advertisement("all", communities=["65000:1", "no-advertise"], localPref=100),
    bgp_advertisement("agg", ipAddressPools=["lan"], aggregationLength=28, aggregationLengthV6=120,
                      communities=["big"], peers=["tor2", "tor1"]),
    bgp_advertisement("db", ipAddressPoolSelectors=[{"matchLabels": {"tier": "dmz"}}],
                      serviceSelectors=[{"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}],
                      nodeSelectors=[{"matchLabels": {"zone": "b"}}]),
    *(node(n, labels={"zone": "a" if i % 2 else "b"}) for i, n in enumerate(NODES)),
]  # fmt: skip


def _service(i: int) -> Event:
    """Service ``s<i>``: Local every third, dual-stack every fourth, in the dmz pool (a db every other one)
    every fifth, two pairs sharing an IP."""
    fields: dict[str, Any] = {"external_traffic_policy": "Local" if i % 3 == 0 else "Cluster"}
    annotations: dict[str, str] = {}
    if i % 4 == 0:
        fields.update(DUAL)
    if i % 5 == 0:
        annotations["metallb.io/address-pool"] = "dmz"
        fields["labels"] = {"tier": "db" if i % 10 == 0 else "cache"}
    if i in (1, 2, 7, 8):
        annotations["metallb.io/allow-shared-ip"] = f"pair-{i // 7}"
        annotations["metallb.io/loadBalancerIPs"] = "198.51.100.200" if i < 7 else "198.51.100.201"
        fields["external_traffic_policy"] = "Local"
        fields["selector"] = {"app": f"pair-{i // 7}"}
        fields["ports"] = ()
    return service(f"s{i:02d}", annotations=annotations, **fields)


def _serving(i: int) -> Event:
    """Endpoints of ``s<i>``: none every seventh, otherwise one or two nodes."""
    if i % 7 == 6:
        return endpoints(f"s{i:02d}", {})
    return endpoints(f"s{i:02d}", {NODES[i % 6]: 1, NODES[(i * 5) % 6]: i % 3})


WORLD: list[Event] = [*CONFIG, *(_service(i) for i in range(40)), *(_serving(i) for i in range(40))]
CHANGES: list[Event] = [
    endpoints("s03", {NODES[5]: 2}),  # Local moves
    endpoints("s04", {NODES[0]: 0}),  # nothing serves any more
    endpoints("s06", {NODES[1]: 1}),  # serves again
    endpoints("s01", {}),  # one of a pair stops serving: the IP keeps the other's
    service("s15", labels={"tier": "db"}, annotations={"metallb.io/address-pool": "dmz"}),  # now a db
    service_deleted("s10"),
    bgp_advertisement("all", version="2", communities=["65000:2"], localPref=300),  # every decision
    labelled(pool("dmz", "203.0.113.0/26", version="2", autoAssign=False), tier="edge"),  # db selects none
    bgp_advertisement("agg", version="2", ipAddressPools=["lan"], aggregationLength=24, aggregationLengthV6=64),
    service("s10", **DUAL),  # back
    endpoints("s10", {NODES[2]: 1}),
]


def from_scratch(decider: Decider) -> dict[str, BGPAdvertisementDecided]:
    """What MetalLB's rules advertise for every allocated IP, worked out directly: every advertisement asked
    for every Service, every prefix through ``ipaddress``, every event built."""
    objects = decider.configuration.objects
    ads = sorted((o for o in objects if isinstance(o, BGPAdvertisement)), key=lambda a: (a.name, a.namespace or ""))
    pool_labels = {o.name: o.labels for o in objects if isinstance(o, IPAddressPool)}
    aliases: dict[str, BGPCommunity] = {}
    for o in objects:
        if isinstance(o, Community):
            aliases.update(o.aliases())
    holders: dict[str, list[ServiceKey]] = {}
    for key, allocation in decider.ledger.allocations.items():
        for ip in allocation.ips:
            holders.setdefault(ip, []).append(key)
    decisions: dict[str, BGPAdvertisementDecided] = {}
    for ip, keys in holders.items():
        routes: dict[int, BGPRoute] = {}
        services: set[ServiceId] = set()
        nodes: set[str] = set()
        everywhere = False
        for key in keys:
            allocation = decider.ledger.allocations[key]
            observed = decider.world.services.get(key)
            found = decider.world.endpoints.get(key)
            serving = {e.node for e in found.nodes if e.serving > 0} if found is not None else set()
            if observed is None or allocation.pool not in pool_labels or not serving:
                continue
            chosen = [index for index, ad in enumerate(ads)
                      if ad.spec.selects_pool(allocation.pool, pool_labels[allocation.pool])
                      and ad.spec.selects_service(observed.labels)]  # fmt: skip
            if not chosen:
                continue
            services.add(allocation.service)
            if observed.external_traffic_policy == "Local":
                nodes |= serving
            else:
                everywhere = True
            for index in chosen:
                spec = ads[index].spec
                communities, large = resolve_communities(spec.communities, aliases)
                prefix = aggregate_prefix(ip, length_v4=spec.aggregation_length, length_v6=spec.aggregation_length_v6)
                routes[index] = BGPRoute(
                    advertisement=ads[index].name, prefix=str(prefix), communities=communities,
                    large_communities=large, local_pref=spec.local_pref, peers=tuple(sorted(spec.peers)),
                    node_selectors=spec.node_selectors,
                )  # fmt: skip
        if routes:
            decisions[ip] = BGPAdvertisementDecided(
                ip=ip,
                services=tuple(sorted(services, key=lambda s: (s.namespace, s.name, s.uid))),
                routes=tuple(sorted(routes.values(), key=lambda r: (r.advertisement, r.prefix))),
                nodes=None if everywhere else tuple(sorted(nodes)),
            )
    return dict(sorted(decisions.items()))


def decided(decider: Decider) -> dict[str, BGPAdvertisementDecided]:
    return dict(sorted(decider.ledger.bgp.items()))


def bgp_events(outgoing: list[Outgoing]) -> list[Event]:
    return [o.event for o in outgoing if isinstance(o.event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn)]


def taken_over() -> tuple[Decider, list[Outgoing], Decider]:
    """The active replica that took over ``WORLD``, what it appended, and a standby that followed it and warmed."""
    active = Decider()
    for event in WORLD:
        active.load_observation(event)
    history = active.activate()
    warm = read_back(history, WORLD)
    warm.warm()
    return active, history, warm


def test_the_mixed_world_is_what_it_claims() -> None:
    """The workload exercises what the cached path shortcuts: aggregated and host prefixes of both families,
    several advertisements per IP, shared IPs, Local and Cluster, serviceSelectors, withdrawn IPs."""
    decider = Decider()
    for event in WORLD:
        decider.load_observation(event)
    decider.activate()
    decisions = decided(decider)
    routes = [r for d in decisions.values() for r in d.routes]
    assert {r.advertisement for r in routes} == {"all", "agg", "db"}
    assert {r.prefix for r in routes} >= {"198.51.100.0/28", "2001:db8:1::/120", "198.51.100.200/32"}
    assert any(":" in ip for ip in decisions) and any(d.nodes is None for d in decisions.values())
    assert any(len(d.services) == 2 for d in decisions.values())
    assert len(decisions) < sum(len(a.ips) for a in decider.ledger.allocations.values())  # some withdrawn


def test_incremental_decisions_are_those_worked_out_from_scratch() -> None:
    decider = Decider()
    for event in WORLD:
        decider.load_observation(event)
    history = decider.activate()
    assert decided(decider) == from_scratch(decider)
    for step, change in enumerate(CHANGES):
        history += decider.observe(change)
        assert decided(decider) == from_scratch(decider), f"after change {step}: {change}"
    # a standby reading it all back from the stream agrees, and has nothing to append
    cold = read_back(history, [*WORLD, *CHANGES])
    assert bgp_events(cold.activate()) == []
    assert decided(cold) == decided(decider)


@pytest.mark.parametrize("warm_again", [False, True], ids=["warmed once", "warmed after following"])
def test_a_warm_standby_takes_over_with_the_decisions_a_cold_one_makes(warm_again: bool) -> None:
    """The standby warms up, then follows the active's further decisions (a configuration change among them)
    and changes the active never decided (it died): taking over, it appends what a cold standby appends."""
    active, history, warm = taken_over()
    followed, unanswered = CHANGES[:7], CHANGES[7:]
    for change in followed:
        decided_now = active.observe(change)
        warm.load_observation(change)
        for outgoing in decided_now:
            warm.load_decision(outgoing.event, outgoing.sequence)
        history += decided_now
    if warm_again:
        warm.warm()
    for change in unanswered:
        warm.load_observation(change)
    cold = read_back(history, [*WORLD, *CHANGES])
    expected = bgp_events(cold.activate())
    assert expected  # the unanswered changes move decisions
    assert bgp_events(warm.activate()) == expected
    assert decided(warm) == decided(cold) == from_scratch(cold)


def test_warming_appends_nothing_and_a_warm_standby_with_nothing_new_appends_nothing() -> None:
    active, history, warm = taken_over()
    assert warm.ledger.last_sequence == history[-1].sequence
    assert bgp_events(warm.activate()) == []
    assert decided(warm) == decided(active)


def test_a_warm_standby_compares_again_the_decisions_it_follows() -> None:
    """A decision followed from the stream may rest on a world the standby has not seen (yet): taking over, it
    is compared again, as a cold standby would, even though no Service the standby saw changed."""
    active, history, warm = taken_over()
    unseen = endpoints("s03", {NODES[5]: 2})  # a Local Service moves: the active decides, the standby lags
    decided_now = active.observe(unseen)
    assert bgp_events(decided_now)
    for outgoing in decided_now:
        warm.load_decision(outgoing.event, outgoing.sequence)
    cold = read_back([*history, *decided_now], WORLD)
    expected = bgp_events(cold.activate())
    assert expected  # back to what the world it saw says
    assert bgp_events(warm.activate()) == expected
