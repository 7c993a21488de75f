"""BGP message framing (RFC 4271 §4.1): the 19-octet header, message types, KEEPALIVE, and a stream reader."""

from __future__ import annotations

import enum
from collections.abc import Iterator

from services.announcer.bgp.notification import ErrorCode, HeaderSubcode, Notification, header_error

MARKER = b"\xff" * 16
HEADER_LENGTH = 19
MAX_MESSAGE_LENGTH = 4096


class MessageType(enum.IntEnum):
    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5  # RFC 2918


MIN_LENGTH: dict[MessageType, int] = {
    MessageType.OPEN: 29,
    MessageType.UPDATE: 23,
    MessageType.NOTIFICATION: 21,
    MessageType.KEEPALIVE: 19,
    MessageType.ROUTE_REFRESH: 23,
}


def frame(message_type: MessageType, body: bytes) -> bytes:
    """Prefix ``body`` with the BGP header."""
    length = HEADER_LENGTH + len(body)
    if length > MAX_MESSAGE_LENGTH:
        raise ValueError(f"BGP message of {length} octets exceeds {MAX_MESSAGE_LENGTH}")
    return MARKER + length.to_bytes(2, "big") + bytes((message_type,)) + body


KEEPALIVE = frame(MessageType.KEEPALIVE, b"")


def parse_header(header: bytes) -> tuple[MessageType, int]:
    """Validate a 19-octet header; return the type and the whole message length."""
    if len(header) != HEADER_LENGTH:
        raise header_error(HeaderSubcode.BAD_MESSAGE_LENGTH, len(header), reason="truncated header")
    if header[:16] != MARKER:
        raise header_error(HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED, reason="marker is not all ones")
    length = int.from_bytes(header[16:18], "big")
    raw_type = header[18]
    try:
        message_type = MessageType(raw_type)
    except ValueError:
        raise Notification(
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_TYPE,
            bytes((raw_type,)),
            reason=f"message type {raw_type}",
        ) from None
    if length < MIN_LENGTH[message_type] or length > MAX_MESSAGE_LENGTH:
        raise header_error(HeaderSubcode.BAD_MESSAGE_LENGTH, length, reason=f"{message_type.name} of {length}")
    if message_type is MessageType.KEEPALIVE and length != HEADER_LENGTH:
        raise header_error(HeaderSubcode.BAD_MESSAGE_LENGTH, length, reason="KEEPALIVE with a body")
    return message_type, length


def split_message(data: bytes) -> tuple[MessageType, bytes]:
    """Split one whole framed message into its type and body (for tests and golden files)."""
    message_type, length = parse_header(data[:HEADER_LENGTH])
    if length != len(data):
        raise header_error(HeaderSubcode.BAD_MESSAGE_LENGTH, len(data), reason="length disagrees with data")
    return message_type, data[HEADER_LENGTH:]


class MessageReader:
    """Reassembles messages from a TCP byte stream. Errors are raised as :class:`Notification`."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def clear(self) -> None:
        self._buffer.clear()

    def __iter__(self) -> Iterator[tuple[MessageType, bytes]]:
        while len(self._buffer) >= HEADER_LENGTH:
            message_type, length = parse_header(bytes(self._buffer[:HEADER_LENGTH]))
            if len(self._buffer) < length:
                return
            body = bytes(self._buffer[HEADER_LENGTH:length])
            del self._buffer[:length]
            yield message_type, body
