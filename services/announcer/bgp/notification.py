"""NOTIFICATION message (RFC 4271 §4.5, §6): error codes and subcodes, and the error that carries them.

A :class:`Notification` is both the wire message and the exception every decoder raises: whoever catches it
can send it to the peer unchanged.
"""

from __future__ import annotations

import enum
from typing import Any

_NOTIFICATION_TYPE = 3


class ErrorCode(enum.IntEnum):
    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6
    ROUTE_REFRESH = 7  # RFC 7313


class HeaderSubcode(enum.IntEnum):
    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(enum.IntEnum):
    UNSPECIFIC = 0
    UNSUPPORTED_VERSION_NUMBER = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7  # RFC 5492


class UpdateSubcode(enum.IntEnum):
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmSubcode(enum.IntEnum):  # RFC 6608
    UNSPECIFIED = 0
    UNEXPECTED_IN_OPENSENT = 1
    UNEXPECTED_IN_OPENCONFIRM = 2
    UNEXPECTED_IN_ESTABLISHED = 3


class CeaseSubcode(enum.IntEnum):  # RFC 4486, RFC 8538
    MAXIMUM_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    HARD_RESET = 9
    BFD_DOWN = 10  # RFC 9384


class RouteRefreshSubcode(enum.IntEnum):  # RFC 7313
    INVALID_MESSAGE_LENGTH = 1


_SUBCODES: dict[int, type[enum.IntEnum]] = {
    ErrorCode.MESSAGE_HEADER: HeaderSubcode,
    ErrorCode.OPEN_MESSAGE: OpenSubcode,
    ErrorCode.UPDATE_MESSAGE: UpdateSubcode,
    ErrorCode.FSM: FsmSubcode,
    ErrorCode.CEASE: CeaseSubcode,
    ErrorCode.ROUTE_REFRESH: RouteRefreshSubcode,
}


def _name(value: int, enum_type: type[enum.IntEnum] | None) -> str:
    if enum_type is not None:
        try:
            return enum_type(value).name
        except ValueError:
            pass
    return f"UNKNOWN_{value}"


class Notification(Exception):
    """A BGP NOTIFICATION: raise it on a protocol error, send it with :meth:`encode`."""

    def __init__(self, code: int, subcode: int = 0, data: bytes = b"", *, reason: str = "") -> None:
        self.code = int(code)
        self.subcode = int(subcode)
        self.data = bytes(data)
        self.reason = reason
        super().__init__(self.describe())

    @property
    def code_name(self) -> str:
        return _name(self.code, ErrorCode)

    @property
    def subcode_name(self) -> str:
        if self.subcode == 0 and self.code not in (ErrorCode.OPEN_MESSAGE, ErrorCode.FSM):
            return "UNSPECIFIC"
        return _name(self.subcode, _SUBCODES.get(self.code))

    def describe(self) -> str:
        text = f"{self.code_name}/{self.subcode_name}"
        if self.reason:
            text += f": {self.reason}"
        return text

    def shutdown_message(self) -> str | None:
        """The RFC 9003 shutdown communication carried by a Cease shutdown or reset, if any."""
        if self.code != ErrorCode.CEASE or self.subcode not in (
            CeaseSubcode.ADMINISTRATIVE_SHUTDOWN,
            CeaseSubcode.ADMINISTRATIVE_RESET,
        ):
            return None
        if not self.data or self.data[0] + 1 > len(self.data):
            return None
        return self.data[1 : 1 + self.data[0]].decode("utf-8", errors="replace")

    def encode(self) -> bytes:
        body = bytes((self.code, self.subcode)) + self.data
        # framed here rather than with message.frame: message.py raises these errors, so imports us
        return b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + bytes((_NOTIFICATION_TYPE,)) + body

    @classmethod
    def decode(cls, body: bytes) -> Notification:
        if len(body) < 2:
            raise header_error(HeaderSubcode.BAD_MESSAGE_LENGTH, len(body) + 19, reason="short NOTIFICATION")
        return cls(body[0], body[1], body[2:])

    @classmethod
    def cease(cls, subcode: CeaseSubcode, message: str = "") -> Notification:
        data = b""
        if message and subcode in (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET):
            raw = message.encode("utf-8")[:255]
            data = bytes((len(raw),)) + raw
        return cls(ErrorCode.CEASE, subcode, data, reason=message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "NOTIFICATION",
            "code": self.code_name,
            "subcode": self.subcode_name,
            "data": self.data.hex(),
        }
        message = self.shutdown_message()
        if message is not None:
            out["message"] = message
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Notification):
            return NotImplemented
        return (self.code, self.subcode, self.data) == (other.code, other.subcode, other.data)

    def __hash__(self) -> int:
        return hash((self.code, self.subcode, self.data))


def header_error(subcode: HeaderSubcode, length: int | None = None, *, reason: str = "") -> Notification:
    data = length.to_bytes(2, "big") if length is not None and 0 <= length < 65536 else b""
    return Notification(ErrorCode.MESSAGE_HEADER, subcode, data, reason=reason)


def open_error(subcode: OpenSubcode, data: bytes = b"", *, reason: str = "") -> Notification:
    return Notification(ErrorCode.OPEN_MESSAGE, subcode, data, reason=reason)


def update_error(subcode: UpdateSubcode, data: bytes = b"", *, reason: str = "") -> Notification:
    return Notification(ErrorCode.UPDATE_MESSAGE, subcode, data, reason=reason)
