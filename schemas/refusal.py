"""What a decoder answers when an input cannot be read: a reason from a fixed set and a bounded message.

Every decoder of outside input (message bodies, subjects, headers, Kubernetes objects) is total: it
returns the value it read or a :class:`Refused`, and never raises. The caller counts the refusal by its
reason, then drops the input or dead-letters it. The message is made safe to put anywhere (a log line,
a message header, a Kubernetes Event): control characters are escaped and the length is bounded, so
a hostile input can neither forge a header line nor make the refusal as large as itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

#: The longest refusal message, in characters.
MESSAGE_LIMIT = 300


class DropReason(StrEnum):
    """Why an input was refused (a metric label: keep the set small and fixed)."""

    TOO_LARGE = "too_large"  # over the size this input may have
    NOT_JSON = "not_json"  # not UTF-8 JSON
    TOO_DEEP = "too_deep"  # JSON nested deeper than the parser allows
    WRONG_SHAPE = "wrong_shape"  # JSON, but not an event (missing, extra or mistyped fields, unknown type)
    NEWER_SCHEMA = "newer_schema"  # an event of a schema version this build does not know
    WRONG_EVENT = "wrong_event"  # a valid event of a type this subject does not carry
    BAD_SUBJECT = "bad_subject"  # wrong prefix, wrong number of tokens, too long
    BAD_TOKEN = "bad_token"  # a subject token that is empty, badly escaped or not what encode_token writes
    NODE_MISMATCH = "node_mismatch"  # a heartbeat or data-plane report speaking for another node than its subject's
    BAD_TRACE_CONTEXT = "bad_trace_context"  # a traceparent/tracestate header that is not W3C trace context
    UNTRANSLATABLE = "untranslatable"  # a Kubernetes object without identity or with values events refuse


def bounded(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` with control and other unprintable characters escaped, cut to ``limit`` characters."""
    head = text[: limit + 1]
    safe = head if head.isprintable() else "".join(c if c.isprintable() else ascii(c)[1:-1] for c in head)
    if len(safe) > limit or len(text) > limit:
        return f"{safe[: limit - 1]}…"
    return safe


@dataclass(frozen=True, slots=True)
class Refused:
    """An input a decoder could not read, and why."""

    reason: DropReason
    message: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", bounded(self.message))

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}" if self.message else self.reason.value
