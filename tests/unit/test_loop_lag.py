"""The loop-lag probe: a loop blocked for a while shows that long a lag, in the histogram and the maximum."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest
from prometheus_client import REGISTRY

from services.common import loop_lag
from services.common.loop_lag import CollectorPauses, LoopLagProbe
from tests.waiting import async_wait_until


def _sample(name: str, component: str) -> float:
    value = REGISTRY.get_sample_value(name, {"component": component})
    return 0.0 if value is None else value


async def test_a_blocked_loop_is_seen_as_that_much_lag() -> None:
    probe = LoopLagProbe(component="lag-blocked", interval=0.01)
    task = asyncio.create_task(probe.run())
    try:
        await async_wait_until(lambda: _sample("metalbus_event_loop_lag_seconds_count", "lag-blocked") >= 3,
                               what="the probe's first wakeups")
        assert probe.largest < 0.25  # an idle loop: no wakeup comes anywhere near the stall below
        time.sleep(0.3)  # the loop blocked: a synchronous call that never yields
        await async_wait_until(lambda: probe.largest >= 0.25, what="the stall seen as lag")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert probe.largest < 1.0
    assert _sample("metalbus_event_loop_lag_max_seconds", "lag-blocked") == probe.largest
    # the stall lands in the histogram's upper buckets, above 250 ms
    under = REGISTRY.get_sample_value(
        "metalbus_event_loop_lag_seconds_bucket", {"component": "lag-blocked", "le": "0.25"}
    )
    assert _sample("metalbus_event_loop_lag_seconds_count", "lag-blocked") - (under or 0.0) == 1



def test_a_late_wakeup_is_logged_with_how_late_it_came(caplog: pytest.LogCaptureFixture) -> None:
    probe = LoopLagProbe(component="lag-logged")
    with caplog.at_level(logging.INFO, logger="services.common.loop_lag"):
        probe.record(0.004)  # an ordinary turn: not worth a line
        probe.record(0.12)
    late = [record.getMessage() for record in caplog.records]
    assert late == ["event loop late component=lag-logged seconds=0.120"]


def test_every_collection_is_timed_and_a_long_one_logged(caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A full collection walks every tracked object, holding the interpreter meanwhile: each is counted per
    generation, and one that held it long enough is logged (here every one: the threshold is lowered), so that a
    stall of the loop can be told from one the collector made."""
    monkeypatch.setattr(loop_lag, "LOGGED_LAG", 0.0)
    sample = {"component": "gc-pauses", "generation": "2"}
    before = REGISTRY.get_sample_value("metalbus_gc_pause_seconds_count", sample) or 0.0
    with caplog.at_level(logging.INFO, logger="services.common.loop_lag"), CollectorPauses(component="gc-pauses"):
        gc.collect()
    assert REGISTRY.get_sample_value("metalbus_gc_pause_seconds_count", sample) == before + 1
    assert "garbage collection held the interpreter component=gc-pauses generation=2 seconds=" in caplog.text
    gc.collect()  # after the probe is gone: not counted
    assert REGISTRY.get_sample_value("metalbus_gc_pause_seconds_count", sample) == before + 1
