"""Announcer liveness with a passed-in clock: heard → live; the server reports its connection closed, or it
leaves → dead now; silent for the backstop → dead."""

from __future__ import annotations

from schemas.events import BusConnection
from services.ipam.liveness_rule import NO_CONNECTION, Liveness

A1 = BusConnection(server_id="S1", client_id=11)
B1 = BusConnection(server_id="S1", client_id=12)
A2 = BusConnection(server_id="S2", client_id=11)  # the same client id on another server: another connection


def beat(liveness: Liveness, node: str, now: float, *, connection: BusConnection = NO_CONNECTION,
         instance: str = "1", leaving: bool = False) -> bool:
    return liveness.heard(node, instance=instance, leaving=leaving, connection=connection, now=now)


def test_a_node_is_live_from_its_first_heartbeat_until_it_falls_silent_for_the_backstop() -> None:
    liveness = Liveness(backstop=5.0)
    assert beat(liveness, "a", 0.0, connection=A1)
    assert not beat(liveness, "a", 2.0, connection=A1)  # already live: no change
    assert liveness.next_deadline() == 2.0 + 5.0
    assert liveness.expire(now=6.9) == []
    assert liveness.expire(now=7.0) == ["a"]
    assert liveness.live == frozenset()
    assert liveness.next_deadline() is None


def test_the_connection_its_newest_heartbeat_named_closing_kills_it_at_once() -> None:
    liveness = Liveness(backstop=5.0)
    beat(liveness, "a", 0.0, connection=A1)
    beat(liveness, "b", 0.0, connection=B1)
    assert liveness.closed(A2, server_shutting_down=False, now=0.5) == []  # same client id, other server
    assert liveness.closed(A1, server_shutting_down=False, now=0.5) == ["a"]
    assert liveness.live == {"b"}
    assert not beat(liveness, "a", 0.51, connection=A1)  # sent before the close, read after it: ignored
    assert liveness.live == {"b"}
    assert beat(liveness, "a", 1.5, connection=BusConnection(server_id="S2", client_id=99))  # reconnected
    assert liveness.live == {"a", "b"}


def test_a_node_that_moved_to_another_connection_does_not_die_with_its_old_one() -> None:
    liveness = Liveness(backstop=5.0)
    beat(liveness, "a", 0.0, connection=A1)
    beat(liveness, "a", 1.0, connection=A2)
    assert liveness.closed(A1, server_shutting_down=False, now=1.1) == []
    assert liveness.live == {"a"}


def test_a_server_shutting_down_is_no_death_its_clients_reconnect_elsewhere() -> None:
    liveness = Liveness(backstop=5.0)
    beat(liveness, "a", 0.0, connection=A1)
    assert liveness.closed(A1, server_shutting_down=True, now=0.5) == []
    assert liveness.live == {"a"}
    assert liveness.expire(now=5.0) == ["a"]  # unless it never speaks again: the backstop


def test_a_node_naming_another_nodes_connection_only_harms_itself() -> None:
    liveness = Liveness(backstop=5.0)
    beat(liveness, "victim", 0.0, connection=A1)
    beat(liveness, "liar", 0.0, connection=A1)  # names the victim's connection
    beat(liveness, "liar", 0.1, connection=B1)  # and then its own
    assert liveness.closed(A1, server_shutting_down=False, now=0.2) == ["victim"]  # the victim's own close
    liveness = Liveness(backstop=5.0)
    beat(liveness, "victim", 0.0, connection=A1)
    beat(liveness, "liar", 0.0, connection=A1)
    assert liveness.closed(B1, server_shutting_down=False, now=0.2) == []  # the liar's real connection
    assert liveness.closed(A1, server_shutting_down=False, now=0.3) == ["liar", "victim"]  # it dies with it
    beat(liveness, "liar", 0.4, connection=A1)  # a closed connection named: still dead
    assert liveness.live == frozenset()


def test_a_heartbeat_naming_no_connection_is_judged_by_the_backstop_alone() -> None:
    liveness = Liveness(backstop=5.0)
    beat(liveness, "old", 0.0)
    assert liveness.closed(NO_CONNECTION, server_shutting_down=False, now=0.1) == []
    assert beat(liveness, "new", 0.2)  # nothing was recorded as closed
    assert liveness.live == {"old", "new"}


def test_closed_connections_are_remembered_for_a_while_only() -> None:
    liveness = Liveness(backstop=5.0, closed_memory=60.0)
    beat(liveness, "a", 0.0, connection=A1)
    liveness.closed(A1, server_shutting_down=False, now=0.1)
    liveness.expire(now=59.0)
    assert not beat(liveness, "a", 59.0, connection=A1)
    liveness.expire(now=61.0)
    assert beat(liveness, "a", 61.0, connection=A1)


def test_leaving_is_dead_at_once_and_only_a_new_instance_comes_back() -> None:
    liveness = Liveness(backstop=5.0)
    beat(liveness, "a", 0.0, connection=A1)
    assert beat(liveness, "a", 0.05, connection=A1, leaving=True)
    assert not beat(liveness, "a", 0.06, connection=A1)  # late, from the one that left
    assert liveness.live == frozenset()
    assert liveness.closed(A1, server_shutting_down=False, now=0.07) == []  # already gone
    assert beat(liveness, "a", 1.0, connection=A2, instance="2")
    assert liveness.live == {"a"}


def test_a_window_we_could_not_watch_does_not_kill_anyone() -> None:
    liveness = Liveness(backstop=5.0)
    beat(liveness, "a", 0.0)
    beat(liveness, "b", 2.0)
    liveness.refresh(now=50.0)
    assert liveness.expire(now=54.0) == []
    assert liveness.expire(now=55.0) == []  # both at once: suspected first
    assert liveness.expire(now=65.0) == ["a", "b"]


def test_taking_over_gives_recently_heard_nodes_a_period_to_speak_and_settles_the_silent() -> None:
    liveness = Liveness(backstop=5.0)
    for name in ("a", "b", "c"):
        beat(liveness, name, 0.0)
    beat(liveness, "c", 0.1, leaving=True)
    liveness.expire(now=5.0)
    assert liveness.expire(now=15.0) == ["a", "b"]  # a busy standby missed their heartbeats
    beat(liveness, "old", -50.0)
    liveness.expire(now=15.0)
    liveness.revive(15.0, since=-1.0)
    assert liveness.live == {"a", "b"}
    beat(liveness, "a", 16.0)
    assert liveness.settle() == ["b"]  # silent through the whole period
    assert liveness.live == {"a"}


def test_a_majority_falling_silent_at_once_is_believed_only_when_it_lasts() -> None:
    liveness = Liveness(backstop=5.0)
    for name in ("a", "b", "c"):
        beat(liveness, name, 0.0)
    assert liveness.expire(now=5.0) == []  # all of them at once: probably our own trouble
    assert liveness.next_deadline() == 5.0 + 10.0
    beat(liveness, "a", 6.0)  # their heartbeats were only late
    beat(liveness, "b", 6.0)
    assert liveness.expire(now=6.1) == ["c"]  # one of three: believed at once
    assert liveness.expire(now=11.0) == []  # both that are left: suspected
    assert liveness.expire(now=21.0) == ["a", "b"]  # still silent two windows later: believed


def test_recently_dead_are_the_silent_ones_heard_lately_not_those_that_left() -> None:
    liveness = Liveness(backstop=5.0)
    for name in ("a", "b", "c"):
        beat(liveness, name, 0.0)
    beat(liveness, "old", -50.0)
    liveness.expire(now=-45.0)
    beat(liveness, "c", 1.0, leaving=True)
    beat(liveness, "a", 3.0)
    assert liveness.expire(now=5.0) == ["b"]
    assert liveness.recently_dead(since=-9.0) == ["b"]  # not a (live), c (left) or old (long ago)
    assert liveness.recently_dead(since=2.0) == []


def test_a_node_whose_connection_the_server_closed_is_not_given_a_second_window_on_takeover() -> None:
    """A death by time may have been our own delay, so a replica taking over gives such nodes a window to
    speak again; a death by the server's word (the connection closed) cannot be, and costs no window."""
    liveness = Liveness(backstop=5.0)
    beat(liveness, "a", 0.0, connection=A1)
    beat(liveness, "b", 0.0, connection=B1)
    assert liveness.closed(A1, server_shutting_down=False, now=1.0) == ["a"]
    assert liveness.recently_dead(since=-9.0) == []
    liveness.revive(2.0, since=-9.0)
    assert liveness.live == frozenset({"b"})
    assert liveness.settle() == []
    beat(liveness, "a", 3.0, connection=A2)  # back on a new connection: live, and a death by time counts again
    beat(liveness, "b", 6.0, connection=B1)
    assert liveness.expire(now=8.5) == ["a"]
    assert liveness.recently_dead(since=-9.0) == ["a"]
