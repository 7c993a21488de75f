"""What announcers do on the wire (stream ``ANNOUNCE``) and their liveness (plain heartbeat subjects)."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events.base import Event
from schemas.events.decisions import ServiceId


class AnnouncementMode(StrEnum):
    L2 = "layer2"
    BGP = "bgp"


class AnnouncementReported(Event):
    """Node ``node`` now announces (or stopped announcing) ``ip``."""

    type: Literal["AnnouncementReported"] = "AnnouncementReported"
    node: str
    ip: str
    mode: AnnouncementMode
    announcing: bool
    services: tuple[ServiceId, ...] = ()
    interfaces: tuple[str, ...] = Field(default=(), description="L2: interfaces answering for the IP")
    peers: tuple[str, ...] = Field(default=(), description="BGP: peers the prefix is advertised to")
    placement_epoch: int = Field(default=0, ge=0, description="IPAM sequence of the placement acted on")


#: Linux interface names are at most 15 bytes; a node reports at most this many of them.
_INTERFACE_NAME = 15
MAX_REPORTED_INTERFACES = 256


class DataPlaneReported(Event):
    """What node ``node``'s announcer can answer ARP/NDP on, reported when it changes (and once a week
    unchanged, so ``ANNOUNCE`` always holds it), on its own subject ``announce.<node>.dataplane``.

    ``ready`` is false while the announcer starts (published before its first heartbeat) and stops, and
    until it has read the placements and opened its L2 ports. ``interfaces`` answer for an IP whose
    L2Advertisements name none; ``named_only`` answer only where an advertisement names them (the
    announcer's exclusion patterns leave them out otherwise; pod veths are not listed). ipam places an IP
    only on a node whose announcer instance reported it can answer for it."""

    type: Literal["DataPlaneReported"] = "DataPlaneReported"
    node: str
    instance: str = Field(description="the announcer process (as its heartbeats name it)")
    ready: bool
    interfaces: tuple[Annotated[str, Field(max_length=_INTERFACE_NAME)], ...] = Field(
        default=(), max_length=MAX_REPORTED_INTERFACES)
    named_only: tuple[Annotated[str, Field(max_length=_INTERFACE_NAME)], ...] = Field(
        default=(), max_length=MAX_REPORTED_INTERFACES)

    def answers(self, listed: Collection[str] = ()) -> bool:
        """Whether the node can answer for an IP whose L2Advertisements name ``listed`` (none: any interface)."""
        return self.ready and answers_on(self.interfaces, self.named_only, listed)


def answers_on(interfaces: Collection[str], named_only: Collection[str], listed: Collection[str]) -> bool:
    """Whether a node answering on ``interfaces`` (and on ``named_only`` where named) can answer for an IP
    whose L2Advertisements name ``listed``: one of ``interfaces`` when they name none, else one of those named."""
    if not listed:
        return bool(interfaces)
    return any(name in interfaces or name in named_only for name in listed)


class BGPSessionState(StrEnum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class BGPSessionChanged(Event):
    type: Literal["BGPSessionChanged"] = "BGPSessionChanged"
    node: str
    peer: str = Field(description="BGPPeer namespace/name")
    peer_address: str
    state: BGPSessionState
    reason: str = ""


class BusConnection(BaseModel):
    """One client connection to a NATS server, as the server names it (its INFO to the client, its
    advisory when the connection closes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_id: str = Field(default="", max_length=128, description="the server's id ('' when unknown)")
    client_id: int = Field(default=0, ge=0, description="the id that server gave the connection (0: unknown)")


def _heartbeat_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 named no connection: its node is judged by its heartbeats alone."""
    return {"connection": {}, **payload}


class AnnouncerHeartbeat(Event):
    """Sent every 2 s (10 s while the active ipam grants it), at once after every (re)connect and in answer
    to a :class:`RollCall`, on the connection it names: when the server reports that connection closed, the
    node is dead at once. ``leaving`` on graceful shutdown so placement hands over at once. Version 2 names
    the connection; version 1, sent ten times a second, named none."""

    version = 2
    upcasters = {1: _heartbeat_v1_to_v2}

    type: Literal["AnnouncerHeartbeat"] = "AnnouncerHeartbeat"
    node: str
    instance: str = Field(description="id of this announcer process; changes on restart")
    sequence: int = Field(ge=0)
    leaving: bool = False
    connection: BusConnection = Field(default=BusConnection(),
                                      description="the connection this heartbeat is sent on")


class RollCall(Event):
    """Every announcer, heartbeat now: asked by whoever starts listening to heartbeats (an ipam replica, after
    every (re)connect of its liveness connection; ``metalbus status``), so it need not wait a heartbeat
    interval to know who is live. An announcer answers at most once a second, whatever it is asked. The active
    ipam replica also grants a longer interval (``interval``), which each announcer keeps for a while."""

    type: Literal["RollCall"] = "RollCall"
    caller: str = Field(max_length=128, description="who asks (a component), for the logs")
    interval: float = Field(default=0.0, ge=0.0, le=3600.0,
                            description="the heartbeat interval granted, seconds (0: none, only answer)")
