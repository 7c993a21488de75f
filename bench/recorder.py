"""What the benchmarks' recorders share: waiting, with a deadline, until what they recorded meets a condition.

Imports nothing of the code tree under test: ``bench/scale_run.py`` imports it (as ``recorder``, beside it)
before it puts that tree on sys.path; the other benchmarks import it as ``bench.recorder``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Recorder:
    """Records what goes by on the bus (a subclass's callbacks), setting ``changed`` after each change."""

    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Until ``condition`` holds, looked at again after each change; ``TimeoutError`` after ``timeout`` s."""
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()
