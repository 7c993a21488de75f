"""L2 placement as an operator sees it: which node answers for each IP, and when that changes."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import (
    Event,
    EventId,
    L2PlacementCleared,
    L2PlacementDecided,
    ServicePort,
)
from schemas.metallb.rules import EXCLUDE_LABEL
from services.ipam import placer as placer_module
from services.ipam.decider import Decider, Outgoing
from services.ipam.placement import Eligibility
from services.ipam.placer import Change, Kind, Placer, place
from tests.builders import pool, service, service_deleted
from tests.builders_l2 import endpoints, l2, labelled, node

NODES = ("a", "b", "c")


LAN = pool("lan", "192.168.10.0/24")
WEB = service("web")
WEB_EVERYWHERE = endpoints("web", *NODES)


def active(*world: Event, live: tuple[str, ...] = NODES) -> Decider:
    decider = Decider()
    for event in (*(node(n) for n in NODES), *world):
        decider.load_observation(event)
    decider.set_live_nodes(frozenset(live))
    decider.activate()
    return decider


def placed(decider: Decider) -> dict[str, str]:
    return {ip: p.decision.node for ip, p in sorted(decider.ledger.placements.items())}


def of_type(outgoing: list[Outgoing], kind: type[Event]) -> list[Any]:
    return [o.event for o in outgoing if isinstance(o.event, kind)]


# --- who is eligible ---------------------------------------------------------------------------

ANYWHERE = set(NODES)

ELIGIBILITY: list[tuple[str, list[Event], set[str]]] = [
    ("an advertisement without selectors: any live node", [l2()], ANYWHERE),
    ("no L2Advertisement: a BGP-only pool gets no placement", [], set()),
    ("an advertisement naming another pool", [l2(ipAddressPools=["other"])], set()),
    ("an advertisement naming the pool", [l2(ipAddressPools=["lan"])], ANYWHERE),
    (
        "a pool selector matching the pool's labels",
        [labelled(LAN, tier="edge"), l2(ipAddressPoolSelectors=[{"matchLabels": {"tier": "edge"}}])],
        ANYWHERE,
    ),
    ("a pool selector not matching", [l2(ipAddressPoolSelectors=[{"matchLabels": {"tier": "edge"}}])], set()),
    ("a service selector not matching", [l2(serviceSelectors=[{"matchLabels": {"app": "db"}}])], set()),
    (
        "a service selector matching",
        [service("web", labels={"app": "web"}), l2(serviceSelectors=[{"matchLabels": {"app": "web"}}])],
        ANYWHERE,
    ),
    (
        "a node selector",
        [node("b", zone="x"), node("c", zone="x"), l2(nodeSelectors=[{"matchLabels": {"zone": "x"}}])],
        {"b", "c"},
    ),
    (
        "two advertisements: the union of their nodes",
        [l2("one", nodeSelectors=[{"matchLabels": {"kubernetes.io/hostname": "a"}}]),
         l2("two", nodeSelectors=[{"matchLabels": {"kubernetes.io/hostname": "c"}}])],
        {"a", "c"},
    ),
    ("NetworkUnavailable nodes are left out", [l2(), node("a", unavailable=True), node("b", unavailable=True)], {"c"}),
    ("nodes excluded from load balancers are left out", [l2(), node("a", **{EXCLUDE_LABEL: ""})], {"b", "c"}),
    ("no serving endpoint anywhere: no placement", [l2(), endpoints("web")], set()),
    ("externalTrafficPolicy Local: only where an endpoint serves", [
        l2(), service("web", external_traffic_policy="Local"), endpoints("web", "b")], {"b"}),
    ("Local, and that node unavailable: nowhere", [
        l2(), service("web", external_traffic_policy="Local"), endpoints("web", "b"), node("b", unavailable=True)],
        set()),
]


@pytest.mark.parametrize(("story", "world", "nodes"), ELIGIBILITY, ids=[row[0] for row in ELIGIBILITY])
def test_eligible_nodes(story: str, world: list[Event], nodes: set[str]) -> None:
    decider = active(LAN, WEB, WEB_EVERYWHERE, *world)
    assert (decider.layer2.eligible("192.168.10.0") or set()) == nodes
    if nodes:
        assert placed(decider)["192.168.10.0"] in nodes
    else:
        assert placed(decider) == {}


def test_a_node_whose_announcer_is_not_live_is_not_eligible() -> None:
    decider = active(LAN, l2(), WEB, WEB_EVERYWHERE, live=("b",))
    assert placed(decider) == {"192.168.10.0": "b"}


def test_a_node_kubernetes_does_not_know_is_not_eligible() -> None:
    decider = active(LAN, l2(), WEB, endpoints("web", "ghost"), live=("ghost",))
    assert placed(decider) == {}


def test_interfaces_are_the_union_of_the_matching_advertisements() -> None:
    decider = active(LAN, l2("one", interfaces=["eth1"]), l2("two", interfaces=["eth0"]), WEB, WEB_EVERYWHERE)
    assert decider.ledger.placements["192.168.10.0"].decision.interfaces == ("eth0", "eth1")
    decider = active(LAN, l2("one", interfaces=["eth1"]), l2("two"), WEB, WEB_EVERYWHERE)
    assert decider.ledger.placements["192.168.10.0"].decision.interfaces == ()


# --- stories -----------------------------------------------------------------------------------


def test_local_traffic_follows_the_endpoints_with_a_newer_epoch() -> None:
    local = service("web", external_traffic_policy="Local")
    decider = active(LAN, l2(), local, endpoints("web", "b"))
    first = decider.ledger.placements["192.168.10.0"]
    assert first.decision.node == "b"
    [moved] = of_type(decider.observe(endpoints("web", "c")), L2PlacementDecided)
    assert moved.node == "c" and moved.reason.startswith("NodeNotEligible")
    assert decider.ledger.placements["192.168.10.0"].epoch > first.epoch
    [cleared] = of_type(decider.observe(endpoints("web")), L2PlacementCleared)
    assert cleared.ip == "192.168.10.0"
    assert decider.observe(endpoints("web")) == []


def test_a_shared_ip_stays_on_one_node_eligible_for_all_its_services() -> None:
    shared = {"metallb.io/allow-shared-ip": "k", "metallb.io/loadBalancerIPs": "192.168.10.7"}
    local = {"external_traffic_policy": "Local", "selector": {"app": "x"}, "annotations": shared}
    one = service("one", **local)
    two = service("two", ports=(ServicePort(port=443),), **local)
    decider = active(LAN, l2(), one, two, endpoints("one", "b", "c"), endpoints("two", "a", "b"))
    decision = decider.ledger.placements["192.168.10.7"].decision
    assert decision.node == "b" and [s.name for s in decision.services] == ["one", "two"]
    [moved] = of_type(decider.observe(endpoints("two", "c")), L2PlacementDecided)
    assert moved.node == "c"
    # a Service without a serving endpoint does not hold the IP back for the other
    [kept] = of_type(decider.observe(endpoints("two")), L2PlacementDecided)
    assert kept.node == "c" and [s.name for s in kept.services] == ["one"]
    assert decider.layer2.eligible("192.168.10.7") == {"b", "c"}


def test_a_dual_stack_pair_stays_together_and_moves_together() -> None:
    pools = pool("lan", "192.168.10.0/24", "fd00::/120")
    dual = service("web", ip_families=("IPv4", "IPv6"), ip_family_policy="RequireDualStack",
                   cluster_ips=("10.96.0.10", "fd96::10"))
    decider = active(pools, l2(), dual, WEB_EVERYWHERE)
    nodes = set(placed(decider).values())
    assert len(placed(decider)) == 2 and len(nodes) == 1
    [gone] = nodes
    out = decider.set_live_nodes(frozenset(NODES) - {gone})
    assert len(of_type(out, L2PlacementDecided)) == 2 and len(set(placed(decider).values()) - {gone}) == 1


def test_placements_are_sticky_and_balanced_and_rebalance_only_past_fair_share_plus_one() -> None:
    services = [e for i in range(30) for e in (service(f"s{i}"), endpoints(f"s{i}", *NODES))]
    decider = active(LAN, l2(), *services)
    assert Counter(placed(decider).values()) == {"a": 10, "b": 10, "c": 10}
    # a new node takes nothing while nobody is above fair share (30 / 4 = 7.5) + 1 ... it is: rebalance
    before = placed(decider)
    out = decider.observe(node("d"))  # known, but its announcer is not live yet: nothing changes
    assert out == []
    # a dies: its ten IPs spread over b and c, nobody else moves
    out = decider.set_live_nodes(frozenset({"b", "c"}))
    moves = of_type(out, L2PlacementDecided)
    assert {m.ip for m in moves} == {ip for ip, n in before.items() if n == "a"}
    assert Counter(placed(decider).values()) == {"b": 15, "c": 15}
    # a returns: only as many move back as fair share (10) + 1 requires
    out = decider.set_live_nodes(frozenset(NODES))
    loads = Counter(placed(decider).values())
    assert max(loads.values()) <= 11 and loads["a"] == 30 - loads["b"] - loads["c"]
    assert len(of_type(out, L2PlacementDecided)) == loads["a"] and loads["a"] >= 8
    assert all(m.reason.startswith("Rebalanced") for m in of_type(out, L2PlacementDecided))
    # nothing else changes: the same liveness again decides nothing
    assert decider.set_live_nodes(frozenset(NODES)) == []


def test_preferred_nodes_are_chosen_first_but_an_ip_does_not_return_to_them() -> None:
    prefer_b = l2(preferredNodeSelectors=[{"weight": 50, "preference": {"matchLabels": {"role": "primary"}}}])
    services = [e for i in range(4) for e in (service(f"s{i}"), endpoints(f"s{i}", *NODES))]
    decider = active(LAN, prefer_b, node("b", role="primary"), *services)
    assert set(placed(decider).values()) == {"b"}
    decider.set_live_nodes(frozenset({"a", "c"}))
    assert set(placed(decider).values()) == {"a", "c"}
    assert decider.set_live_nodes(frozenset(NODES)) == []  # sticky: no move back while a and c are eligible


def test_nodes_observed_in_one_batch_are_placed_for_at_the_batch_end_caused_by_the_first() -> None:
    """A list of thousands of Nodes is decided once, at its batch's end, not once per Node; the IP whose node
    was excluded moves then, and the move names the first Node observation of the batch as its cause."""
    decider = active(LAN, l2(), WEB, WEB_EVERYWHERE)
    owner = placed(decider)["192.168.10.0"]
    others = [n for n in NODES if n != owner]
    excluded = node(owner, version="2", **{EXCLUDE_LABEL: ""})
    assert decider.observe(node(others[0], version="2"), cause=EventId("first"), defer_to_batch=True) == []
    assert decider.observe(excluded, cause=EventId("second"), defer_to_batch=True) == []
    assert placed(decider)["192.168.10.0"] == owner  # nothing decided yet
    out = decider.report_usage()
    [moved] = of_type(out, L2PlacementDecided)
    assert moved.node in others
    assert {o.causation_id for o in out if isinstance(o.event, L2PlacementDecided)} == {"first"}


def test_a_leaving_node_hands_over_and_a_released_ip_is_cleared() -> None:
    decider = active(LAN, l2(), WEB, WEB_EVERYWHERE)
    owner = placed(decider)["192.168.10.0"]
    [moved] = of_type(decider.set_live_nodes(frozenset(NODES) - {owner}), L2PlacementDecided)
    assert moved.node != owner and f"{owner} is not live" in moved.reason
    [cleared] = of_type(decider.observe(service_deleted("web")), L2PlacementCleared)
    assert cleared.ip == "192.168.10.0" and cleared.reason.startswith("Released")
    assert placed(decider) == {}


def test_no_live_announcer_clears_and_the_first_one_back_takes_everything() -> None:
    decider = active(LAN, l2(), WEB, WEB_EVERYWHERE)
    assert len(of_type(decider.set_live_nodes(frozenset()), L2PlacementCleared)) == 1
    [back] = of_type(decider.set_live_nodes(frozenset({"c"})), L2PlacementDecided)
    assert back.node == "c"


def test_an_advertisement_removed_clears_its_placements() -> None:
    decider = active(LAN, l2(), WEB, WEB_EVERYWHERE)
    out = decider.observe(l2(ipAddressPoolSelectors=[{"matchLabels": {"tier": "edge"}}], version="2"))
    [cleared] = of_type(out, L2PlacementCleared)
    assert cleared.reason.startswith("NotAdvertised")


def test_bgp_only_places_nothing_until_an_advertisement_comes_and_its_removal_clears_again() -> None:
    decider = active(LAN, WEB, WEB_EVERYWHERE)
    assert of_type(decider.observe(service("db")), L2PlacementDecided) == []
    assert of_type(decider.observe(endpoints("db", "b")), L2PlacementDecided) == []
    assert decider.layer2.eligible("192.168.10.0") is None
    added = of_type(decider.observe(l2()), L2PlacementDecided)
    assert sorted(p.ip for p in added) == ["192.168.10.0", "192.168.10.1"]
    assert decider.layer2.eligible("192.168.10.1") == frozenset(NODES)
    unselected = l2(ipAddressPoolSelectors=[{"matchLabels": {"tier": "edge"}}], version="2")
    cleared = of_type(decider.observe(unselected), L2PlacementCleared)
    assert sorted(c.ip for c in cleared) == ["192.168.10.0", "192.168.10.1"]
    assert placed(decider) == {}


def test_a_restarted_decider_keeps_every_placement() -> None:
    services = [e for i in range(9) for e in (service(f"s{i}"), endpoints(f"s{i}", *NODES))]
    world = (*(node(n) for n in NODES), LAN, l2(), *services)
    first = Decider()
    for event in world:
        first.load_observation(event)
    first.set_live_nodes(frozenset(NODES))
    history = first.activate()
    assert len(of_type(history, L2PlacementDecided)) == 9
    replica = Decider()
    for outgoing in history:
        replica.load_decision(outgoing.event, outgoing.sequence)
    for event in world:
        replica.load_observation(event)
    replica.set_live_nodes(frozenset(NODES))
    assert of_type(replica.activate(), L2PlacementDecided) == []
    assert placed(replica) == placed(first)


# --- properties ------------------------------------------------------------------------------


NODE_NAMES = [f"n{i}" for i in range(8)]


@st.composite
def placement_inputs(draw: st.DrawFn) -> dict[str, tuple[int, Eligibility]]:
    count = draw(st.integers(1, 40))
    groups: dict[str, tuple[int, Eligibility]] = {}
    for index in range(count):
        nodes = frozenset(draw(st.sets(st.sampled_from(NODE_NAMES), max_size=len(NODE_NAMES))))
        groups[f"10.0.{index // 256}.{index % 256}"] = (draw(st.sampled_from([1, 1, 1, 2])), Eligibility(nodes, nodes))
    return groups


def _check_balance(groups: dict[str, tuple[int, Eligibility]], result: dict[str, str | None]) -> None:
    loads = Counter[str]()
    for key, where in result.items():
        if where is not None:
            loads[where] += groups[key][0]
    for key, where in result.items():
        weight, eligible = groups[key]
        if not eligible.nodes:
            assert where is None
            continue
        assert where in eligible.nodes
        fair = sum(loads[n] for n in eligible.nodes) / len(eligible.nodes)
        assert loads[where] <= fair + max(1, weight), (key, where, dict(loads))


@given(placement_inputs())
@settings(max_examples=100, deadline=None)
def test_no_node_holds_more_than_its_fair_share_plus_one(groups: dict[str, tuple[int, Eligibility]]) -> None:
    _check_balance(groups, place(groups))


@given(placement_inputs(), st.data())
@settings(max_examples=100, deadline=None)
def test_the_bound_holds_from_any_current_placement(groups: dict[str, tuple[int, Eligibility]],
                                                    data: st.DataObject) -> None:
    current = {key: data.draw(st.sampled_from(NODE_NAMES)) for key in groups}
    result = place(groups, current)
    _check_balance(groups, result)
    assert place(groups, {k: v for k, v in result.items() if v is not None}) == result  # nothing more to move


@given(placement_inputs(), st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_placement_does_not_depend_on_input_order(groups: dict[str, tuple[int, Eligibility]],
                                                   shuffler: random.Random) -> None:
    keys = list(groups)
    shuffler.shuffle(keys)
    assert place({k: groups[k] for k in keys}) == place(groups)


def test_an_even_cluster_is_balanced_exactly() -> None:
    everywhere = Eligibility(frozenset(NODE_NAMES), frozenset(NODE_NAMES))
    result = place({f"10.0.0.{i}": (1, everywhere) for i in range(100)})
    assert sorted(Counter(result.values()).values()) == [12, 12, 12, 12, 13, 13, 13, 13]


def test_a_configuration_change_placement_does_not_see_moves_nothing() -> None:
    decider = active(LAN, l2(), WEB, WEB_EVERYWHERE)
    out = decider.observe(pool("bgp-only", "10.9.0.0/24"))
    assert of_type(out, L2PlacementDecided) == [] and of_type(out, L2PlacementCleared) == []
    out = decider.observe(l2(version="2"))  # the same advertisement again
    assert of_type(out, L2PlacementDecided) == [] and of_type(out, L2PlacementCleared) == []


@given(placement_inputs(), st.sets(st.sampled_from(NODE_NAMES), max_size=4), st.sets(st.sampled_from(NODE_NAMES)))
@settings(max_examples=100, deadline=None)
def test_nodes_dying_and_returning_keep_the_bound_incrementally(
    groups: dict[str, tuple[int, Eligibility]], dying: set[str], returning: set[str]
) -> None:
    """The incremental path (one retarget per kind) ends where a fresh placement would stay put."""
    placer = Placer()
    kinds: dict[Eligibility, Kind] = {}
    for key in sorted(groups):
        weight, eligible = groups[key]
        placer.put(key, weight=weight, kind=kinds.setdefault(eligible, Kind(eligible)), current=None)
    placer.solve()
    for change in (dying, returning):
        for eligible, kind in kinds.items():
            nodes = (eligible.nodes - dying) | (eligible.nodes & returning if change is returning else set())
            placer.retarget(kind, Eligibility(frozenset(nodes), frozenset(nodes)))
        placer.solve()
        now = {key: (weight, kinds[eligible].eligible) for key, (weight, eligible) in groups.items()}
        result = {key: placer.node_of(key) for key in sorted(groups)}
        _check_balance(now, result)
        assert place(now, {k: v for k, v in result.items() if v is not None}) == result


def _incremental_story(groups: dict[str, tuple[int, Eligibility]], dying: set[str],
                       returning: set[str]) -> list[tuple[list[Change], dict[str, str | None]]]:
    """Place ``groups``, then let ``dying`` die and ``returning`` return: what each solve moved and the placement."""
    placer = Placer()
    kinds: dict[Eligibility, Kind] = {}
    for key in sorted(groups):
        weight, eligible = groups[key]
        placer.put(key, weight=weight, kind=kinds.setdefault(eligible, Kind(eligible)), current=None)
    story = [(placer.solve(), {key: placer.node_of(key) for key in sorted(groups)})]
    for change in (dying, returning):
        for eligible, kind in kinds.items():
            nodes = (eligible.nodes - dying) | (eligible.nodes & returning if change is returning else set())
            placer.retarget(kind, Eligibility(frozenset(nodes), frozenset(nodes)))
        story.append((placer.solve(), {key: placer.node_of(key) for key in sorted(groups)}))
    return story


@given(placement_inputs(), st.sets(st.sampled_from(NODE_NAMES), max_size=4), st.sets(st.sampled_from(NODE_NAMES)))
@settings(max_examples=100, deadline=None)
def test_large_candidate_sets_kept_by_load_place_exactly_as_scanned_ones(
    groups: dict[str, tuple[int, Eligibility]], dying: set[str], returning: set[str]
) -> None:
    """Sets of ``INDEXED_FROM`` nodes or more keep their nodes by load instead of being scanned: with every set
    kept so, the same story moves the same groups to the same nodes, step by step."""
    scanned = _incremental_story(groups, dying, returning)
    with patch.object(placer_module, "INDEXED_FROM", 2):
        kept = _incremental_story(groups, dying, returning)
    assert kept == scanned


def test_a_death_that_shrinks_a_groups_candidates_rebalances_among_the_rest() -> None:
    """n1 holds a two-IP group of its own and one IP eligible on n0, n1 and n2; n0 (3 IPs of its own) dies.
    The IP stays on n1 while n1 is within the bound of the three (3 ≤ 2 + 1); among n1 and n2 alone n1 holds 3
    against a fair 1.5, so it moves to n2 (the death changed no load on n1 or n2, only which nodes share the
    IP's candidates)."""
    everywhere = Eligibility(frozenset({"n0", "n1", "n2"}), frozenset({"n0", "n1", "n2"}))
    only_n0 = Eligibility(frozenset({"n0"}), frozenset({"n0"}))
    only_n1 = Eligibility(frozenset({"n1"}), frozenset({"n1"}))
    placer = Placer()
    kinds = {e: Kind(e) for e in (everywhere, only_n0, only_n1)}
    for key, weight, eligible, on in [("10.0.0.1", 1, only_n0, "n0"), ("10.0.0.2", 2, only_n0, "n0"),
                                      ("10.0.0.3", 1, everywhere, "n1"), ("10.0.0.4", 2, only_n1, "n1")]:  # fmt: skip
        placer.put(key, weight=weight, kind=kinds[eligible], current=on)
    assert placer.solve() == [] and placer.node_of("10.0.0.3") == "n1"

    gone = frozenset({"n1", "n2"})
    placer.retarget(kinds[everywhere], Eligibility(gone, gone))
    placer.retarget(kinds[only_n0], Eligibility(frozenset(), frozenset()))
    placer.solve()
    assert placer.node_of("10.0.0.3") == "n2"


def test_rebalancing_a_large_cluster_looks_for_the_least_loaded_node_once_per_move() -> None:
    """1 000 nodes, 300 of them holding a dual-stack pair (above fair share + 1 while fair is below one, and no move can
    lower the imbalance): placing one more IP looks for the least-loaded node for that IP and once for the
    rebalancing, not once per overloaded node (at 5 000 nodes that was minutes of a cold start's endpoints)."""
    nodes = frozenset(f"n{i:03d}" for i in range(1000))
    everywhere = Kind(Eligibility(nodes, nodes))
    searches = Counter[str]()

    class Counting(Placer):
        def _least_loaded(self, candidates: Any, group_hash: int) -> str:
            searches["least loaded"] += 1
            return super()._least_loaded(candidates, group_hash)

    placer = Counting()
    for i in range(300):
        placer.put(f"10.1.{i // 256}.{i % 256}", weight=2, kind=everywhere)
    placer.solve()
    assert sorted(set(placer.loads.values())) == [2] and len(placer.loads) == 300

    searches.clear()
    placer.put("10.2.0.1", weight=1, kind=everywhere)
    assert placer.solve()[0].new not in {node for node, load in placer.loads.items() if load == 2}
    assert searches["least loaded"] <= 2
