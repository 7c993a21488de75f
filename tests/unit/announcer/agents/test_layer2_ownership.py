"""Which IPs a node answers for: newest epoch wins, conflicts yield only while partitioned, resync forgets, and
only the IPs the node holds are kept."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from schemas.events import AnnouncementMode, L2PlacementCleared, L2PlacementDecided, ServiceId
from services.announcer.agents.layer2_ownership import (
    HANDOVER,
    Answering,
    Applied,
    ConflictVerdict,
    Connectivity,
    Ownership,
    Placement,
    answering,
    connectivity,
    placement_of,
    report_changes,
)

V4 = ip_address("192.0.2.10")
V6 = ip_address("2001:db8::10")
WEB = ServiceId(namespace="default", name="web")
CONNECTED, PARTITIONED = Connectivity.CONNECTED, Connectivity.PARTITIONED


def decided(ip: str, node: str, epoch: int, *interfaces: str) -> Placement | None:
    event = L2PlacementDecided(ip=ip, node=node, services=(WEB,), interfaces=interfaces)
    return placement_of(event, epoch=epoch)


def cleared(ip: str, epoch: int) -> Placement | None:
    return placement_of(L2PlacementCleared(ip=ip), epoch=epoch)


def test_placement_of_reads_decisions_and_clears() -> None:
    assert decided("192.0.2.10", "a", 7, "eth0") == Placement(
        ip=V4, epoch=7, node="a", interfaces=frozenset({"eth0"}), services=(WEB,)
    )
    assert cleared("2001:db8::10", 9) == Placement(ip=V6, epoch=9, node=None)
    assert decided("not-an-ip", "a", 3) is None


def test_a_story_of_epochs() -> None:
    """Rows build on each other: each names what the table holds and what node `a` answers for after it."""
    mine = Ownership("a")
    steps: list[tuple[Placement | None, Applied, set[str]]] = [
        (decided("192.0.2.10", "a", 10), Applied.NEWER, {"192.0.2.10"}),
        # another node's placement of an IP this node never held: not kept
        (decided("2001:db8::10", "b", 11), Applied.ELSEWHERE, {"192.0.2.10"}),
        # a replayed older decision never undoes a newer one
        (decided("192.0.2.10", "b", 4), Applied.STALE, {"192.0.2.10"}),
        (decided("192.0.2.10", "a", 10), Applied.STALE, {"192.0.2.10"}),
        # the IP moves away, then comes back with a newer epoch
        (decided("192.0.2.10", "b", 12), Applied.NEWER, set()),
        (decided("2001:db8::10", "a", 13, "eth1"), Applied.NEWER, {"2001:db8::10"}),
        (decided("192.0.2.10", "a", 14), Applied.NEWER, {"192.0.2.10", "2001:db8::10"}),
        # cleared: nobody answers, and an older decision cannot resurrect it
        (cleared("192.0.2.10", 15), Applied.NEWER, {"2001:db8::10"}),
        (decided("192.0.2.10", "a", 14), Applied.STALE, {"2001:db8::10"}),
        (decided("bogus", "a", 16), Applied.INVALID, {"2001:db8::10"}),
    ]
    for placement, applied, answered in steps:
        assert mine.apply(placement) is applied, placement
        assert {str(ip) for ip in mine.desired()} == answered, placement
    assert mine.desired()[V6].interfaces == frozenset({"eth1"})


def test_conflicts_are_kept_while_connected_and_yielded_while_partitioned() -> None:
    mine = Ownership("a")
    mine.apply(decided("192.0.2.10", "a", 5))
    mine.apply(decided("2001:db8::10", "a", 6))
    mine.apply(decided("192.0.2.99", "b", 7))
    assert mine.conflict(V4, connectivity=CONNECTED) is ConflictVerdict.KEEP
    assert set(mine.desired()) == {V4, V6}
    assert mine.conflict(ip_address("192.0.2.99"), connectivity=PARTITIONED) is ConflictVerdict.NOT_OURS
    assert mine.conflict(V4, connectivity=PARTITIONED) is ConflictVerdict.YIELD
    assert set(mine.desired()) == {V6}
    assert mine.conflict(V4, connectivity=PARTITIONED) is ConflictVerdict.NOT_OURS  # already yielded
    assert mine.yielded() == {V4}
    # A newer placement naming us again (the ipam decided after the yield) is answered.
    mine.apply(decided("192.0.2.10", "a", 20))
    assert set(mine.desired()) == {V4, V6}


def test_resync_replaces_the_table_and_forgets_yields() -> None:
    mine = Ownership("a")
    mine.apply(decided("192.0.2.10", "a", 5))
    mine.apply(decided("2001:db8::10", "a", 6))
    mine.conflict(V4, connectivity=PARTITIONED)
    mine.conflict(V6, connectivity=PARTITIONED)
    assert mine.desired() == {}
    # Back on the bus: V4 moved to b meanwhile, V6 is still ours at the same epoch.
    # It answered for V4 until now (owned): V4's newest placement is kept, for the withdrawal to name it.
    others = (decided("192.0.2.10", "b", 9), decided("2001:db8::10", "a", 6), decided("192.0.2.77", "c", 8))
    mine.resynced((p for p in others if p), owned={V4})
    assert set(mine.desired()) == {V6}
    assert mine.yielded() == frozenset()
    assert mine.newest(V4) == decided("192.0.2.10", "b", 9)
    assert set(mine.held()) == {V4, V6}  # not 192.0.2.77: never this node's


def test_only_the_ips_this_node_holds_are_kept() -> None:
    mine = Ownership("a")
    for index in range(100):
        assert mine.apply(decided(f"198.51.100.{index}", "b", index + 1)) is Applied.ELSEWHERE
    assert mine.apply(cleared("198.51.100.200", 200)) is Applied.ELSEWHERE
    assert list(mine.held()) == [] and mine.newest(ip_address("198.51.100.1")) is None
    # Once placed here, the IP is held: where it goes next (and its epoch) is kept.
    assert mine.apply(decided("198.51.100.1", "a", 300)) is Applied.NEWER
    assert mine.apply(decided("198.51.100.1", "b", 301)) is Applied.NEWER
    assert mine.newest(ip_address("198.51.100.1")) == decided("198.51.100.1", "b", 301)
    assert mine.apply(decided("198.51.100.1", "c", 299)) is Applied.STALE
    assert mine.desired() == {}


@pytest.mark.parametrize(
    ("connected", "last_contact", "now", "expected"),
    [
        (True, 10.0, 10.2, CONNECTED),
        (True, 10.0, 10.31, PARTITIONED),
        (False, 10.0, 10.0, PARTITIONED),
        (True, None, 10.0, PARTITIONED),
    ],
)
def test_connectivity(connected: bool, last_contact: float | None, now: float, expected: Connectivity) -> None:
    assert connectivity(connected=connected, last_contact=last_contact, now=now, stale_after=0.3) is expected


def test_answering_keeps_only_ips_an_interface_answers_for() -> None:
    desired = {V4: decided("192.0.2.10", "a", 5), V6: decided("2001:db8::10", "a", 6)}
    announced = {V4: ("eth1", "eth0")}
    result = answering({ip: p for ip, p in desired.items() if p}, announced)
    assert result == {V4: Answering(interfaces=("eth0", "eth1"), epoch=5, services=(WEB,))}


def test_reports_only_changes() -> None:
    one = Answering(interfaces=("eth0",), epoch=5, services=(WEB,))
    two = Answering(interfaces=("eth0", "eth1"), epoch=5, services=(WEB,))
    assert report_changes(node="a", reported={V4: one}, answering={V4: one}, newest_epoch={}) == []
    [(ip, started)] = report_changes(node="a", reported={}, answering={V4: one}, newest_epoch={})
    assert (ip, started.announcing, started.interfaces, started.placement_epoch) == (V4, True, ("eth0",), 5)
    assert started.mode is AnnouncementMode.L2 and started.node == "a" and started.services == (WEB,)
    [(_, widened)] = report_changes(node="a", reported={V4: one}, answering={V4: two}, newest_epoch={})
    assert widened.interfaces == ("eth0", "eth1")
    changes = report_changes(node="a", reported={V4: one, V6: one}, answering={}, newest_epoch={V4: 9})
    assert [(str(ip), e.announcing, e.interfaces, e.placement_epoch) for ip, e in changes] == [
        ("192.0.2.10", False, (), 9),
        ("2001:db8::10", False, (), 5),
    ]


def test_a_placement_on_another_node_keeps_only_its_epoch_and_node() -> None:
    service = ServiceId(namespace="default", name="web")
    event = L2PlacementDecided(ip="192.0.2.5", node="b", services=(service,), interfaces=("eth0",))
    assert placement_of(event, epoch=3, node="b") == Placement(
        ip=ip_address("192.0.2.5"), epoch=3, node="b", interfaces=frozenset({"eth0"}), services=(service,))  # fmt: skip
    assert placement_of(event, epoch=3, node="a") == Placement(ip=ip_address("192.0.2.5"), epoch=3, node="b")


def test_an_ip_moved_away_is_answered_until_its_new_owner_claims_it_or_the_handover_ends() -> None:
    own = Ownership("node-a")
    own.apply(decided(str(V4), "node-a", 1, "eth0"), now=0.0)
    # rebalanced to node-b: still answered here, under the placement it was answered under
    assert own.apply(decided(str(V4), "node-b", 2), now=10.0) is Applied.NEWER
    assert own.desired()[V4].epoch == 1
    assert own.handovers_end() == 10.0 + HANDOVER
    # node-b's takeover on the wire: handed over, silent here at once
    assert own.conflict(V4, connectivity=CONNECTED) is ConflictVerdict.HANDED_OVER
    assert own.desired() == {}
    assert own.handovers_end() is None


def test_a_handover_nobody_claims_ends_and_a_move_back_keeps_answering() -> None:
    own = Ownership("node-a")
    own.apply(decided(str(V4), "node-a", 1, "eth0"), now=0.0)
    own.apply(decided(str(V4), "node-b", 2), now=10.0)
    assert not own.end_handovers(10.0 + HANDOVER - 0.1)
    assert V4 in own.desired()
    assert own.end_handovers(10.0 + HANDOVER)
    assert own.desired() == {}
    # node-b was cut off just as it was chosen: the ipam moves the IP back while it is still answered here
    own.apply(decided(str(V4), "node-a", 3, "eth0"), now=0.0)
    own.apply(decided(str(V4), "node-b", 4), now=20.0)
    assert own.apply(decided(str(V4), "node-a", 5, "eth0"), now=21.0) is Applied.NEWER
    assert own.desired()[V4].epoch == 5
    assert own.handovers_end() is None


def test_a_clear_or_a_move_without_a_time_drops_the_ip_at_once() -> None:
    own = Ownership("node-a")
    own.apply(decided(str(V4), "node-a", 1), now=0.0)
    own.apply(cleared(str(V4), 2), now=1.0)
    assert own.desired() == {}
    own.apply(decided(str(V6), "node-a", 3))
    own.apply(decided(str(V6), "node-b", 4))  # the claim check's read: another station already answers it
    assert own.desired() == {}
