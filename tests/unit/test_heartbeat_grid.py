"""Heartbeats leave on the ticks of a wall-clock grid every node shares, so ipam reads a tick's together."""

from __future__ import annotations

import random

import pytest

from services.common.heartbeats import BEAT_TICK, GRANTED_INTERVAL, HEARTBEAT_INTERVAL, next_beat_in


@pytest.mark.parametrize("interval", [HEARTBEAT_INTERVAL, GRANTED_INTERVAL])
def test_nodes_that_started_apart_beat_on_the_same_ticks(interval: float) -> None:
    rng = random.Random(7)
    for _ in range(1000):
        now = 1_800_000_000 + rng.uniform(0, 86_400)
        delay = next_beat_in(interval, now)
        assert interval <= delay < interval + BEAT_TICK
        ticks = (now + delay) / BEAT_TICK
        assert abs(ticks - round(ticks)) < 1e-3  # on the grid, whatever ``now`` was


def test_a_node_on_a_tick_already_waits_one_interval() -> None:
    now = 1_800_000_000.0
    assert next_beat_in(HEARTBEAT_INTERVAL, now) == pytest.approx(HEARTBEAT_INTERVAL)


def test_a_short_interval_keeps_its_length() -> None:
    """A test's 0.1 s heartbeats are not stretched to the next 0.1 s tick: the grid is a tenth of the wait."""
    rng = random.Random(8)
    for _ in range(1000):
        delay = next_beat_in(0.1, rng.uniform(0, 1e6))
        assert 0.1 <= delay < 0.11 + 1e-9
    assert next_beat_in(0.0, 5.0) == 0.0
