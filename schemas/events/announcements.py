"""What announcers do on the wire (stream ``ANNOUNCE``) and their liveness (plain heartbeat subjects)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

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
    """Sent every 2 s and at once after every (re)connect, on the connection it names: when the server
    reports that connection closed, the node is dead at once. ``leaving`` on graceful shutdown so placement
    hands over at once. Version 2 names the connection; version 1, sent ten times a second, named none."""

    version = 2
    upcasters = {1: _heartbeat_v1_to_v2}

    type: Literal["AnnouncerHeartbeat"] = "AnnouncerHeartbeat"
    node: str
    instance: str = Field(description="id of this announcer process; changes on restart")
    sequence: int = Field(ge=0)
    leaving: bool = False
    connection: BusConnection = Field(default=BusConnection(),
                                      description="the connection this heartbeat is sent on")
