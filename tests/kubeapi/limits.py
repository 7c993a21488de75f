"""A write rate limit, as API Priority and Fairness applies one: past it, ``429 Too Many Requests`` with
``Retry-After``.

A token bucket over the writes (create, update, patch, delete) of every client together: ``per_second``
tokens a second, up to ``burst`` saved. A write that finds no token is refused with ``Retry-After`` (whole
seconds, as the API server sends it). Reads, lists and watches are never limited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


class WriteLimit:
    def __init__(self, per_second: float, *, burst: int, retry_after: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.burst = max(1, burst)
        self.retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._stamp = clock()
        self.admitted = 0
        self.refused = 0

    def admit(self, verb: str) -> bool:
        """Whether a request of ``verb`` may go on now (it takes a token when it is a write)."""
        if verb not in WRITE_VERBS:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.admitted += 1
                return True
            self.refused += 1
            return False
