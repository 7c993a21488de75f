"""MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3, §4), with RFC 7606 §5.3 / §7.11 error handling."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, ClassVar

from services.announcer.bgp.attributes import (
    OPTIONAL_NON_TRANSITIVE,
    AttributeType,
    ErrorAction,
    Known,
    malformed,
    register,
)
from services.announcer.bgp.capabilities import AddressFamily, Afi, Negotiated, Safi
from services.announcer.bgp.nlri import IPAddress, Prefix, decode_prefixes, encode_prefixes
from services.announcer.bgp.notification import UpdateSubcode


@register
@dataclass(frozen=True)
class MpReachNlri(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.MP_REACH_NLRI
    FLAGS: ClassVar[int] = OPTIONAL_NON_TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.SESSION_RESET
    family: AddressFamily
    next_hops: tuple[IPAddress, ...]  # global, then link-local for IPv6 (RFC 2545)
    nlri: tuple[Prefix, ...] = ()
    raw: bytes = b""  # everything after AFI/SAFI, kept as received for families we do not interpret

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> MpReachNlri:
        if len(value) < 5:
            raise malformed(cls, value, "shorter than 5 octets", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        family = AddressFamily(int.from_bytes(value[:2], "big"), value[2])
        nh_length = value[3]
        if 4 + nh_length + 1 > len(value):
            raise malformed(cls, value, "next hop overruns attribute", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        raw_nh = value[4 : 4 + nh_length]
        rest = value[4 + nh_length + 1 :]  # one reserved octet skipped
        if family.safi != Safi.UNICAST or family.afi not in (Afi.IPV4, Afi.IPV6):
            return cls(family, (), (), value[3:])
        next_hops = _decode_next_hops(cls, value, family.afi, raw_nh)
        error = malformed(cls, value, "malformed NLRI", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        return cls(family, next_hops, decode_prefixes(rest, family.afi, error=error))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        if self.raw:
            return self.family.afi.to_bytes(2, "big") + bytes((self.family.safi,)) + self.raw
        nh = b"".join(a.packed for a in self.next_hops)
        return (
            self.family.afi.to_bytes(2, "big")
            + bytes((self.family.safi, len(nh)))
            + nh
            + b"\x00"
            + encode_prefixes(self.nlri)
        )

    def to_dict(self) -> Any:
        return {
            "family": str(self.family),
            "next_hops": [str(a) for a in self.next_hops],
            "nlri": [str(p) for p in self.nlri],
        }


def _decode_next_hops(cls: Any, value: bytes, afi: int, raw: bytes) -> tuple[IPAddress, ...]:
    if afi == Afi.IPV6 and len(raw) in (16, 32):
        return tuple(ipaddress.IPv6Address(raw[i : i + 16]) for i in range(0, len(raw), 16))
    if afi == Afi.IPV4 and len(raw) == 4:
        return (ipaddress.IPv4Address(raw),)
    if afi == Afi.IPV4 and len(raw) in (16, 32):  # RFC 8950 IPv4 NLRI with an IPv6 next hop
        return tuple(ipaddress.IPv6Address(raw[i : i + 16]) for i in range(0, len(raw), 16))
    raise malformed(cls, value, f"next hop length {len(raw)}", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)


@register
@dataclass(frozen=True)
class MpUnreachNlri(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.MP_UNREACH_NLRI
    FLAGS: ClassVar[int] = OPTIONAL_NON_TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.SESSION_RESET
    family: AddressFamily
    withdrawn: tuple[Prefix, ...] = ()
    raw: bytes = b""

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> MpUnreachNlri:
        if len(value) < 3:
            raise malformed(cls, value, "shorter than 3 octets", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        family = AddressFamily(int.from_bytes(value[:2], "big"), value[2])
        if family.safi != Safi.UNICAST or family.afi not in (Afi.IPV4, Afi.IPV6):
            return cls(family, (), value[3:])
        error = malformed(cls, value, "malformed withdrawn routes", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        return cls(family, decode_prefixes(value[3:], family.afi, error=error))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        head = self.family.afi.to_bytes(2, "big") + bytes((self.family.safi,))
        return head + (self.raw or encode_prefixes(self.withdrawn))

    def to_dict(self) -> Any:
        return {"family": str(self.family), "withdrawn": [str(p) for p in self.withdrawn]}
