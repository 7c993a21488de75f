"""MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760 §3, §4), with RFC 7606 §5.3 / §7.11 error handling."""

from __future__ import annotations

import ipaddress
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from services.announcer.bgp.attributes import (
    OPTIONAL_NON_TRANSITIVE,
    REGISTRY,
    AttributeCodec,
    AttributeType,
    ErrorAction,
    Known,
    malformed,
    register,
)
from services.announcer.bgp.capabilities import AddressFamily, Afi, Negotiated, Safi
from services.announcer.bgp.nlri import IPAddress, Prefix, count_prefixes, decode_prefixes, encode_prefixes
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
        family, raw_nh, rest = _split_reach(cls, value)
        if not _interpreted(family):
            return cls(family, (), (), value[3:])
        next_hops = _decode_next_hops(cls, value, family.afi, raw_nh)
        error = malformed(cls, value, "malformed NLRI", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        return cls(family, next_hops, decode_prefixes(rest, family.afi, error=error))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        if self.raw:
            return _family_octets(self.family) + self.raw
        nh = b"".join(a.packed for a in self.next_hops)
        return _family_octets(self.family) + bytes((len(nh),)) + nh + b"\x00" + encode_prefixes(self.nlri)

    def to_dict(self) -> Any:
        return {
            "family": str(self.family),
            "next_hops": [str(a) for a in self.next_hops],
            "nlri": [str(p) for p in self.nlri],
        }


def _family_octets(family: AddressFamily) -> bytes:
    return family.afi.to_bytes(2, "big") + bytes((family.safi,))


def _split_reach(cls: Any, value: bytes) -> tuple[AddressFamily, bytes, bytes]:
    """The family, the raw next hop and the NLRI octets of an MP_REACH_NLRI value."""
    if len(value) < 5:
        raise malformed(cls, value, "shorter than 5 octets", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
    family = AddressFamily(int.from_bytes(value[:2], "big"), value[2])
    nh_length = value[3]
    if 4 + nh_length + 1 > len(value):
        raise malformed(cls, value, "next hop overruns attribute", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
    return family, value[4 : 4 + nh_length], value[4 + nh_length + 1 :]  # one reserved octet skipped


def _split_unreach(cls: Any, value: bytes) -> AddressFamily:
    if len(value) < 3:
        raise malformed(cls, value, "shorter than 3 octets", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
    return AddressFamily(int.from_bytes(value[:2], "big"), value[2])


def _interpreted(family: AddressFamily) -> bool:
    """Only IPv4 and IPv6 unicast are read; other families are kept as received."""
    return family.safi == Safi.UNICAST and family.afi in (Afi.IPV4, Afi.IPV6)


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
        family = _split_unreach(cls, value)
        if not _interpreted(family):
            return cls(family, (), value[3:])
        error = malformed(cls, value, "malformed withdrawn routes", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        return cls(family, decode_prefixes(value[3:], family.afi, error=error))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return _family_octets(self.family) + (self.raw or encode_prefixes(self.withdrawn))

    def to_dict(self) -> Any:
        return {"family": str(self.family), "withdrawn": [str(p) for p in self.withdrawn]}


# --- received, counted: the announcer uses no received route, so their prefixes are checked, never decoded ---


@dataclass(frozen=True)
class _Counted(Known):
    FLAGS: ClassVar[int] = OPTIONAL_NON_TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.SESSION_RESET
    family: AddressFamily
    prefixes: int  # 0 for a family we do not interpret
    raw: bytes  # everything after AFI/SAFI, as received

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return _family_octets(self.family) + self.raw

    def to_dict(self) -> Any:
        return {"family": str(self.family), "prefixes": self.prefixes}


@dataclass(frozen=True)
class MpReachCount(_Counted):
    """MP_REACH_NLRI as received, checked like :class:`MpReachNlri` (RFC 7606 §7.11), its prefixes counted."""

    TYPE_CODE: ClassVar[int] = AttributeType.MP_REACH_NLRI

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> MpReachCount:
        family, raw_nh, rest = _split_reach(cls, value)
        if not _interpreted(family):
            return cls(family, 0, value[3:])
        _decode_next_hops(cls, value, family.afi, raw_nh)
        error = malformed(cls, value, "malformed NLRI", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        return cls(family, count_prefixes(rest, family.afi, error=error), value[3:])


@dataclass(frozen=True)
class MpUnreachCount(_Counted):
    """MP_UNREACH_NLRI as received, checked like :class:`MpUnreachNlri`, its prefixes counted; ``raw`` is
    empty in an End-of-RIB marker."""

    TYPE_CODE: ClassVar[int] = AttributeType.MP_UNREACH_NLRI

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> MpUnreachCount:
        family = _split_unreach(cls, value)
        if not _interpreted(family):
            return cls(family, 0, value[3:])
        error = malformed(cls, value, "malformed withdrawn routes", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        return cls(family, count_prefixes(value[3:], family.afi, error=error), value[3:])


COUNTING_CODECS: Mapping[int, type[AttributeCodec]] = ChainMap(
    {AttributeType.MP_REACH_NLRI: MpReachCount, AttributeType.MP_UNREACH_NLRI: MpUnreachCount}, REGISTRY
)
"""Every registered codec, but the multiprotocol attributes only counted."""
