"""Bytes <-> envelopes. Every decoder input is hostile: :func:`read_envelope` answers an envelope or a
:class:`~schemas.refusal.Refused` with the reason, and never raises."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from pydantic import ValidationError

from schemas.events import Envelope, Event, EventId
from schemas.refusal import DropReason, Refused

#: The largest body read (8 MiB): far above the 1 MB ``max_payload`` metalbus deploys NATS with, so only
#: a body nobody of ours wrote is refused for its size before any parsing.
MAX_BODY_BYTES = 8 * 1024 * 1024


class InvalidEvent(ValueError):
    """A message body that is not a valid event of a known type and version (see :func:`decode`)."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(str(refused))
        self.refused = refused


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


def read_envelope(data: bytes) -> Envelope | Refused:
    """Parse and validate a received message body: the envelope, or why it is not one. Total."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return Refused(DropReason.NOT_JSON, f"a body of type {type(data).__name__}, not bytes")
    if len(data) > MAX_BODY_BYTES:
        return Refused(DropReason.TOO_LARGE, f"{len(data)} bytes, more than the {MAX_BODY_BYTES} read")
    try:
        envelope = Envelope.model_validate_json(data)
    except ValidationError as error:
        return _refusal(error)
    known = type(envelope.event).version
    if envelope.schema_version > known:
        return Refused(
            DropReason.NEWER_SCHEMA,
            f"{envelope.event.type} schema version {envelope.schema_version} is newer than "
            f"the {known} this build understands",
        )
    return envelope


def _refusal(error: ValidationError) -> Refused:
    first = error.errors(include_url=False, include_input=False)[0]
    location = ".".join(str(part) for part in first["loc"]) or "<body>"
    message = f"{location}: {first['msg']} ({error.error_count()} error(s))"
    if first["type"] != "json_invalid":
        return Refused(DropReason.WRONG_SHAPE, message)
    if "recursion limit" in first["msg"]:
        return Refused(DropReason.TOO_DEEP, message)
    return Refused(DropReason.NOT_JSON, message)


def decode(data: bytes) -> Envelope:
    """:func:`read_envelope` for a body known to be an event (one this process or a test made): a
    refusal is raised as ``InvalidEvent``."""
    envelope = read_envelope(data)
    if isinstance(envelope, Refused):
        raise InvalidEvent(envelope)
    return envelope
