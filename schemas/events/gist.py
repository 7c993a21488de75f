"""The few fields a replay of tens of thousands of messages needs, read without building the event's model.

An L2 agent starting at 50 000 Services reads every placement of the cluster to learn, for each IP, its newest
epoch and node; only its own few need the full event (Services, interfaces, trace). :func:`read_placement_gist`
validates just the version, type, IP and node of a body (a third of the full read's cost) and answers None
for anything else — another version, another type, a body that is not JSON or lacks those fields — so the
caller reads that one with the total reader (``schemas.events.codec.read_envelope``), which upcasts it
or refuses it with its reason. The other fields of a body read this way are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from schemas.events.base import MAX_BODY_BYTES
from schemas.events.decisions import L2PlacementCleared, L2PlacementDecided


@dataclass(frozen=True, slots=True)
class PlacementGist:
    """An L2 placement's IP (unparsed) and node; node None: cleared."""

    ip: str
    node: str | None


class _Decided(TypedDict):
    type: Literal["L2PlacementDecided"]
    ip: str
    node: str


class _Cleared(TypedDict):
    type: Literal["L2PlacementCleared"]
    ip: str


class _Body(TypedDict):
    schema_version: int
    event: Annotated[_Decided | _Cleared, Field(discriminator="type")]


_BODY = TypeAdapter(_Body)


def read_placement_gist(data: bytes) -> PlacementGist | None:
    """The IP and node of an L2 placement of this build's version; None: read it with the total reader."""
    if len(data) > MAX_BODY_BYTES:
        return None
    try:
        body = _BODY.validate_json(data)
    except ValidationError:
        return None
    event = body["event"]
    if event["type"] == "L2PlacementCleared":
        return PlacementGist(ip=event["ip"], node=None) if body["schema_version"] == _CLEARED else None
    return PlacementGist(ip=event["ip"], node=event["node"]) if body["schema_version"] == _DECIDED else None


_DECIDED = L2PlacementDecided.version
_CLEARED = L2PlacementCleared.version
