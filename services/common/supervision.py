"""Supervised background tasks: a task that dies is never silent.

Every background task of a service runs under a ``Supervisor`` (a task group) or ``supervised()`` (one
task). When it dies with an exception, the failure is logged with the task's name and the exception and
counted in ``metalbus_task_failures_total{component,task}``; then what the site that started it chose
(``OnFailure``) happens:

- ``RESTART``: a loop whose restart is safe (it resumes from the state it keeps, or reads it again) is
  started again after a backoff (0.1 s, doubling up to 30 s; a run of a minute without failure starts
  over at 0.1 s), until the service stops;
- ``FAIL_PROBES``: a task only a fresh process can replace turns ``/readyz`` and ``/healthz`` to 503 with
  the task's name and error, and its group's other tasks are cancelled (nothing half-works: an announcer
  whose agent died stops its heartbeats too). The failure propagates as ``TaskFailed``; the runtime keeps
  serving the probes so the kubelet sees why and restarts the container;
- ``REPORT``: a one-shot job (a check, a dead letter) whose next trigger does the work again; logged and
  counted, nothing else.

A reader stopped at an event of a newer schema (``NewerSchema``, see ``services.common.inbound``) fails the
probes whatever its task's policy: restarting it would stop at the same event again, and going on without it
would skip it. The probes say which stream, sequence and event; a build that reads it is the cure.

The process's component, health and stopping event come from ``supervise_process`` (the runtime calls it
once); tasks created later inherit them through a context variable, so no constructor has to carry them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self

from services.common.errors import newer_schema_in
from services.common.health import Health
from services.common.metrics import TASK_FAILURES

log = logging.getLogger(__name__)

Run = Callable[[], Awaitable[None]]


class OnFailure(StrEnum):
    RESTART = "restart"
    FAIL_PROBES = "fail-probes"
    REPORT = "report"


class TaskFailed(Exception):
    """A ``FAIL_PROBES`` task died: already logged, counted and shown on the probes."""

    def __init__(self, task: str, error: BaseException) -> None:
        super().__init__(f"task {task} failed: {error!r}")
        self.task = task
        self.error = error


@dataclass(frozen=True, slots=True)
class Backoff:
    first: float = 0.1
    factor: float = 2.0
    limit: float = 30.0
    #: A run at least this long ended the previous series of failures.
    reset_after: float = 60.0

    def delay(self, failures: int) -> float:
        """The pause before the restart that follows the ``failures``-th failure in a row (1, 2, ...)."""
        return float(min(self.first * self.factor ** (failures - 1), self.limit))

    def failures_in_a_row(self, previous: int, *, ran_for: float) -> int:
        return 1 if ran_for >= self.reset_after else previous + 1


@dataclass(frozen=True, slots=True)
class Process:
    """What a failure reaches: the component's name (metric label), its probes and its stop signal."""

    component: str
    health: Health | None = None
    stopping: asyncio.Event | None = None

    def report(self, task: str, error: BaseException, on_failure: OnFailure, *, retry_in: float = 0.0) -> None:
        TASK_FAILURES.labels(self.component, task).inc()
        if on_failure is OnFailure.RESTART:
            log.error("task failed component=%s task=%s error=%r restart_in_s=%.1f", self.component, task, error,
                      retry_in, exc_info=error)
        else:
            log.error("task failed component=%s task=%s error=%r then=%s", self.component, task, error,
                      on_failure.value, exc_info=error)

    def fail_probes(self, task: str, error: BaseException) -> None:
        if self.health is None:
            return
        reason = f"task {task} failed: {error!r}"[:500]
        self.health.set_ready(f"task {task}", False, reason)
        self.health.set_live(False, reason)

    @property
    def is_stopping(self) -> bool:
        return self.stopping is not None and self.stopping.is_set()


_PROCESS: ContextVar[Process | None] = ContextVar("metalbus_process", default=None)
_NO_PROCESS = Process(component="unknown")


def supervise_process(*, component: str, health: Health, stopping: asyncio.Event) -> None:
    """Name the process every task started from here on (in this context) reports its failures to."""
    _PROCESS.set(Process(component=component, health=health, stopping=stopping))


def current_process() -> Process:
    return _PROCESS.get() or _NO_PROCESS


async def watch(run: Run, *, name: str, on_failure: OnFailure, backoff: Backoff = Backoff()) -> None:
    """Run ``run()`` to its end under ``on_failure`` (see the module's docstring)."""
    process = current_process()
    loop = asyncio.get_running_loop()
    failures = 0
    while True:
        started = loop.time()
        try:
            await run()
            return
        except TaskFailed:
            raise  # a vital task inside already failed the probes: nothing to restart here
        except Exception as error:
            if newer_schema_in(error) is not None and on_failure is OnFailure.RESTART:
                on_failure = OnFailure.FAIL_PROBES  # a restart would only stop at the same event again
            if on_failure is OnFailure.RESTART and not process.is_stopping:
                failures = backoff.failures_in_a_row(failures, ran_for=loop.time() - started)
                process.report(name, error, on_failure, retry_in=backoff.delay(failures))
            else:
                process.report(name, error, on_failure)
                if on_failure is OnFailure.FAIL_PROBES:
                    process.fail_probes(name, error)
                    raise TaskFailed(name, error) from error
                return
        await _pause(backoff.delay(failures), process.stopping)
        if process.is_stopping:
            return
        log.info("task restarted component=%s task=%s failures_in_a_row=%d", process.component, name, failures)


async def _pause(seconds: float, stopping: asyncio.Event | None) -> None:
    if stopping is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


_DETACHED: set[asyncio.Task[None]] = set()


def supervised(run: Run, *, name: str, on_failure: OnFailure, backoff: Backoff = Backoff()) -> asyncio.Task[None]:
    """One supervised task outside any group (kept referenced until it ends; cancel it to stop it)."""
    task = asyncio.get_running_loop().create_task(
        watch(run, name=name, on_failure=on_failure, backoff=backoff), name=name
    )
    _DETACHED.add(task)
    task.add_done_callback(_detached_done)
    return task


def _detached_done(task: asyncio.Task[None]) -> None:
    _DETACHED.discard(task)
    if not task.cancelled():
        task.exception()  # a TaskFailed was reported where it happened; retrieved so asyncio does not warn


class Supervisor:
    """A task group whose every task is supervised.

        async with Supervisor() as tasks:
            tasks.start("heartbeats", lambda: send_heartbeats(...), on_failure=OnFailure.RESTART)

    Leaving the block waits for every task, as ``asyncio.TaskGroup`` does. A ``FAIL_PROBES`` task's death
    cancels the others and the block's body, and leaving raises its ``TaskFailed``.
    """

    def __init__(self, *, backoff: Backoff = Backoff()) -> None:
        self._group = asyncio.TaskGroup()
        self._backoff = backoff

    async def __aenter__(self) -> Self:
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            failed, rest = group.split(TaskFailed)
            if failed is not None and rest is None:
                raise _first(failed) from None
            raise

    def start(self, name: str, run: Run, *, on_failure: OnFailure) -> asyncio.Task[None]:
        return self._group.create_task(
            watch(run, name=name, on_failure=on_failure, backoff=self._backoff), name=name
        )


def _first(group: BaseExceptionGroup[TaskFailed]) -> TaskFailed:
    error = group.exceptions[0]
    return _first(error) if isinstance(error, BaseExceptionGroup) else error
