"""Write scheduling: the gate that paces writes by the API server's answers (``pacing.py``), a token
bucket (Events), and a queue that coalesces per object.

The queue holds object keys, not payloads: a worker reads the newest desired state when it starts the
write, so ten changes to one Service while it waits become one write. An object is written by one
worker at a time; a change that arrives during its write queues it once more afterwards. Keys the queue is
told go first are handed out before any other (in the order queued, as the others).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from services.watcher.status.pacing import WriteAnswer, WritePacing

K = TypeVar("K")


class WriteGate:
    """The asyncio side of :class:`WritePacing`: ``acquire`` waits until a write may start, ``release``
    tells how it was answered. Waiters are woken by every release and when a pause ends."""

    def __init__(self, pacing: WritePacing, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.pacing = pacing
        self._clock = clock
        self._changed = asyncio.Event()

    async def acquire(self) -> None:
        while (wait := self.pacing.wait(now=self._clock())) != 0.0:
            changed = self._changed
            if wait is None:
                await changed.wait()  # the window is full: a write ends first
            else:
                await asyncio.sleep(wait)  # paused by a 429: its Retry-After, then look again
        self.pacing.started()

    def release(self, answer: WriteAnswer, *, retry_after: float | None = None) -> None:
        self.pacing.finished(answer, now=self._clock(), retry_after=retry_after)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` saved; ``rate <= 0`` means no limit."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._stamp = clock()

    def reserve(self) -> float:
        """Take one token now and return how long to wait until it is really there (0.0: at once).

        Tokens may go negative: each caller is handed its own future slot, so waiters need no loop."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def take(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)  # the token's slot: the bucket refills with time alone


class WorkQueue(Generic[K]):
    """Keys to write, each queued at most once, with the earliest decision time not yet written."""

    def __init__(self, *, goes_first: Callable[[K], bool] = lambda key: False) -> None:
        """``goes_first``: whether a key is handed out before every key for which it is False."""
        self._goes_first = goes_first
        self._first: deque[K] = deque()
        self._ready: deque[K] = deque()
        self._queued: dict[K, float | None] = {}
        self._busy: set[K] = set()
        self._again: dict[K, float | None] = {}
        self._later: dict[K, asyncio.TimerHandle] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        """Objects not written yet. Cheap (it is read after every write): a key is queued, busy or due
        later, only a busy one may be due later too (its write failed), and one put again while busy is
        busy."""
        return len(self._queued) + len(self._busy) + len(self._later) - sum(key in self._later
                                                                              for key in self._busy)

    @staticmethod
    def _earliest(a: float | None, b: float | None) -> float | None:
        if a is None:
            return b
        if b is None:
            return a
        return min(a, b)

    def put(self, key: K, since: float | None = None) -> None:
        """Queue ``key``; ``since`` is when the decision it shows was made (None: do not measure)."""
        if self._closed:
            return
        handle = self._later.pop(key, None)
        if handle is not None:
            handle.cancel()
        if key in self._busy:
            self._again[key] = self._earliest(self._again.get(key), since) if key in self._again else since
            return
        if key in self._queued:
            self._queued[key] = self._earliest(self._queued[key], since)
            return
        self._queued[key] = since
        (self._first if self._goes_first(key) else self._ready).append(key)
        self._wakeup.set()

    def waiting(self, key: K) -> bool:
        """Whether ``key`` will be written without being put again (queued, or due for a retry)."""
        return key in self._queued or key in self._later

    def busy(self, key: K) -> bool:
        """Whether a worker is writing ``key`` now."""
        return key in self._busy

    def put_later(self, key: K, since: float | None, delay: float) -> None:
        """Queue ``key`` after ``delay`` seconds (a retry after a failed write)."""
        if self._closed or key in self._queued or key in self._later:
            return
        self._later[key] = asyncio.get_running_loop().call_later(delay, self._fire, key, since)

    def _fire(self, key: K, since: float | None) -> None:
        self._later.pop(key, None)
        self.put(key, since)

    async def get(self) -> tuple[K, float | None]:
        """The next key to write (marked busy until :meth:`done`)."""
        while not (self._first or self._ready):
            if self._closed:
                raise QueueClosed
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._first.popleft() if self._first else self._ready.popleft()
        since = self._queued.pop(key)
        self._busy.add(key)
        return key, since

    def done(self, key: K) -> None:
        self._busy.discard(key)
        if key in self._again:
            self.put(key, self._again.pop(key))

    def close(self) -> None:
        self._closed = True
        for handle in self._later.values():
            handle.cancel()
        self._later.clear()
        self._wakeup.set()


class QueueClosed(Exception):
    """The queue is closed and empty: the worker stops."""
