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
    assert liveness.expire(now=5.4) == ["a", "b"]
