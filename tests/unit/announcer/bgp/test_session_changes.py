"""A session handed the prefixes that changed, not its whole set: only those go on the wire, and the session
still holds the whole desired set, which a session established again sends in full."""

from __future__ import annotations

from dataclasses import replace

from services.announcer.bgp.events import AdvertisementsSent
from services.announcer.bgp.rib import Route
from tests.unit.announcer.bgp.test_session import A_CONFIG, B_CONFIG, Pair, attrs_dict, net

EDGE = Route(communities=(0xFDE80007,))
MANY = {net(f"10.1.{i // 256}.{i % 256}/32"): EDGE for i in range(2000)}


def sent_prefixes(pair: Pair) -> tuple[set[str], set[str]]:
    """What went on the wire since it was last cleared: (announced, withdrawn) prefixes."""
    updates = pair.updates_to_b()
    announced = {str(p) for u in updates for _, p in u.announced()}
    withdrawn = {str(p) for u in updates for _, p in u.withdrawals()}
    return announced, withdrawn


def test_only_the_changed_prefixes_go_on_the_wire() -> None:
    pair = Pair.established()
    pair.a.set_advertisements(MANY, pair.now)
    pair.pump()
    pair.wire_a_to_b.clear()

    moved = Route(communities=(0xFDE80008,))
    pair.a.change_advertisements(
        {net("10.1.0.1/32"): None, net("10.1.0.2/32"): moved, net("10.9.0.1/32"): EDGE, net("10.1.0.3/32"): EDGE},
        pair.now,
    )
    pair.pump()

    assert sent_prefixes(pair) == ({"10.1.0.2/32", "10.9.0.1/32"}, {"10.1.0.1/32"})  # 10.1.0.3: unchanged
    sent = [e for e in pair.events_a if isinstance(e, AdvertisementsSent)][-1]
    assert (sent.announced, sent.withdrawn) == (2, 1)
    table = pair.received_by_b()
    assert len(table) == 2000 and net("10.1.0.1/32") not in table and net("10.9.0.1/32") in table
    assert attrs_dict(table[net("10.1.0.2/32")])["COMMUNITIES"] == ["65000:8"]
    assert len(pair.a.desired) == 2000 and pair.a.desired[net("10.1.0.2/32")] == moved
    assert pair.a.advertised == 2000


def test_a_prefix_withdrawn_that_was_never_given_sends_nothing() -> None:
    pair = Pair.established()
    pair.a.set_advertisements({net("198.51.100.5/32"): EDGE}, pair.now)
    pair.pump()
    pair.wire_a_to_b.clear()
    pair.a.change_advertisements({net("198.51.100.6/32"): None}, pair.now)
    pair.pump()
    assert pair.wire_a_to_b == []


def test_changes_before_establishment_and_after_a_reconnect_send_the_whole_set() -> None:
    pair = Pair.connected()
    pair.a.set_advertisements({net("198.51.100.5/32"): EDGE})
    pair.a.change_advertisements({net("198.51.100.6/32"): EDGE})  # not established yet: held, nothing sent
    pair.pump()
    assert sent_prefixes(pair)[0] == {"198.51.100.5/32", "198.51.100.6/32"}

    pair.a.connection_lost(pair.now)
    pair.a.change_advertisements({net("198.51.100.5/32"): None, net("198.51.100.7/32"): EDGE})  # while down
    pair.events_b.clear()
    pair.reconnect()
    pair.pump()
    assert sent_prefixes(pair) == ({"198.51.100.6/32", "198.51.100.7/32"}, set())  # the whole set, as it is now
    assert set(pair.received_by_b()) == {net("198.51.100.6/32"), net("198.51.100.7/32")}


def test_a_changed_prefix_the_session_cannot_carry_is_unroutable_until_withdrawn() -> None:
    pair = Pair.established(replace(A_CONFIG, next_hop_v6=None), B_CONFIG)
    pair.a.set_advertisements({net("198.51.100.5/32"): EDGE}, pair.now)
    pair.a.change_advertisements({net("2001:db8::/64"): EDGE}, pair.now)
    pair.pump()
    assert pair.a.unroutable == [net("2001:db8::/64")] and pair.a.carried == 1
    pair.a.change_advertisements({net("2001:db8::/64"): None}, pair.now)
    assert pair.a.unroutable == [] and pair.a.carried == 1
    assert set(pair.received_by_b()) == {net("198.51.100.5/32")}


def test_a_shared_set_is_the_owners_own_changed_in_place_and_then_named() -> None:
    pair = Pair.established()
    owned = {net("198.51.100.5/32"): EDGE}
    pair.a.set_advertisements(owned, pair.now, shared=True)
    pair.pump()
    pair.wire_a_to_b.clear()
    assert pair.a.desired is owned  # no copy of the owner's map

    owned[net("198.51.100.6/32")] = EDGE  # the owner (the plan) changes its map, then names the change
    del owned[net("198.51.100.5/32")]
    pair.a.change_advertisements({net("198.51.100.6/32"): EDGE, net("198.51.100.5/32"): None}, pair.now)
    pair.pump()
    assert sent_prefixes(pair) == ({"198.51.100.6/32"}, {"198.51.100.5/32"})
    assert set(pair.received_by_b()) == {net("198.51.100.6/32")}

    given = {net("198.51.100.9/32"): EDGE}
    pair.a.set_advertisements(given, pair.now)  # not shared: a copy, the caller's map left alone
    pair.a.change_advertisements({net("198.51.100.9/32"): None}, pair.now)
    assert given == {net("198.51.100.9/32"): EDGE} and pair.a.desired == {}
