"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def first_of(work: Coroutine[Any, Any, T], stop: Coroutine[Any, Any, object]) -> T | None:
    """Run ``work`` until it finishes or ``stop`` does; None (and ``work`` cancelled) when ``stop`` came first."""
    work_task = asyncio.ensure_future(work)
    stop_task = asyncio.ensure_future(stop)
    try:
        await asyncio.wait({work_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work_task, stop_task):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if work_task.cancelled() or not work_task.done():
        return None
    return work_task.result()
