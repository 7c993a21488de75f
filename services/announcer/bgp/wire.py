"""Decode one whole framed message of any type: for golden tests, logs and fuzzing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.announcer.bgp.capabilities import Negotiated
from services.announcer.bgp.message import KEEPALIVE, MessageType, split_message
from services.announcer.bgp.notification import Notification
from services.announcer.bgp.open import Open
from services.announcer.bgp.route_refresh import RouteRefreshMessage
from services.announcer.bgp.update import Update


@dataclass(frozen=True)
class Keepalive:
    def encode(self) -> bytes:
        return KEEPALIVE

    def to_dict(self) -> dict[str, Any]:
        return {"type": "KEEPALIVE"}


Message = Open | Update | Notification | Keepalive | RouteRefreshMessage


def decode_message(data: bytes, negotiated: Negotiated | None = None) -> Message:
    """Decode a framed message; raise :class:`Notification` (only) when it is malformed."""
    message_type, body = split_message(data)
    if message_type is MessageType.OPEN:
        return Open.decode(body)
    if message_type is MessageType.UPDATE:
        return Update.decode(body, negotiated or Negotiated())
    if message_type is MessageType.NOTIFICATION:
        return Notification.decode(body)
    if message_type is MessageType.ROUTE_REFRESH:
        return RouteRefreshMessage.decode(body)
    return Keepalive()
