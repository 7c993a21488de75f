"""What announcers can answer on, as ipam places by it: readiness, link loss, flap damping, earlier releases."""

from __future__ import annotations

from typing import Any

from schemas.events import DataPlaneReported, L2PlacementDecided
from services.ipam.dataplane_rule import STARTING, Answering, DataPlanes
from services.ipam.decider import Decider
from tests.builders import pool, service
from tests.builders_l2 import endpoints, l2, node

NODES = ("a", "b", "c")
LIVE = frozenset(NODES)


def report(node: str, *interfaces: str, instance: str = "1", ready: bool = True,
           named_only: tuple[str, ...] = ()) -> DataPlaneReported:
    return DataPlaneReported(node=node, instance=f"{node}-{instance}", ready=ready, interfaces=interfaces,
                             named_only=named_only)


def listening_rule(*, at: float = 0.0) -> DataPlanes:
    rule = DataPlanes()
    rule.listening(at)
    return rule


# --- the rule, as a story ---------------------------------------------------------------------------


def test_an_announcer_counts_once_ready_and_as_long_as_its_links_answer() -> None:
    rule = listening_rule()
    # a running cluster: every announcer reported before ipam listened
    for name in NODES:
        assert rule.reported(report(name, "eth0"), 0.0)
        rule.heard(name, f"{name}-1", 0.1)
    assert rule.view()["a"] == Answering(frozenset({"eth0"}))

    # a's data link goes down: at once it answers nothing
    assert rule.reported(report("a"), 10.0)
    assert not rule.view()["a"].anything
    # it comes back: held down 2 s (chosen only where nobody else can answer; what it held has moved for good)
    assert not rule.reported(report("a", "eth0"), 10.5)
    assert rule.view()["a"] == Answering(frozenset({"eth0"}), held_down=True)
    assert rule.next_change() == 10.5 + 2.0
    assert not rule.tick(12.0)
    assert rule.tick(12.5)
    assert rule.view()["a"] == Answering(frozenset({"eth0"}))
    # it flaps again within the minute: the return is held down twice as long
    assert rule.reported(report("a"), 13.0)
    assert not rule.reported(report("a", "eth0"), 13.2)
    assert rule.next_change() == 13.2 + 4.0
    assert rule.tick(17.2)
    # and twice as long again
    rule.reported(report("a"), 20.0)
    rule.reported(report("a", "eth0"), 20.1)
    assert rule.next_change() == 20.1 + 8.0
    # a loss during the hold-down: the return waits for a report that gives something back again
    rule.reported(report("a"), 21.0)
    assert rule.next_change() is None
    assert not rule.tick(30.0) and not rule.view()["a"].anything
    # no loss in the last minute: a return counts at once
    assert rule.reported(report("a", "eth0"), 90.0)
    assert rule.view()["a"].answers(())


def test_a_restarted_announcer_is_starting_until_it_says_it_is_ready() -> None:
    rule = listening_rule()
    rule.reported(report("a", "eth0"), 0.0)
    rule.heard("a", "a-1", 0.1)
    # a new instance says "not ready" before its first heartbeat
    assert rule.reported(report("a", instance="2", ready=False), 50.0)
    assert rule.heard("a", "a-2", 50.01)
    assert rule.view()["a"] == Answering(why="its announcer is not ready")
    # ready: at once (a new instance starts with no flaps counted)
    assert rule.reported(report("a", "eth0", instance="2"), 51.0)
    assert rule.view()["a"].answers(())


def test_a_new_instance_with_no_report_is_starting_then_trusted_as_an_earlier_release() -> None:
    rule = listening_rule()
    rule.heard("a", "a-1", 0.5)  # running before ipam listened: no report means one that sends none
    assert "a" not in rule.view()
    assert rule.heard("a", "a-2", 100.0)  # restarted, and no report yet
    assert rule.view()["a"] is STARTING
    assert rule.next_change() == 103.0
    assert rule.tick(103.0)
    assert "a" not in rule.view()  # an announcer that sends no reports answers anything, as before


def test_a_report_of_an_earlier_instance_does_not_speak_for_the_new_one() -> None:
    rule = listening_rule()
    rule.reported(report("a", "eth0"), 0.0)
    rule.heard("a", "a-1", 0.1)
    rule.heard("a", "a-2", 60.0)
    assert rule.view()["a"] is STARTING


def test_interfaces_named_by_an_advertisement() -> None:
    answering = Answering(frozenset({"eth0"}), frozenset({"dummy0"}))
    assert answering.answers(())
    assert answering.answers(("eth1", "eth0"))
    assert answering.answers(("dummy0",))  # excluded unless named
    assert not answering.answers(("eth1",))
    assert not Answering(frozenset(), frozenset({"dummy0"})).answers(())


# --- placement by it --------------------------------------------------------------------------------


def active(*world: Any, answering: dict[str, Answering], services: int = 6) -> Decider:
    decider = Decider()
    names = [f"web{i}" for i in range(services)]
    for event in (*(node(n) for n in NODES), pool("lan", "192.168.10.0/24"), *(service(n) for n in names),
                  *(endpoints(n, *NODES) for n in names), *world):
        decider.load_observation(event)
    decider.set_live_nodes(LIVE, answering)
    decider.activate()
    return decider


def owners(decider: Decider) -> set[str]:
    return {placement.decision.node for placement in decider.ledger.placements.values()}


def test_ips_are_placed_only_where_the_announcer_can_answer() -> None:
    cannot = Answering(why="its announcer is not ready")
    decider = active(l2(), answering={"a": cannot, "b": cannot})
    assert owners(decider) == {"c"}
    assert len(decider.ledger.placements) == 6


def test_an_ip_leaves_a_node_whose_link_went_down_and_says_why() -> None:
    decider = active(l2(), answering={}, services=1)
    (first,) = owners(decider)
    out = decider.set_live_nodes(LIVE, {first: Answering()})
    (moved,) = [o.event for o in out if isinstance(o.event, L2PlacementDecided)]
    assert moved.node != first
    assert f"{first} cannot answer: no interface of its can answer" in moved.reason
    # the link back: the IP stays where it is (sticky)
    assert decider.set_live_nodes(LIVE, {first: Answering(frozenset({"eth0"}))}) == []


def test_an_advertisement_naming_interfaces_needs_one_of_them_up() -> None:
    eth1 = l2(interfaces=["eth1"])
    decider = active(eth1, answering={"a": Answering(frozenset({"eth0"})), "b": Answering(frozenset({"eth0"})),
                                      "c": Answering(frozenset({"eth0", "eth1"}))})
    assert owners(decider) == {"c"}


def test_a_node_held_down_after_flapping_is_chosen_only_where_nobody_else_can_answer() -> None:
    held = Answering(frozenset({"eth0"}), held_down=True)
    decider = active(l2(), answering={"a": held})
    assert "a" not in owners(decider)
    # b and c lose their links: the held-down node is better than a node that cannot answer at all
    out = decider.set_live_nodes(LIVE, {"a": held, "b": Answering(), "c": Answering()})
    assert {o.event.node for o in out if isinstance(o.event, L2PlacementDecided)} == {"a"}
    assert owners(decider) == {"a"}
