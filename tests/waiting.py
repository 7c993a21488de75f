"""Wait on a condition with a deadline — the only way tests synchronise with other processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class ConditionTimeout(AssertionError):
    pass


def wait_until(condition: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition",
               interval: float = 0.01) -> None:
    """Check ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ConditionTimeout(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def async_wait_until(condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0,
                           what: str = "condition", interval: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise ConditionTimeout(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
