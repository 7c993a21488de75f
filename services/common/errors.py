"""The project's errors, grouped by what the caller does about them, under one base.

- :class:`RetryableError`: back off and retry (timeouts, no responders, a connection being
  re-established, a 5xx or 429).
- :class:`Conflict`: reload and retry, or, a fenced writer, stop writing (a stale expected sequence or
  revision, a 409).
- :class:`NotFound`: treat the thing as absent (a missing stream, consumer, message, key or object; 404, 410).
- :class:`Invalid`: give up on this request, sending it again cannot help (a bad request, a refusal, a
  message too large).
- :class:`ConnectionClosed`: stop (this process closed its connection: it is shutting down).

Apart from these, :class:`NewerSchema` is handled by no caller: a reader that meets an event this build cannot
read stops there, and supervision fails the probes with the reason.

Client libraries' errors are mapped to these once, where the client is called: nats-py's in
:mod:`services.common.nats_errors`, the Kubernetes client's by the watcher's API wrapper
(:mod:`services.watcher.status.objects`). Callers catch only these.
"""

from __future__ import annotations


class MetalbusError(Exception):
    """Base of every error a caller may have to handle."""


class RetryableError(MetalbusError):
    """Transient: back off and retry."""


class RequestTimeout(RetryableError, TimeoutError):
    """No answer in time (also a :class:`TimeoutError`, as nats-py's own timeout is). Back off and retry."""


class TooManyRequests(RetryableError):
    """Retryable: the server asks the caller to slow down (HTTP 429), and to wait ``retry_after`` seconds
    when it says (``Retry-After``) — the whole caller, not only this request."""

    def __init__(self, detail: str, *, retry_after: float | None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Conflict(MetalbusError):
    """What the caller wrote from moved on since it last read it. Reload and retry."""


class WrongLastSequence(Conflict):
    """Conflict: the stream (or subject) moved on since the caller last read it. Reload and retry,
    or — for a fenced single writer — stop writing: someone else is the writer now."""

    def __init__(self, subject: str, expected: int, detail: str) -> None:
        super().__init__(f"{subject}: expected last sequence {expected} does not match ({detail})")
        self.subject = subject
        self.expected = expected


class StreamReplaced(Conflict):
    """Conflict: a stream followed from a position is not the stream it was (deleted and made again, or lost
    with a NATS store): what it held before that position is not what was read. Read it again from the start."""


class NotFound(MetalbusError):
    """A stream, consumer, message, key or object that does not exist (or no longer does)."""


class Invalid(MetalbusError):
    """The request itself is wrong or refused; sending it again cannot help."""


class MessageTooLarge(Invalid):
    """Invalid: a message larger than the server's ``max_payload``."""

    def __init__(self, subject: str, size: int, limit: int) -> None:
        super().__init__(f"{subject}: a message of {size} bytes, the server takes at most {limit}")
        self.subject = subject
        self.size = size
        self.limit = limit


class ConnectionClosed(MetalbusError):
    """This process closed the connection (it is shutting down): stop, nothing on it works again."""


class NewerSchema(Exception):
    """A stream only metalbus's own components write holds an event of a schema version this build does not
    understand (``StreamSpec.fails_closed``). Not a :class:`MetalbusError` on purpose: nothing retries or skips
    it. The reader stops at the event (neither skipped nor dead-lettered), and the task that read it fails the
    probes with this reason (``services.common.supervision``) until a build that reads it replaces this one."""

    def __init__(self, stream: str, sequence: int, subject: str, detail: str) -> None:
        super().__init__(f"{stream} sequence {sequence} ({subject[:200]}): {detail}: this build stops here "
                         "rather than skip it; upgrade it")
        self.stream = stream
        self.sequence = sequence
        self.subject = subject


def newer_schema_in(error: BaseException) -> NewerSchema | None:
    """The :class:`NewerSchema` ``error`` is or holds (in an exception group, or as its cause), if any."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewerSchema):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    return None
