"""What announcers do on the wire (stream ``ANNOUNCE``) and their liveness (plain heartbeat subjects)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

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


class AnnouncerHeartbeat(Event):
    """Sent about every 100 ms; ``leaving`` on graceful shutdown so placement hands over at once."""

    type: Literal["AnnouncerHeartbeat"] = "AnnouncerHeartbeat"
    node: str
    instance: str = Field(description="id of this announcer process; changes on restart")
    sequence: int = Field(ge=0)
    leaving: bool = False
