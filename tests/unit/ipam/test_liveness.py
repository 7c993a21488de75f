"""Announcer liveness with a passed-in clock: heard → live, silent for the timeout → dead, leaving → dead now."""

from __future__ import annotations

from services.ipam.liveness import Liveness


def test_a_node_is_live_from_its_first_heartbeat_until_it_falls_silent() -> None:
    liveness = Liveness(timeout=0.35)
    assert liveness.heard("a", instance="1", leaving=False, now=0.0)
    assert not liveness.heard("a", instance="1", leaving=False, now=0.1)  # already live: no change
    assert liveness.next_deadline() == 0.1 + 0.35
    assert liveness.expire(now=0.4) == []
    assert liveness.expire(now=0.45) == ["a"]
    assert liveness.live == frozenset()
    assert liveness.next_deadline() is None


def test_leaving_is_dead_at_once_and_only_a_new_instance_comes_back() -> None:
    liveness = Liveness(timeout=0.35)
    liveness.heard("a", instance="1", leaving=False, now=0.0)
    assert liveness.heard("a", instance="1", leaving=True, now=0.05)
    assert not liveness.heard("a", instance="1", leaving=False, now=0.06)  # late, from the one that left
    assert liveness.live == frozenset()
    assert liveness.heard("a", instance="2", leaving=False, now=1.0)
    assert liveness.live == {"a"}


def test_a_window_we_could_not_watch_does_not_kill_anyone() -> None:
    liveness = Liveness(timeout=0.35)
    liveness.heard("a", instance="1", leaving=False, now=0.0)
    liveness.heard("b", instance="1", leaving=False, now=0.2)
    liveness.refresh(now=5.0)
    assert liveness.expire(now=5.3) == []
    assert liveness.expire(now=5.4) == []  # both at once: suspected first
    assert liveness.expire(now=6.2) == ["a", "b"]


def test_taking_over_gives_recently_heard_nodes_a_fresh_window_but_not_those_that_left() -> None:
    liveness = Liveness(timeout=0.35)
    for name in ("a", "b", "c"):
        liveness.heard(name, instance="1", leaving=False, now=0.0)
    liveness.heard("c", instance="1", leaving=True, now=0.1)
    liveness.expire(now=1.0)
    assert liveness.expire(now=1.8) == ["a", "b"]  # a busy standby missed their heartbeats
    liveness.heard("old", instance="1", leaving=False, now=-50.0)
    liveness.expire(now=1.0)
    liveness.revive(1.0, since=-9.0)
    assert liveness.live == {"a", "b"}
    liveness.heard("a", instance="1", leaving=False, now=1.2)
    assert liveness.expire(now=1.4) == ["b"]


def test_a_majority_falling_silent_at_once_is_believed_only_when_it_lasts() -> None:
    liveness = Liveness(timeout=0.35)
    for name in ("a", "b", "c"):
        liveness.heard(name, instance="1", leaving=False, now=0.0)
    assert liveness.expire(now=0.4) == []  # two of three at once: probably our own trouble
    assert liveness.next_deadline() == 0.4 + 0.7
    liveness.heard("a", instance="1", leaving=False, now=1.0)  # their heartbeats were only late
    liveness.heard("b", instance="1", leaving=False, now=1.0)
    assert liveness.expire(now=1.1) == ["c"]  # one of three: believed at once
    assert liveness.expire(now=2.0) == []  # both that are left: suspected
    assert liveness.expire(now=2.7) == ["a", "b"]  # still silent two windows later: believed


def test_recently_dead_are_the_silent_ones_heard_lately_not_those_that_left() -> None:
    liveness = Liveness(timeout=0.35)
    for name in ("a", "b", "c"):
        liveness.heard(name, instance="1", leaving=False, now=0.0)
    liveness.heard("old", instance="1", leaving=False, now=-50.0)
    liveness.expire(now=-49.0)
    liveness.heard("c", instance="1", leaving=True, now=0.1)
    liveness.heard("a", instance="1", leaving=False, now=0.3)
    assert liveness.expire(now=0.5) == ["b"]
    assert liveness.recently_dead(since=-9.0) == ["b"]  # not a (live), c (left) or old (long ago)
    assert liveness.recently_dead(since=0.2) == []
