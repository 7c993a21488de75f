"""What node-a advertises to which peer, from ipam's decisions: the node's part of MetalLB's semantics (usable,
``nodes``, the routes' and peers' ``nodeSelectors``, the routes' ``peers``) and the merge of one prefix."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Any

import pytest

from schemas.events import BGPAdvertisementDecided, BGPAdvertisementWithdrawn
from schemas.metallb.rules import EXCLUDE_LABEL, NodeFacts
from services.announcer.agents.bgp_inputs import BgpInputs
from services.announcer.agents.bgp_plan import Configuration, Plan, Planner, next_hops, plan, router_id_for
from services.announcer.bgp.rib import Route
from tests.bgp_world import bgp_peer, decided, in_force, route, withdrawn

NODE_A = NodeFacts(name="node-a", labels={"rack": "a"}, addresses=("10.0.0.11",))
RACK_B = ({"matchLabels": {"rack": "b"}},)


def planned(*decisions: BGPAdvertisementDecided, node: NodeFacts | None = NODE_A, peers: tuple[Any, ...] = ()) -> Plan:
    inputs = BgpInputs("node-a")
    inputs.apply(in_force(*(peers or (bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513),))))
    for decision in decisions:
        inputs.apply(decision)
    return plan(node=node, configuration=inputs.configuration, decisions=inputs.decisions)


def routes_of(result: Plan) -> dict[str, dict[str, Route]]:
    return {name: {str(prefix): r for prefix, r in peer.routes.items()} for name, peer in result.peers.items()}


PLAIN = Route()

SCENARIOS = [
    ("Cluster: every usable node advertises", [decided("198.51.100.7")], {"tor": {"198.51.100.7/32": PLAIN}}),
    ("Local, served here", [decided("198.51.100.7", nodes=("node-a",))], {"tor": {"198.51.100.7/32": PLAIN}}),
    ("Local, served elsewhere only", [decided("198.51.100.7", nodes=("node-b",))], {"tor": {}}),
    ("the route's nodeSelectors do not admit this node",
     [decided("198.51.100.7", route("ads", "198.51.100.7/32", node_selectors=RACK_B))], {"tor": {}}),
    ("they do",
     [decided("198.51.100.7", route("ads", "198.51.100.7/32", node_selectors=({"matchLabels": {"rack": "a"}},)))],
     {"tor": {"198.51.100.7/32": PLAIN}}),
    ("the route goes to another peer only",
     [decided("198.51.100.7", route("ads", "198.51.100.7/32", peers=("spine",)))], {"tor": {}}),
    ("attributes as decided",
     [decided("198.51.100.7", route("ads", "198.51.100.7/32", communities=(7, 9), large=((1, 2, 3),), local_pref=50))],
     {"tor": {"198.51.100.7/32": Route(communities=(7, 9), large_communities=((1, 2, 3),), local_pref=50)}}),
    ("one aggregate from two IPs and two advertisements: communities united",
     [decided("198.51.100.7", route("a1", "198.51.100.0/24", communities=(7,))),
      decided("198.51.100.8", route("a2", "198.51.100.0/24", communities=(9,), large=((1, 2, 3),)))],
     {"tor": {"198.51.100.0/24": Route(communities=(7, 9), large_communities=((1, 2, 3),))}}),
    ("dual-stack: one route per family",
     [decided("198.51.100.7", route("ads", "198.51.100.7/32"), route("ads", "2001:db8::7/128"))],
     {"tor": {"198.51.100.7/32": PLAIN, "2001:db8::7/128": PLAIN}}),
]  # fmt: skip


@pytest.mark.parametrize(("story", "decisions", "expected"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_routes_from_decisions(story: str, decisions: list[BGPAdvertisementDecided],
                               expected: dict[str, dict[str, Route]]) -> None:  # fmt: skip
    assert routes_of(planned(*decisions)) == expected


def test_a_peer_whose_node_selectors_do_not_admit_the_node_has_no_session() -> None:
    peers = (bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513),
             bgp_peer("spine", "10.0.0.2", my_asn=64512, peer_asn=64514, nodeSelectors=list(RACK_B)))  # fmt: skip
    result = planned(decided("198.51.100.7"), peers=peers)
    assert set(result.peers) == {"tor"}
    assert result.announcements["198.51.100.7"].peers == ("tor",)


@pytest.mark.parametrize(
    ("story", "node"),
    [("network unavailable", replace(NODE_A, network_unavailable=True)),
     ("excluded from load balancers", replace(NODE_A, labels={EXCLUDE_LABEL: ""}))],
)  # fmt: skip
def test_an_unusable_node_keeps_its_sessions_and_advertises_nothing(story: str, node: NodeFacts) -> None:
    result = planned(decided("198.51.100.7"), node=node)
    assert routes_of(result) == {"tor": {}} and not result.announcements


def test_an_unknown_node_has_no_session() -> None:
    assert planned(decided("198.51.100.7"), node=None) == Plan()


def test_announcements_name_services_and_peers_and_conflicts_are_reported() -> None:
    peers = (bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513),
             bgp_peer("spine", "10.0.0.2", my_asn=64512, peer_asn=64514))  # fmt: skip
    result = planned(
        decided("198.51.100.7", route("a1", "198.51.100.0/24", local_pref=100), services=("db", "web")),
        decided("198.51.100.8", route("a2", "198.51.100.0/24", local_pref=200, peers=("tor",))),
        decided("198.51.100.9", route("a3", "198.51.100.9/32", peers=("nobody",))),
        peers=peers,
    )
    assert result.announcements["198.51.100.7"].services == ("default/db", "default/web")
    assert result.announcements["198.51.100.7"].peers == ("spine", "tor")
    assert result.announcements["198.51.100.8"].peers == ("tor",)
    assert result.announcements["198.51.100.9"].peers == ()  # admitted here, but to no peer of this node
    assert routes_of(result)["tor"]["198.51.100.0/24"].local_pref == 200  # the highest wins
    assert routes_of(result)["spine"]["198.51.100.0/24"].local_pref == 100
    (conflict,) = result.conflicts
    assert (conflict.peer, str(conflict.prefix), conflict.local_prefs, conflict.chosen) == (
        "tor", "198.51.100.0/24", (100, 200), 200)  # fmt: skip


def test_routes_are_sorted_whatever_the_decisions_order() -> None:
    ips = [f"198.51.100.{n}" for n in (9, 3, 7, 1)] + ["2001:db8::5", "2001:db8::1"]
    forward = planned(*(decided(ip) for ip in ips))
    backward = planned(*(decided(ip) for ip in reversed(ips)))
    assert list(forward.peers["tor"].routes) == list(backward.peers["tor"].routes)
    assert next(iter(forward.peers["tor"].routes)) == ipaddress.ip_network("198.51.100.1/32")


def test_router_id_and_next_hops_from_node_addresses() -> None:
    node = NodeFacts(name="n", addresses=("fe80::1", "fd00::11", "10.0.0.11"))
    assert router_id_for(node) == ipaddress.IPv4Address("10.0.0.11")
    assert next_hops(node, session_family=4) == (None, ipaddress.IPv6Address("fd00::11"))
    assert next_hops(node, session_family=6) == (ipaddress.IPv4Address("10.0.0.11"), None)
    v6_only = replace(node, addresses=("fd00::11",))
    assert router_id_for(v6_only) == router_id_for(v6_only)  # stable, derived from the name


def test_no_configuration_in_force_no_peers() -> None:
    assert plan(node=NODE_A, configuration=Configuration(), decisions={}).peers == {}


def test_a_plan_kept_current_ip_by_ip_equals_one_made_whole() -> None:
    """Decisions coming, changing and going one at a time (host routes and a shared aggregate, nodes and
    selectors, local preferences in conflict and out of it) leave the planner where a whole plan lands."""
    inputs = BgpInputs("node-a")
    peers = (bgp_peer("tor", "10.0.0.1", my_asn=64512, peer_asn=64513),
             bgp_peer("spine", "10.0.0.2", my_asn=64512, peer_asn=64514))  # fmt: skip
    inputs.apply(in_force(*peers))
    planner = Planner(node=NODE_A, configuration=inputs.configuration, decisions=inputs.decisions)
    steps: list[BGPAdvertisementDecided | BGPAdvertisementWithdrawn] = [
        decided("198.51.100.7", route("a1", "198.51.100.0/24", communities=(1,), local_pref=100)),
        decided("198.51.100.8", route("a2", "198.51.100.0/24", communities=(2,), local_pref=200, peers=("tor",))),
        decided("198.51.100.9"),
        decided("198.51.100.9", nodes=("node-b",)),
        decided("198.51.100.8", route("a2", "198.51.100.0/24", communities=(2,), node_selectors=RACK_B)),
        decided("2001:db8::1", route("a1", "2001:db8::/64", large=((1, 2, 3),)), services=("v6",)),
        withdrawn("198.51.100.7"),
        decided("198.51.100.9", nodes=("node-a",)),
        withdrawn("198.51.100.8"),
    ]
    before, announced = routes_of(planner.plan()), dict(planner.plan().announcements)
    for step in steps:
        old = inputs.decisions.get(step.ip)
        inputs.apply(step)
        planner.update(step.ip, old)
        whole = plan(node=NODE_A, configuration=inputs.configuration, decisions=inputs.decisions)
        current = planner.plan()
        assert routes_of(current) == routes_of(whole)
        assert dict(current.announcements) == dict(whole.announcements) and current.conflicts == whole.conflicts
        # what the sessions and the reports are handed: exactly the prefixes and IPs that changed
        after = routes_of(current)
        changes = planner.take_changes()
        assert {str(p) for p in changes.prefixes} == {
            prefix for name in after for prefix in set(before[name]) | set(after[name])
            if before[name].get(prefix) != after[name].get(prefix)
        }, step  # fmt: skip
        assert changes.ips == {ip for ip in set(announced) | set(current.announcements)
                               if announced.get(ip) != current.announcements.get(ip)}, step  # fmt: skip
        assert planner.take_changes().prefixes == frozenset()  # taken once
        before, announced = after, dict(current.announcements)
