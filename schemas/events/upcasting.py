"""Old events read as current ones: the upcasters each payload type declares, applied before validation.

An envelope names its payload's ``schema_version``. A payload type at version ``n`` declares one upcaster
from each older version (``Event.upcasters``: a pure ``dict -> dict`` on the JSON value); a body of an
older version is brought up to date one version at a time and only then validated, so every reader sees
the current model whatever release wrote the log. A version newer than this build knows is refused, never
guessed at. Pure: JSON values in, JSON values or a refusal out; never raises.
"""

from __future__ import annotations

from typing import Any

from schemas.events import EVENT_TYPES, Event
from schemas.refusal import DropReason, Refused

#: Payload types by the ``type`` they carry.
_TYPES: dict[str, type[Event]] = {event_type.model_fields["type"].default: event_type for event_type in EVENT_TYPES}


def up_to_date(body: object) -> object | Refused:
    """The envelope ``body`` (a parsed JSON value) with its payload upcast to the version this build writes.

    Anything that is not an envelope of a known type with an integer version is returned as it is, for
    validation to refuse with its own reason; a newer version than this build knows is refused here."""
    if not isinstance(body, dict):
        return body
    payload, version = body.get("event"), body.get("schema_version")
    if not isinstance(payload, dict) or type(version) is not int or version < 1:
        return body
    event_type = _TYPES.get(payload["type"]) if isinstance(payload.get("type"), str) else None
    if event_type is None or version == event_type.version:
        return body
    if version > event_type.version:
        return Refused(
            DropReason.NEWER_SCHEMA,
            f"{event_type.__name__} schema version {version} is newer than the {event_type.version} this build "
            "understands",
        )
    upcast = _upcast(event_type, payload, version)
    if isinstance(upcast, Refused):
        return upcast
    return {**body, "schema_version": event_type.version, "event": upcast}


def _upcast(event_type: type[Event], payload: dict[str, Any], version: int) -> dict[str, Any] | Refused:
    for step in range(version, event_type.version):
        try:
            payload = event_type.upcasters[step](payload)
        except (LookupError, TypeError, ValueError, AttributeError) as error:
            return Refused(
                DropReason.WRONG_SHAPE,
                f"{event_type.__name__} of schema version {version} cannot be read as version {step + 1}: "
                f"{type(error).__name__}: {error}",
            )
    return payload
