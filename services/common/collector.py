"""When the cyclic garbage collector runs, in a process whose work mostly builds long-lived state.

ipam folds every observation and decision into memory for good. The collector cannot know that: in a
burst it keeps scanning the objects just built, finds nothing (they are state, not garbage) and costs
a tenth of the CPU. So work that builds state runs with the collector off, and what it built is then
frozen (moved out of the collector's sight; reference counting still frees it). A full collection
with everything unfrozen runs when the process is idle, or at the latest after ``full_every`` of
busy work, so cyclic garbage frozen along the way is still reclaimed — while the state is small enough
that a full collection is short. A full collection holds the interpreter for about a microsecond per
object (2.5 million at 50 000 Services: 2.7 s), during which no event-loop turn and no lease renewal on
another thread happens; above ``full_limit`` objects only what was made outside ``building`` is collected,
and cyclic garbage frozen with the state waits for the state's next rebuild. How many objects are frozen is
never counted on the way (``gc.get_freeze_count`` walks them all: 0.17 s at 50 000 Services, the interpreter
held meanwhile): it is counted once when the collector is made, then kept up from the collector's own count
of the objects made since its last collection, added at each freeze with those that outlived a collection
since (an estimate, counted exactly again after each full collection while the state is small).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: The most frozen objects a full collection may rescan (about 0.1-0.3 s of the interpreter held).
FULL_LIMIT = 300_000


class StateCollector:
    def __init__(
        self, *, full_every: float = 60.0, full_limit: int = FULL_LIMIT, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._full_every = full_every
        self._full_limit = full_limit
        self._clock = clock
        self._last_full = clock()
        #: About how many objects are frozen (see above).
        self.frozen = gc.get_freeze_count()

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """No collection inside; what was made is frozen afterwards. Nests (an inner block freezes early)."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            self._freeze()
            if enabled:
                gc.enable()
            if self._clock() - self._last_full >= 2 * self._full_every:
                self.collect_all()  # busy for long: reclaim frozen garbage anyway

    def idle(self) -> None:
        """Call when there is nothing to do: a full collection if one is due."""
        if self._clock() - self._last_full >= self._full_every:
            self.collect_all()

    def collect_all(self) -> None:
        """A full collection, frozen state included while it is under ``full_limit`` objects; only the
        unfrozen objects above it (short either way)."""
        started = time.perf_counter()
        self.frozen += _unfrozen()  # counted before the collection resets the count (garbage stays counted)
        whole = self.frozen <= self._full_limit
        if whole:
            gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        if whole:  # counted again while it is short to count (a tenth of the collection just made)
            self.frozen = gc.get_freeze_count()
        self._last_full = self._clock()
        log.debug("full collection found=%d frozen=%d ms=%.1f", found, self.frozen,
                  (time.perf_counter() - started) * 1000)

    def _freeze(self) -> None:
        """Freeze everything tracked, counting it."""
        self.frozen += _unfrozen()
        gc.freeze()


def _unfrozen() -> int:
    """About how many tracked objects are not frozen: those made since the last collection (the collector's
    count, net of what was freed) and those that outlived one since the last freeze (few: most are made while
    building, with the collector off)."""
    return gc.get_count()[0] + len(gc.get_objects(generation=1)) + len(gc.get_objects(generation=2))


@contextlib.contextmanager
def survivors_frozen() -> Iterator[None]:
    """While inside, what outlives each full collection is frozen right after it, so the next one walks only
    what was made since: state a long-running process keeps building (the watcher's status of 50 000 Services)
    is walked once, not at every full collection (up to 2.5 s each with the loop held, 35 in one cold start and
    churn at 50 000 Services; 16.5 s in all). Cyclic garbage among what was frozen waits for the block's owner
    to hand the heap back (``gc.unfreeze``) and collect it once."""

    def freeze_after_full(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info.get("generation") == 2:
            gc.freeze()

    gc.callbacks.append(freeze_after_full)
    try:
        yield
    finally:
        gc.callbacks.remove(freeze_after_full)
