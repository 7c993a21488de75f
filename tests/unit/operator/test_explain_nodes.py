"""`explain` per node, pure: 5 000 nodes stay a handful of lines, each reason with a count and a few names."""

from __future__ import annotations

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPRoute,
    BGPWithdrawReason,
    DataPlaneReported,
    L2PlacementDecided,
)
from schemas.metallb import L2Advertisement, parse_config_object
from schemas.metallb.common import LabelSelector
from schemas.metallb.rules import EXCLUDE_LABEL, NodeFacts, TrafficPolicy
from services.operator.explain_nodes import InForce, ServiceScope, bgp_lines, grouped, l2_lines

ZONE_A = LabelSelector(match_labels={"zone": "a"})
NODES = [NodeFacts(f"n{i:04}", {"zone": "a" if i % 2 else "b"}) for i in range(5000)]


def test_five_thousand_nodes_read_as_one_line_per_reason() -> None:
    decision = BGPAdvertisementDecided(
        ip="10.1.0.7", services=(), nodes=None,
        routes=(BGPRoute(advertisement="edge", prefix="10.1.0.7/32", communities=(), large_communities=(),
                         node_selectors=(ZONE_A,)),),
    )  # fmt: skip
    nodes = [*NODES, NodeFacts("gone", {"zone": "a", EXCLUDE_LABEL: ""}), NodeFacts("down", network_unavailable=True)]
    far = (LabelSelector(match_labels={"zone": "c"}),)
    in_force = InForce(l2_advertisements=(), pool_labels={}, bgp_advertisements=1, peers={"tor": (), "far": far})
    lines = bgp_lines("10.1.0.7", in_force, nodes, decision)
    assert lines == [
        "10.1.0.7: BGP — advertised as 10.1.0.7/32 by edge, from every usable node the advertisements admit"
        " (externalTrafficPolicy Cluster); per node:",
        "  Announces to tor (2500): n0001, n0003, n0005, n0007, n0009, … and 2495 more",
        "  NotSelectedByAdvertisement (2500): n0000, n0002, n0004, n0006, n0008, … and 2495 more",
        "  NodeLabeledExcludeBalancers (1): gone",
        "  NodeNetworkUnavailable (1): down",
    ]


def test_a_withdrawn_ip_says_why_once_not_per_node() -> None:
    withdrawn = BGPAdvertisementWithdrawn(ip="10.1.0.7", reason=BGPWithdrawReason.NO_SERVING_ENDPOINTS)
    in_force = InForce(l2_advertisements=(), pool_labels={}, bgp_advertisements=1, peers={})
    assert bgp_lines("10.1.0.7", in_force, NODES, withdrawn) == ["10.1.0.7: BGP — nothing advertised"
                                                                 " (NoServingEndpoints)."]


def test_grouping_lists_few_names_and_orders_by_count() -> None:
    assert grouped([("b", "X"), ("a", "X"), ("c", "Y")], indent="") == ["X (2): a, b", "Y (1): c"]


def test_a_node_whose_announcer_cannot_answer_says_why() -> None:
    advertisement = parse_config_object({
        "apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
        "metadata": {"name": "lan", "namespace": "metallb-system"},
        "spec": {"ipAddressPools": ["lan"], "interfaces": ["eth0"]},
    })  # fmt: skip
    assert isinstance(advertisement, L2Advertisement)
    in_force = InForce(l2_advertisements=(advertisement,), pool_labels={}, bgp_advertisements=0, peers={})
    scope = ServiceScope(pool="lan", labels={}, policy=TrafficPolicy.CLUSTER, serving=frozenset({"a", "b", "c", "d"}))
    nodes = [NodeFacts(name) for name in "abcd"]
    placement = L2PlacementDecided(ip="10.0.0.5", node="a", services=(), reason="test")
    dataplanes = {
        "a": DataPlaneReported(node="a", instance="1", ready=True, interfaces=("eth0",)),
        "b": DataPlaneReported(node="b", instance="1", ready=True, interfaces=("eth1",)),  # eth0 down
        "c": DataPlaneReported(node="c", instance="1", ready=False),
    }  # d: an announcer that sends no reports
    assert l2_lines("10.0.0.5", scope, in_force, nodes, placement, dataplanes)[1:] == [
        "  Announces (1): a",
        "  CannotAnswer (no interface up among eth0) (1): b",
        "  CannotAnswer (not ready) (1): c",
        "  Standby (1): d",
    ]
