"""How fast the status writer writes: as fast as the API server accepts, never faster than it asks.

Pure: told when writes start and how the API server answered them, and the time (``now``, seconds on any
monotonic clock), it says whether another write may start. No fixed rate: a window of writes in flight,
at most ``most_in_flight``, grows by one for each window's worth of accepted writes, and a ``429 Too Many
Requests`` (API Priority and Fairness refusing a request) pauses the whole writer for the answer's
``Retry-After`` and halves the window — once per pause, however many writes in flight are refused with it.
The writes start again one window at a time, so a pause never ends in a burst that is refused again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class WriteAnswer(StrEnum):
    """What the API server made of one write (one object converged)."""

    ACCEPTED = "accepted"
    #: 429: the API server asks the writer to slow down.
    TOO_MANY_REQUESTS = "too-many-requests"
    #: Any other failure: says nothing about the API server's capacity.
    FAILED = "failed"


@dataclass(slots=True)
class WritePacing:
    most_in_flight: int = 16
    #: The pause after a 429 without a usable ``Retry-After`` (seconds).
    default_pause: float = 1.0
    #: The longest pause a ``Retry-After`` may ask for (seconds).
    longest_pause: float = 60.0
    window: int = field(init=False)
    in_flight: int = field(default=0, init=False)
    paused_until: float = field(default=0.0, init=False)
    #: 429 answers taken so far, and the pauses they caused.
    refusals: int = field(default=0, init=False)
    pauses: int = field(default=0, init=False)
    _accepted_in_window: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.most_in_flight = max(1, self.most_in_flight)
        self.window = self.most_in_flight

    def wait(self, *, now: float) -> float | None:
        """0.0: a write may start now; a positive number: the writer is paused that much longer; None: the
        window is full, wait for a write to end."""
        if now < self.paused_until:
            return self.paused_until - now
        if self.in_flight >= self.window:
            return None
        return 0.0

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, answer: WriteAnswer, *, now: float, retry_after: float | None = None) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if answer is WriteAnswer.ACCEPTED:
            self._accepted_in_window += 1
            if self._accepted_in_window >= self.window:
                self._accepted_in_window = 0
                self.window = min(self.most_in_flight, self.window + 1)
        elif answer is WriteAnswer.TOO_MANY_REQUESTS:
            self.refusals += 1
            pause = self.default_pause if retry_after is None else retry_after
            pause = min(self.longest_pause, max(0.0, pause))
            if now >= self.paused_until:  # a new pause: the refusals of writes already in flight join it
                self.pauses += 1
                self.window = max(1, self.window // 2)
                self._accepted_in_window = 0
            self.paused_until = max(self.paused_until, now + pause)


def retry_after_seconds(value: str | None) -> float | None:
    """The seconds a ``Retry-After`` header asks for (Kubernetes sends whole seconds); None when absent or
    not a number of seconds (an HTTP date is not honoured: the default pause applies)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 and seconds == seconds else None
