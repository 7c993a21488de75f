"""OPEN message (RFC 4271 §4.2) with capabilities as optional parameters (RFC 5492, RFC 9072)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from services.announcer.bgp.capabilities import (
    AS_TRANS,
    Capability,
    FourOctetAs,
    decode_capabilities,
    encode_capability,
)
from services.announcer.bgp.message import MessageType, frame
from services.announcer.bgp.notification import OpenSubcode, open_error

BGP_VERSION = 4
_PARAM_CAPABILITIES = 2
_PARAM_EXTENDED = 255  # RFC 9072 extended optional parameters length


@dataclass(frozen=True)
class Open:
    my_as: int  # the 2-octet field: AS_TRANS when the real AS needs 4 octets
    hold_time: int
    bgp_identifier: ipaddress.IPv4Address
    capabilities: tuple[Capability, ...] = ()
    version: int = BGP_VERSION

    @classmethod
    def build(
        cls,
        *,
        asn: int,
        hold_time: int,
        bgp_identifier: ipaddress.IPv4Address,
        capabilities: tuple[Capability, ...] = (),
    ) -> Open:
        """An OPEN for ``asn``, always with the 4-octet AS capability (RFC 6793)."""
        caps = (*tuple(c for c in capabilities if not isinstance(c, FourOctetAs)), FourOctetAs(asn))
        return cls(asn if asn <= 0xFFFF else AS_TRANS, hold_time, bgp_identifier, caps)

    @property
    def asn(self) -> int:
        """The speaker's AS: from the 4-octet AS capability when present (RFC 6793 §4.1)."""
        four = next((c for c in self.capabilities if isinstance(c, FourOctetAs)), None)
        return four.asn if four is not None else self.my_as

    def encode(self) -> bytes:
        caps = b"".join(encode_capability(c) for c in self.capabilities)
        params = b""
        if caps:
            if len(caps) > 255:
                raise ValueError("capabilities too long for one optional parameter")
            params = bytes((_PARAM_CAPABILITIES, len(caps))) + caps
        if len(params) > 255:
            raise ValueError("optional parameters too long")
        body = (
            bytes((self.version,))
            + self.my_as.to_bytes(2, "big")
            + self.hold_time.to_bytes(2, "big")
            + self.bgp_identifier.packed
            + bytes((len(params),))
            + params
        )
        return frame(MessageType.OPEN, body)

    @classmethod
    def decode(cls, body: bytes) -> Open:
        """Decode and check an OPEN body (version, hold time, identifier, optional parameters).

        Checks that depend on configuration (the peer's AS, our own identifier) belong to the session.
        """
        if len(body) < 10:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="OPEN shorter than 10 octets")
        version = body[0]
        if version != BGP_VERSION:
            raise open_error(
                OpenSubcode.UNSUPPORTED_VERSION_NUMBER,
                BGP_VERSION.to_bytes(2, "big"),
                reason=f"version {version}",
            )
        my_as = int.from_bytes(body[1:3], "big")
        hold_time = int.from_bytes(body[3:5], "big")
        if hold_time in (1, 2):
            raise open_error(OpenSubcode.UNACCEPTABLE_HOLD_TIME, reason=f"hold time {hold_time}")
        identifier = ipaddress.IPv4Address(body[5:9])
        if int(identifier) == 0:
            raise open_error(OpenSubcode.BAD_BGP_IDENTIFIER, body[5:9], reason="identifier 0.0.0.0")
        capabilities = tuple(_decode_parameters(body[9:]))
        return cls(my_as, hold_time, identifier, capabilities, version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "OPEN",
            "version": self.version,
            "my_as": self.my_as,
            "asn": self.asn,
            "hold_time": self.hold_time,
            "bgp_identifier": str(self.bgp_identifier),
            "capabilities": [c.to_dict() for c in self.capabilities],
        }


def _decode_parameters(data: bytes) -> list[Capability]:
    length = data[0]
    if length == _PARAM_EXTENDED and len(data) >= 4 and data[1] == _PARAM_EXTENDED:
        length = int.from_bytes(data[2:4], "big")  # RFC 9072
        params, size_of_length = data[4:], 2
    else:
        params, size_of_length = data[1:], 1
    if len(params) != length:
        raise open_error(OpenSubcode.UNSPECIFIC, reason="optional parameters length disagrees with OPEN")
    out: list[Capability] = []
    offset = 0
    while offset < len(params):
        head = 1 + size_of_length
        if offset + head > len(params):
            raise open_error(OpenSubcode.UNSPECIFIC, reason="truncated optional parameter")
        kind = params[offset]
        size = int.from_bytes(params[offset + 1 : offset + head], "big")
        value = params[offset + head : offset + head + size]
        if len(value) != size:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="truncated optional parameter value")
        if kind != _PARAM_CAPABILITIES:
            raise open_error(OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER, reason=f"optional parameter {kind}")
        out.extend(decode_capabilities(value))
        offset += head + size
    return out
