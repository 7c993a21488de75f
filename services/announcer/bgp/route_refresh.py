"""ROUTE-REFRESH message (RFC 2918 §3; length errors per RFC 7313 §5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.announcer.bgp.capabilities import AddressFamily
from services.announcer.bgp.message import HEADER_LENGTH, MARKER, MessageType, frame
from services.announcer.bgp.notification import ErrorCode, Notification, RouteRefreshSubcode


@dataclass(frozen=True)
class RouteRefreshMessage:
    family: AddressFamily
    subtype: int = 0  # RFC 7313 demarcation subtypes; 0 is a plain request

    def encode(self) -> bytes:
        return frame(
            MessageType.ROUTE_REFRESH,
            self.family.afi.to_bytes(2, "big") + bytes((self.subtype, self.family.safi)),
        )

    @classmethod
    def decode(cls, body: bytes) -> RouteRefreshMessage:
        if len(body) != 4:
            raise Notification(
                ErrorCode.ROUTE_REFRESH,
                RouteRefreshSubcode.INVALID_MESSAGE_LENGTH,
                MARKER + (HEADER_LENGTH + len(body)).to_bytes(2, "big") + bytes((MessageType.ROUTE_REFRESH,)) + body,
                reason=f"ROUTE-REFRESH body of {len(body)} octets",
            )
        return cls(AddressFamily(int.from_bytes(body[:2], "big"), body[3]), body[2])

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ROUTE_REFRESH", "family": str(self.family), "subtype": self.subtype}
