"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

from services.common.errors import MetalbusError

T = TypeVar("T")

log = logging.getLogger(__name__)


async def first_of(work: Coroutine[Any, Any, T], stop: Coroutine[Any, Any, object]) -> T | None:
    """Run ``work`` until it finishes or ``stop`` does; None (and ``work`` cancelled) when ``stop`` came first."""
    work_task = asyncio.ensure_future(work)
    stop_task = asyncio.ensure_future(stop)
    try:
        await asyncio.wait({work_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work_task, stop_task):
            if not task.done():
                await stopped(task)
    if work_task.cancelled() or not work_task.done():
        return None
    return work_task.result()


#: How long a task cancelled is given to end before it is cancelled again (``stopped``): long enough for the
#: clean-up it does on cancellation, short beside what waiting for good would cost.
CANCEL_AGAIN_AFTER = 1.0


async def stopped(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait until it has ended; an error it ended with is raised. A cancellation can be
    lost (Python 3.11's ``asyncio.wait_for``, which nats-py's requests use, drops one that comes just as the
    reply does, and the task runs on): the task is cancelled again every ``CANCEL_AGAIN_AFTER`` seconds until
    it ends, so that whoever stops it is never left waiting on it for good."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_AGAIN_AFTER)
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancellable(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` so that a cancellation of the caller always lands. Python 3.11's ``asyncio.wait_for``, which
    nats-py's requests use, loses a cancellation that comes just as the reply does, and the caller then runs on
    (a term of leadership over, a reflector that never ends). ``work`` runs as a task of its own behind a
    shield: a cancelled caller stops waiting at once, and ``work`` finishes unwatched (its outcome dropped)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_outcome_dropped)
    return await asyncio.shield(task)


def _outcome_dropped(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a caller cancelled meanwhile no longer wants it


async def off_loop(work: Callable[[], T], *, name: str) -> T:
    """Run CPU-bound ``work`` on a daemon thread of its own and await its result.

    The event loop keeps turning meanwhile (the interpreter hands the GIL over every few milliseconds), so
    timers, heartbeats, pings and signals are served while seconds of pure work run. ``work`` runs in a copy
    of the caller's context (its span). A caller cancelled meanwhile stops waiting at once; the thread
    finishes unseen and, a daemon, never holds the process's exit: ``work`` must then touch nothing that the
    caller goes on using. Unlike ``asyncio.to_thread``, whose pool is joined at exit, a SIGTERM never waits
    for it.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[], None]) -> None:
        if not done.done():  # the caller may have stopped waiting
            outcome()

    def run() -> None:
        try:
            result = context.run(work)
        except BaseException as error:  # handed to the caller, raised there
            failure = error
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
                loop.call_soon_threadsafe(settle, lambda: done.set_exception(failure))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: done.set_result(result))

    threading.Thread(target=run, name=name, daemon=True).start()
    return await done


#: How long a stretch of steps may hold the loop before :func:`in_slices` lets it turn (seconds).
SLICE = 0.02


async def in_slices(steps: Iterable[object], *, slice_seconds: float = SLICE) -> None:
    """Run ``steps`` (a generator doing a piece of work per step) on the loop, letting the loop turn after
    every ``slice_seconds`` of them: seconds of work never hold timers, heartbeats, pings and watches back
    longer than a slice (plus one step). For work that must run on the loop (it touches the loop's objects);
    pure work that need not may go to :func:`off_loop`."""
    deadline = time.perf_counter() + slice_seconds
    for _ in steps:
        if time.perf_counter() >= deadline:
            await asyncio.sleep(0)  # one turn of the loop: whatever is due runs, then the work goes on
            deadline = time.perf_counter() + slice_seconds


async def until_done(attempt: Callable[[], Awaitable[object]], *, stopping: asyncio.Event, retry_in: float,
                     what: str) -> bool:
    """Await ``attempt()`` until it completes (True) or ``stopping`` is set (False). A try that fails on the
    bus (a ``MetalbusError`` or a timeout) is logged as ``what`` failed and tried again ``retry_in`` seconds
    later; anything else (a bug, a ``NewerSchema`` stop) is raised."""
    while not stopping.is_set():
        try:
            await attempt()
            return True
        except (MetalbusError, TimeoutError) as error:
            log.warning("%s failed error=%r retry_in=%s", what, error, retry_in)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), retry_in)
    return False
