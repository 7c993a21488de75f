"""Bus errors, grouped by what the caller does about them."""

from __future__ import annotations


class BusError(Exception):
    """Base of every error the bus layer raises."""


class RetryableError(BusError):
    """Transient: timeouts, no responders, a connection being re-established. Back off and retry."""


class WrongLastSequence(BusError):
    """Conflict: the stream (or subject) moved on since the caller last read it. Reload and retry,
    or — for a fenced single writer — stop writing: someone else is the writer now."""

    def __init__(self, subject: str, expected: int, detail: str) -> None:
        super().__init__(f"{subject}: expected last sequence {expected} does not match ({detail})")
        self.subject = subject
        self.expected = expected


class MessageTooLarge(BusError):
    """Invalid: a message larger than the server's ``max_payload``; sending it again cannot help."""

    def __init__(self, subject: str, size: int, limit: int) -> None:
        super().__init__(f"{subject}: a message of {size} bytes, the server takes at most {limit}")
        self.subject = subject
        self.size = size
        self.limit = limit


class NotFound(BusError):
    """A stream, consumer or message that does not exist."""
