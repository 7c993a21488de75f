"""Bytes <-> envelopes. Every decoder input is hostile: :func:`read_envelope` answers an envelope or a
:class:`~schemas.refusal.Refused` with the reason, and never raises."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from pydantic import ValidationError
from pydantic_core import from_json, to_json

from schemas.events import Envelope, Event, EventId
from schemas.events.base import MAX_BODY_BYTES as MAX_BODY_BYTES  # read here, also by the callers of before
from schemas.events.upcasting import up_to_date
from schemas.refusal import DropReason, Refused


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
    """Parse and validate a received message body: the envelope, or why it is not one. Total.

    A body of this build's version is validated straight from its bytes; one of another version (or one
    that does not validate, which may be another version's shape) is parsed, upcast or refused as newer
    (``upcasting.up_to_date``), then validated."""
    if not isinstance(data, bytes | bytearray | memoryview):
        return Refused(DropReason.NOT_JSON, f"a body of type {type(data).__name__}, not bytes")
    if len(data) > MAX_BODY_BYTES:
        return Refused(DropReason.TOO_LARGE, f"{len(data)} bytes, more than the {MAX_BODY_BYTES} read")
    try:
        envelope = Envelope.model_validate_json(data)
    except ValidationError as error:
        if _is_json_error(error):
            return _refusal(error)
        return _read_other_version(data, error)
    if envelope.schema_version != type(envelope.event).version:
        return _read_other_version(data, None)
    return envelope


def _read_other_version(data: bytes | bytearray | memoryview, error: ValidationError | None) -> Envelope | Refused:
    """``data`` is JSON that is not a valid envelope of this build's version (``error`` says why, if it did
    not validate): upcast it to this version, refuse it as newer, or refuse it for ``error``."""
    try:
        parsed = from_json(data.tobytes() if isinstance(data, memoryview) else data)
    except ValueError as json_error:
        return Refused(DropReason.NOT_JSON, str(json_error))
    body = up_to_date(parsed)
    if isinstance(body, Refused):
        return body
    if body is parsed and error is not None:
        return _refusal(error)  # nothing to upcast: the body is simply not an event
    try:
        envelope = Envelope.model_validate_json(to_json(body))
    except ValidationError as upcast_error:
        return _refusal(upcast_error)
    if envelope.schema_version != type(envelope.event).version:
        return Refused(DropReason.WRONG_SHAPE, f"schema_version: {parsed.get('schema_version')!r} is not a version")
    return envelope


def _is_json_error(error: ValidationError) -> bool:
    return error.errors(include_url=False, include_input=False)[0]["type"] == "json_invalid"


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
