"""Bytes <-> envelopes. Every decoder input is hostile: anything wrong is one ``InvalidEvent``."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from pydantic import ValidationError

from schemas.events import Envelope, Event, EventId


class InvalidEvent(ValueError):
    """A message body that is not a valid event of a known type and version."""


def new_event_id() -> EventId:
    """128 random bits as 32 hex digits. Unique, not secret: the module's generator (seeded from the
    OS, re-seeded in a forked child) is ten times cheaper than ``uuid4``, which reads the OS's
    randomness for every event."""
    return EventId(f"{random.getrandbits(128):032x}")


def wrap(
    event: Event,
    *,
    producer: str,
    causation_id: EventId | None = None,
    event_id: EventId | None = None,
    time: datetime | None = None,
) -> Envelope:
    """Put a payload into an envelope stamped with id, time and producer."""
    return Envelope(
        schema_version=type(event).version,
        event_id=event_id or new_event_id(),
        time=time or datetime.now(UTC),
        producer=producer,
        causation_id=causation_id,
        event=event,  # type: ignore[arg-type,unused-ignore]  # a concrete member of AnyEvent at run time
    )


def encode(envelope: Envelope) -> bytes:
    return envelope.model_dump_json(exclude_defaults=False).encode()


def decode(data: bytes) -> Envelope:
    """Parse and validate a message body; raise ``InvalidEvent`` with a precise reason."""
    try:
        envelope = Envelope.model_validate_json(data)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "<body>"
        raise InvalidEvent(f"{location}: {first['msg']} ({error.error_count()} error(s))") from None
    known = type(envelope.event).version
    if envelope.schema_version > known:
        raise InvalidEvent(
            f"{envelope.event.type} schema version {envelope.schema_version} is newer than "
            f"the {known} this build understands"
        )
    return envelope
