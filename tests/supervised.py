"""Helpers for tests of supervised tasks: a process context to run them in, and the failure counter."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY

from services.common.health import Health
from services.common.supervision import supervise_process


def task_failures(task: str, *, component: str) -> float:
    """``metalbus_task_failures_total`` of one task."""
    return REGISTRY.get_sample_value("metalbus_task_failures_total", {"component": component, "task": task}) or 0.0


def in_process(component: str, health: Health, stopping: asyncio.Event) -> contextvars.Context:
    """A context in which tasks report to a process named ``component`` with these probes."""
    context = contextvars.copy_context()
    context.run(supervise_process, component=component, health=health, stopping=stopping)
    return context


async def run_in(context: contextvars.Context, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work()`` to its end in ``context`` (tasks it starts inherit it)."""

    async def run() -> None:
        await work()

    await asyncio.get_running_loop().create_task(run(), context=context)
