"""MetalLB's rules about where an IP may be announced, as tables: each row one case an operator would meet."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pytest

from schemas.events import NodeEndpoints
from schemas.metallb import LargeCommunity, StandardCommunity
from schemas.metallb.common import LabelSelector, LabelSelectorRequirement, SelectorOperator
from schemas.metallb.rules import (
    EXCLUDE_LABEL,
    NodeFacts,
    NodeReason,
    NodeUsability,
    ServingVerdict,
    TrafficPolicy,
    aggregate_prefix,
    bgp_peers_of_node,
    l2_node_reason,
    node_usability,
    resolve_communities,
    selectors_admit,
    serving_nodes,
    serving_verdict,
    traffic_policy,
    where_announced,
)


@pytest.mark.parametrize(
    ("node", "usability"),
    [
        (None, NodeUsability.NODE_UNKNOWN),
        (NodeFacts("a"), NodeUsability.USABLE),
        (NodeFacts("a", {"zone": "x"}), NodeUsability.USABLE),
        (NodeFacts("a", network_unavailable=True), NodeUsability.NETWORK_UNAVAILABLE),
        (NodeFacts("a", {EXCLUDE_LABEL: ""}), NodeUsability.EXCLUDED),
        (NodeFacts("a", {EXCLUDE_LABEL: "false"}), NodeUsability.EXCLUDED),  # the label's presence is what counts
        (NodeFacts("a", {EXCLUDE_LABEL: ""}, network_unavailable=True), NodeUsability.NETWORK_UNAVAILABLE),
    ],
)
def test_node_usability(node: NodeFacts | None, usability: NodeUsability) -> None:
    assert node_usability(node) is usability
    assert (node is not None and node.usable) == (usability is NodeUsability.USABLE)


@pytest.mark.parametrize(
    ("text", "policy"),
    [("Local", TrafficPolicy.LOCAL), ("Cluster", TrafficPolicy.CLUSTER), (None, TrafficPolicy.CLUSTER),
     ("local", TrafficPolicy.CLUSTER)],
)
def test_traffic_policy(text: str | None, policy: TrafficPolicy) -> None:
    assert traffic_policy(text) is policy


def test_serving_nodes_count_only_serving_endpoints() -> None:
    endpoints = (NodeEndpoints(node="a", ready=1, serving=1), NodeEndpoints(node="b", ready=0, serving=0),
                 NodeEndpoints(node="c", ready=0, serving=2))
    assert serving_nodes(endpoints) == {"a", "c"}
    assert serving_nodes(()) == frozenset()


@pytest.mark.parametrize(
    ("policy", "serving", "where", "verdict_on_a"),
    [
        (TrafficPolicy.CLUSTER, {"b"}, None, ServingVerdict.SERVING),
        (TrafficPolicy.CLUSTER, set(), set(), ServingVerdict.NO_ENDPOINTS),
        (TrafficPolicy.LOCAL, {"a", "b"}, {"a", "b"}, ServingVerdict.SERVING),
        (TrafficPolicy.LOCAL, {"b"}, {"b"}, ServingVerdict.NO_LOCAL_ENDPOINTS),
        (TrafficPolicy.LOCAL, set(), set(), ServingVerdict.NO_ENDPOINTS),
    ],
)
def test_traffic_policy_decides_where(
    policy: TrafficPolicy, serving: set[str], where: set[str] | None, verdict_on_a: ServingVerdict
) -> None:
    assert where_announced(policy, frozenset(serving)) == (None if where is None else frozenset(where))
    assert serving_verdict(policy, frozenset(serving), "a") is verdict_on_a


RACK1 = LabelSelector(match_labels={"rack": "r1"})
ZONE_NOT_B = LabelSelector(
    match_expressions=(LabelSelectorRequirement(key="zone", operator=SelectorOperator.NOT_IN, values=("b",)),)
)


@pytest.mark.parametrize(
    ("selectors", "labels", "admitted"),
    [
        ((), {}, True),
        ((LabelSelector(),), {"rack": "r2"}, True),
        ((RACK1,), {"rack": "r1"}, True),
        ((RACK1,), {"rack": "r2"}, False),
        ((RACK1, ZONE_NOT_B), {"rack": "r2", "zone": "a"}, True),  # any one selector
        ((RACK1, ZONE_NOT_B), {"rack": "r2", "zone": "b"}, False),
        ((ZONE_NOT_B,), {}, True),  # NotIn admits a node without the label
    ],
)
def test_selectors_admit(selectors: tuple[LabelSelector, ...], labels: dict[str, str], admitted: bool) -> None:
    assert selectors_admit(selectors, labels) is admitted


@pytest.mark.parametrize(
    ("ip", "v4", "v6", "prefix"),
    [
        ("10.1.2.3", 32, 128, "10.1.2.3/32"),
        ("10.1.2.3", 24, 128, "10.1.2.0/24"),
        ("10.1.2.3", 0, 128, "0.0.0.0/0"),
        ("2001:db8::7", 32, 128, "2001:db8::7/128"),
        ("2001:db8:1:2::7", 24, 64, "2001:db8:1:2::/64"),
    ],
)
def test_aggregate_prefix(ip: str, v4: int, v6: int, prefix: str) -> None:
    assert aggregate_prefix(ip, length_v4=v4, length_v6=v6) == ipaddress.ip_network(prefix)


def test_communities_resolve_aliases_and_drop_unknown_ones() -> None:
    aliases: dict[str, StandardCommunity | LargeCommunity] = {
        "no-export": StandardCommunity(65535, 65281),
        "big": LargeCommunity(1, 2, 3),
    }
    standard, large = resolve_communities(["65000:100", "no-export", "65000:100", "nobody", "big", "large:4:5:6"],
                                          aliases)
    assert standard == (65000 << 16 | 100, 65535 << 16 | 65281)
    assert large == ((1, 2, 3), (4, 5, 6))


@dataclass(frozen=True)
class Route:
    peers: tuple[str, ...] = ()
    node_selectors: tuple[LabelSelector, ...] = ()


PEERS = {"tor-r1": (RACK1,), "tor-any": ()}
R1 = NodeFacts("a", {"rack": "r1"})
R2 = NodeFacts("b", {"rack": "r2"})


@pytest.mark.parametrize(
    ("node", "routes", "nodes", "peers", "answer"),
    [
        (R1, [Route()], None, PEERS, (NodeReason.ANNOUNCES, ("tor-any", "tor-r1"))),
        (R2, [Route()], None, PEERS, (NodeReason.ANNOUNCES, ("tor-any",))),
        (R1, [Route(peers=("tor-r1",))], None, PEERS, (NodeReason.ANNOUNCES, ("tor-r1",))),
        (R2, [Route(peers=("tor-r1",))], None, PEERS, (NodeReason.NO_PEER, ())),
        (R2, [Route(node_selectors=(RACK1,))], None, PEERS, (NodeReason.NOT_SELECTED, ())),
        (R2, [Route(node_selectors=(RACK1,)), Route()], None, PEERS, (NodeReason.ANNOUNCES, ("tor-any",))),
        (R1, [Route()], ("b",), PEERS, (NodeReason.NO_LOCAL_SERVING_ENDPOINTS, ())),
        (R1, [Route()], ("a",), PEERS, (NodeReason.ANNOUNCES, ("tor-any", "tor-r1"))),
        (NodeFacts("x", {EXCLUDE_LABEL: ""}), [Route()], None, PEERS, (NodeReason.NODE_EXCLUDED, ())),
        (NodeFacts("x", network_unavailable=True), [Route()], None, PEERS,
         (NodeReason.NODE_NETWORK_UNAVAILABLE, ())),
        (R1, [Route()], None, {}, (NodeReason.NO_PEER, ())),
    ],
)
def test_which_peers_a_node_advertises_an_ip_to(
    node: NodeFacts, routes: list[Route], nodes: tuple[str, ...] | None,
    peers: dict[str, tuple[LabelSelector, ...]], answer: tuple[NodeReason, tuple[str, ...]],
) -> None:
    assert bgp_peers_of_node(node, routes=routes, nodes=nodes, peers=peers) == answer


@pytest.mark.parametrize(
    ("node", "selectors", "policy", "serving", "placed_on", "reason"),
    [
        (R1, [()], TrafficPolicy.CLUSTER, {"b"}, "a", NodeReason.ANNOUNCES),
        (R1, [()], TrafficPolicy.CLUSTER, {"b"}, "b", NodeReason.STANDBY),
        (R1, [()], TrafficPolicy.CLUSTER, set(), None, NodeReason.NO_SERVING_ENDPOINTS),
        (R1, [()], TrafficPolicy.LOCAL, {"b"}, "b", NodeReason.NO_LOCAL_SERVING_ENDPOINTS),
        (R2, [(RACK1,)], TrafficPolicy.CLUSTER, {"b"}, "a", NodeReason.NOT_SELECTED),
        (R2, [(RACK1,), ()], TrafficPolicy.CLUSTER, {"b"}, "b", NodeReason.ANNOUNCES),
        (NodeFacts("a", {EXCLUDE_LABEL: ""}), [()], TrafficPolicy.CLUSTER, {"a"}, "a", NodeReason.NODE_EXCLUDED),
    ],
)
def test_whether_a_node_answers_in_layer_2(
    node: NodeFacts, selectors: list[tuple[LabelSelector, ...]], policy: TrafficPolicy, serving: set[str],
    placed_on: str | None, reason: NodeReason,
) -> None:
    answer = l2_node_reason(node, node_selectors=selectors, policy=policy, serving=frozenset(serving),
                            placed_on=placed_on)
    assert answer is reason
