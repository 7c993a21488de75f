"""The envelope every event travels in, and the base class of all event payloads.

An event is a past-tense fact. The payload is a frozen pydantic model that names its own ``type``;
the envelope around it carries what every event has: schema version, event id, time, producer and
the id of the event it answers (causation), so a chain of decisions can be followed.
Stream position (subject, sequence) is not in the body: it belongs to the bus message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, NewType

from pydantic import BaseModel, ConfigDict, Field

#: The largest body read (8 MiB): far above the 1 MB ``max_payload`` metalbus deploys NATS with, so only
#: a body nobody of ours wrote is refused for its size before any parsing.
MAX_BODY_BYTES = 8 * 1024 * 1024

EventId = NewType("EventId", str)

#: Turns a payload of one schema version into the next one, as JSON values (pure, total: it must accept
#: any dict, leaving what it does not recognise for validation to refuse).
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Event(BaseModel):
    """Base of every payload that crosses the bus. Our own events forbid unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Bumped when the payload's shape or vocabulary changes incompatibly; decoders upcast older versions.
    version: ClassVar[int] = 1
    #: ``{n: f}``: ``f`` turns a version ``n`` payload into version ``n + 1``; one for every older version.
    upcasters: ClassVar[Mapping[int, Upcaster]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if sorted(cls.upcasters) != list(range(1, cls.version)):
            raise TypeError(
                f"{cls.__name__} is at version {cls.version}: it needs one upcaster from each of the versions "
                f"1..{cls.version - 1}, not from {sorted(cls.upcasters)}"
            )


class EnvelopeHeader(BaseModel):
    """What every event carries besides its payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(ge=1, description="version of the payload's schema")
    event_id: EventId = Field(min_length=1, description="unique id of this event")
    time: datetime = Field(description="when the producer made the event (UTC)")
    producer: str = Field(min_length=1, description="component and instance, e.g. 'ipam/ipam-7d9f-x2'")
    causation_id: EventId | None = Field(
        default=None, description="id of the event this one answers, if any"
    )
