"""The event loop's lag, as every service sees it: how late a periodic wakeup comes; and the collector's pauses.

A task sleeps ``interval`` seconds again and again; whatever the loop did meanwhile that did not yield (a
long decode, a big diff, a collector pause) shows up as the wakeup coming late. The lateness of each wakeup
goes into ``metalbus_event_loop_lag_seconds`` (a histogram) and the largest seen into
``metalbus_event_loop_lag_max_seconds`` (a gauge), so a benchmark can read each service's maximum from its
``/metrics``. The runtime starts one probe per service process (``services/common/runtime.py``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from prometheus_client import Gauge, Histogram

LAG = Histogram(
    "metalbus_event_loop_lag_seconds",
    "How late the event loop woke a periodic timer (time the loop spent on other work without yielding)",
    ["component"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LAG_MAX = Gauge(
    "metalbus_event_loop_lag_max_seconds",
    "The largest event-loop lag seen since the process started",
    ["component"],
)

GC_PAUSE = Histogram(
    "metalbus_gc_pause_seconds",
    "How long each cyclic garbage collection held the interpreter (every thread, the event loop's too)",
    ["component", "generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)

log = logging.getLogger(__name__)
WORK_MAX = Gauge(
    "metalbus_event_loop_work_max_seconds",
    "The most CPU the loop's thread spent between two wakeups of a periodic timer (its own work, without the "
    "time the machine ran something else)",
    ["component"],
)

#: A wakeup this late (seconds) is logged, with the time it came: a stall can be set beside what the
#: service was doing then (its other log lines).
LOGGED_LAG = 0.05

#: How often the probe wakes up (seconds): fine enough to see a 100 ms stall, cheap enough to never matter.
DEFAULT_INTERVAL = 0.05


class LoopLagProbe:
    """Measures the lateness of a periodic wakeup on the running loop until cancelled."""

    def __init__(self, *, component: str, interval: float = DEFAULT_INTERVAL) -> None:
        self.component = component
        self.interval = interval
        self.largest = 0.0
        self._histogram = LAG.labels(component)
        self._largest_gauge = LAG_MAX.labels(component)

    def record(self, lag: float) -> None:
        lag = max(0.0, lag)
        self._histogram.observe(lag)
        if lag >= LOGGED_LAG:
            log.info("event loop late component=%s seconds=%.3f", self.component, lag)
        if lag > self.largest:
            self.largest = lag
            self._largest_gauge.set(lag)

    async def run(self) -> None:
        """Sleep, measure how late the wakeup was, record it; until cancelled."""
        while True:
            due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)  # the periodic wakeup whose lateness is the loop's lag
            self.record(time.monotonic() - due)


class LoopThreadWork:
    """The most CPU the loop's thread spent on other work between two wakeups of a periodic timer: the
    probe's lateness without what a loaded machine adds (time in which nobody ran this process, or another of
    its threads held the interpreter). For tests and benchmarks, whose machine is shared; a service exports
    the wall-clock lag above (ipam exports this figure too: its benchmark runs on a shared machine)."""

    def __init__(self, *, interval: float = 0.005, component: str | None = None) -> None:
        self.interval = interval
        self.largest = 0.0
        #: Given a component, the largest is also exported (``metalbus_event_loop_work_max_seconds``).
        self._largest_gauge = None if component is None else WORK_MAX.labels(component)

    async def run(self) -> None:
        while True:
            before = time.thread_time()
            await asyncio.sleep(self.interval)  # the periodic wakeup; the CPU spent meanwhile is the loop's work
            work = time.thread_time() - before
            if work > self.largest:
                self.largest = work
                if self._largest_gauge is not None:
                    self._largest_gauge.set(work)


class CollectorPauses:
    """Times every cyclic garbage collection (``gc.callbacks``): a full collection of a large heap holds the
    interpreter, and so the loop, for as long as it walks every tracked object (about a microsecond each). Each
    goes into ``metalbus_gc_pause_seconds``; one of ``LOGGED_LAG`` or more is logged, so that a stall of the
    loop (``event loop late``) can be told apart from one the collector made."""

    def __init__(self, *, component: str) -> None:
        self.component = component
        self._started: float | None = None
        self._histograms = {generation: GC_PAUSE.labels(component, str(generation)) for generation in range(3)}

    def __enter__(self) -> CollectorPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        if self._started is None:
            return
        pause, self._started = time.perf_counter() - self._started, None
        generation = int(info.get("generation", 2))
        self._histograms[min(max(generation, 0), 2)].observe(pause)
        if pause >= LOGGED_LAG:
            log.info("garbage collection held the interpreter component=%s generation=%d seconds=%.3f collected=%d",
                     self.component, generation, pause, int(info.get("collected", 0)))
