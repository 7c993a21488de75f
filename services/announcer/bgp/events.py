"""What a session core tells its shell: states, reasons and events (RFC 4271 §8 naming)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from services.announcer.bgp.attributes import Attribute
from services.announcer.bgp.capabilities import AddressFamily, Negotiated
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.notification import Notification
from services.announcer.bgp.open import Open


class State(enum.Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class CloseReason(enum.Enum):
    STOPPED = "stopped"  # we stopped the session (Cease sent, or silently for graceful restart)
    CONNECTION_LOST = "connection_lost"
    HOLD_TIMER_EXPIRED = "hold_timer_expired"
    NOTIFICATION_RECEIVED = "notification_received"
    PROTOCOL_ERROR = "protocol_error"  # we found an error and sent a NOTIFICATION
    PEER_DOWN = "peer_down"  # BFD (or another liveness check) says the peer is unreachable


@dataclass(frozen=True)
class StateChanged:
    old: State
    new: State


@dataclass(frozen=True)
class Established:
    peer: Open
    negotiated: Negotiated


@dataclass(frozen=True)
class Closed:
    reason: CloseReason
    notification: Notification | None = None

    def describe(self) -> str:
        return self.reason.value + (f" ({self.notification.describe()})" if self.notification else "")


@dataclass(frozen=True)
class RoutesReceived:
    announced: tuple[tuple[AddressFamily, Prefix], ...]
    withdrawn: tuple[tuple[AddressFamily, Prefix], ...]
    attributes: tuple[Attribute, ...]
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutesCounted:
    """An UPDATE received and checked, its prefixes counted, not decoded (``ReceivedRoutes.COUNTED``)."""

    announced: int
    withdrawn: int
    errors: tuple[str, ...] = ()  # RFC 7606: what was discarded or treated as withdrawn, and why


@dataclass(frozen=True)
class EndOfRibReceived:
    family: AddressFamily


@dataclass(frozen=True)
class RefreshRequested:
    family: AddressFamily


@dataclass(frozen=True)
class AdvertisementsSent:
    announced: int
    withdrawn: int
    messages: int


Event = (
    StateChanged
    | Established
    | Closed
    | RoutesReceived
    | RoutesCounted
    | EndOfRibReceived
    | RefreshRequested
    | AdvertisementsSent
)
