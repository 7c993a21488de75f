"""Supervised tasks: a task that dies is logged and counted, then restarted or it fails the probes."""

from __future__ import annotations

import asyncio
import contextvars
import logging

import pytest

from services.common.errors import NewerSchema
from services.common.health import Health
from services.common.supervision import (
    Backoff,
    OnFailure,
    Supervisor,
    TaskFailed,
    supervised,
)
from tests.supervised import in_process, run_in, task_failures
from tests.waiting import async_wait_until

QUICK = Backoff(first=0.01, limit=0.05)


def failures(task: str) -> float:
    return task_failures(task, component="unit")


def in_unit(health: Health, stopping: asyncio.Event) -> contextvars.Context:
    return in_process("unit", health, stopping)


def test_the_backoff_doubles_up_to_its_limit_and_starts_over_after_a_long_run() -> None:
    backoff = Backoff(first=0.1, factor=2, limit=1.0, reset_after=60)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff.failures_in_a_row(4, ran_for=1.0) == 5
    assert backoff.failures_in_a_row(4, ran_for=60.0) == 1


async def test_a_restartable_loop_is_logged_counted_and_works_again(caplog: pytest.LogCaptureFixture) -> None:
    health, stopping = Health(), asyncio.Event()
    health.set_ready("starting", True)
    runs: list[int] = []
    before = failures("flaky-loop")

    async def flaky_loop() -> None:
        runs.append(len(runs))
        if len(runs) <= 2:
            raise RuntimeError(f"injected failure {len(runs)}")
        await stopping.wait()  # the third run works until the service stops

    async def work() -> None:
        async with Supervisor(backoff=QUICK) as tasks:
            tasks.start("flaky-loop", flaky_loop, on_failure=OnFailure.RESTART)
            await async_wait_until(lambda: len(runs) == 3, what="the second restart")
            stopping.set()

    with caplog.at_level(logging.INFO, logger="services.common.supervision"):
        await run_in(in_unit(health, stopping), work)
    assert failures("flaky-loop") == before + 2
    failed = [r.getMessage() for r in caplog.records if "task failed" in r.getMessage()]
    assert len(failed) == 2
    assert "component=unit task=flaky-loop error=RuntimeError('injected failure 1')" in failed[0]
    assert "restart_in_s=" in failed[0]
    assert health.readiness() == (True, []) and health.live  # a restart is the cure: the probes stay green


async def test_a_vital_task_fails_the_probes_and_stops_its_siblings() -> None:
    health, stopping = Health(), asyncio.Event()
    health.set_ready("starting", True)
    sibling_cancelled = asyncio.Event()
    before = failures("vital")

    async def sibling() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise

    async def vital() -> None:
        await asyncio.sleep(0)
        raise ValueError("injected")

    async def work() -> None:
        async with Supervisor(backoff=QUICK) as tasks:
            tasks.start("sibling", sibling, on_failure=OnFailure.RESTART)
            tasks.start("vital", vital, on_failure=OnFailure.FAIL_PROBES)
            await asyncio.Event().wait()  # the body is cancelled too

    with pytest.raises(TaskFailed, match=r"task vital failed: ValueError\('injected'\)"):
        await run_in(in_unit(health, stopping), work)
    assert sibling_cancelled.is_set()
    assert failures("vital") == before + 1 and failures("sibling") == 0
    assert health.readiness() == (False, ["task vital: task vital failed: ValueError('injected')"])
    assert health.liveness() == (False, "task vital failed: ValueError('injected')")


async def test_a_vital_failure_deep_inside_is_counted_once_and_not_restarted_outside() -> None:
    health, stopping = Health(), asyncio.Event()
    outer_runs: list[int] = []
    before_inner, before_outer = failures("inner"), failures("outer")

    async def inner() -> None:
        raise OSError("injected")

    async def outer() -> None:
        outer_runs.append(1)
        async with Supervisor(backoff=QUICK) as tasks:
            tasks.start("inner", inner, on_failure=OnFailure.FAIL_PROBES)

    async def work() -> None:
        async with Supervisor(backoff=QUICK) as tasks:
            tasks.start("outer", outer, on_failure=OnFailure.RESTART)

    with pytest.raises(TaskFailed):
        await run_in(in_unit(health, stopping), work)
    assert outer_runs == [1]
    assert (failures("inner"), failures("outer")) == (before_inner + 1, before_outer)
    assert not health.live


async def test_a_failed_one_shot_is_reported_and_left_alone() -> None:
    health, stopping = Health(), asyncio.Event()
    health.set_ready("starting", True)
    attempts: list[int] = []
    before = failures("one-shot")

    async def one_shot() -> None:
        attempts.append(1)
        raise KeyError("injected")

    async def work() -> None:
        await supervised(one_shot, name="one-shot", on_failure=OnFailure.REPORT)

    await run_in(in_unit(health, stopping), work)
    assert attempts == [1] and failures("one-shot") == before + 1
    assert health.readiness() == (True, []) and health.live


async def test_nothing_restarts_once_the_service_stops() -> None:
    health, stopping = Health(), asyncio.Event()
    runs: list[int] = []

    async def dies_on_the_way_out() -> None:
        runs.append(1)
        stopping.set()
        raise RuntimeError("injected while stopping")

    async def work() -> None:
        await supervised(dies_on_the_way_out, name="stopping-loop", on_failure=OnFailure.RESTART, backoff=QUICK)

    await run_in(in_unit(health, stopping), work)
    assert runs == [1]


async def test_a_loop_stopped_at_a_newer_schema_is_not_restarted_but_fails_the_probes_with_the_event() -> None:
    """Restarting a reader stopped at an event it cannot read would stop at it again (or, worse, skip it): the
    probes say which stream, sequence and event instead, for the operator to upgrade the component."""
    health, stopping = Health(), asyncio.Event()
    health.set_ready("starting", True)
    runs: list[int] = []

    async def reader() -> None:
        runs.append(len(runs))
        stop = NewerSchema("IPAM", 812, "ipam.placement.10%2E0%2E0%2E1", "L2PlacementDecided schema version 9 "
                           "is newer than the 1 this build understands")
        async with asyncio.TaskGroup() as group:  # found inside an exception group too
            group.create_task(asyncio.sleep(0))
            raise stop

    async def work() -> None:
        async with Supervisor(backoff=QUICK) as tasks:
            tasks.start("follow", reader, on_failure=OnFailure.RESTART)
            await asyncio.Event().wait()

    with pytest.raises(TaskFailed):
        await run_in(in_unit(health, stopping), work)
    assert runs == [0]
    ready, reasons = health.readiness()
    assert not ready and "IPAM sequence 812" in reasons[0] and "schema version 9" in reasons[0]
    assert "upgrade it" in reasons[0]
