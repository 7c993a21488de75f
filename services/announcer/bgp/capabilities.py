"""OPEN capabilities (RFC 5492): multiprotocol (RFC 4760), route refresh (RFC 2918), extended next hop
(RFC 8950), graceful restart (RFC 4724), 4-octet AS numbers (RFC 6793); and :class:`Negotiated`, what both
ends agreed on."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple

from services.announcer.bgp.notification import OpenSubcode, open_error

AS_TRANS = 23456


class Afi(enum.IntEnum):
    IPV4 = 1
    IPV6 = 2


class Safi(enum.IntEnum):
    UNICAST = 1


class AddressFamily(NamedTuple):
    afi: int
    safi: int

    def __str__(self) -> str:
        afi = Afi(self.afi).name if self.afi in Afi._value2member_map_ else str(self.afi)
        safi = Safi(self.safi).name if self.safi in Safi._value2member_map_ else str(self.safi)
        return f"{afi}/{safi}".lower()


IPV4_UNICAST = AddressFamily(Afi.IPV4, Safi.UNICAST)
IPV6_UNICAST = AddressFamily(Afi.IPV6, Safi.UNICAST)


class CapabilityCode(enum.IntEnum):
    MULTIPROTOCOL = 1
    ROUTE_REFRESH = 2
    EXTENDED_NEXT_HOP = 5
    GRACEFUL_RESTART = 64
    FOUR_OCTET_AS = 65


@dataclass(frozen=True)
class Multiprotocol:
    family: AddressFamily
    code = CapabilityCode.MULTIPROTOCOL

    def encode_value(self) -> bytes:
        return self.family.afi.to_bytes(2, "big") + b"\x00" + bytes((self.family.safi,))

    @classmethod
    def decode_value(cls, value: bytes) -> Multiprotocol:
        if len(value) != 4:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="multiprotocol capability length")
        return cls(AddressFamily(int.from_bytes(value[:2], "big"), value[3]))

    def to_dict(self) -> dict[str, Any]:
        return {"multiprotocol": str(self.family)}


@dataclass(frozen=True)
class RouteRefresh:
    code = CapabilityCode.ROUTE_REFRESH

    def encode_value(self) -> bytes:
        return b""

    @classmethod
    def decode_value(cls, value: bytes) -> RouteRefresh:
        if value:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="route refresh capability length")
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {"route_refresh": True}


class NextHopEncoding(NamedTuple):
    """One entry of the extended next hop capability: NLRI of ``family`` may carry a next hop of ``next_hop_afi``."""

    family: AddressFamily
    next_hop_afi: int

    def __str__(self) -> str:
        afi = self.next_hop_afi
        return f"{self.family} via " + (Afi(afi).name.lower() if afi in Afi._value2member_map_ else str(afi))


IPV4_OVER_IPV6 = NextHopEncoding(IPV4_UNICAST, Afi.IPV6)
"""IPv4 unicast prefixes with an IPv6 next hop: what BGP unnumbered needs (RFC 8950 §4)."""


@dataclass(frozen=True)
class ExtendedNextHop:
    """RFC 8950 §3: the (NLRI AFI, NLRI SAFI, next hop AFI) triples this speaker can send and receive."""

    encodings: tuple[NextHopEncoding, ...]
    code = CapabilityCode.EXTENDED_NEXT_HOP

    def encode_value(self) -> bytes:
        return b"".join(
            e.family.afi.to_bytes(2, "big") + e.family.safi.to_bytes(2, "big") + e.next_hop_afi.to_bytes(2, "big")
            for e in self.encodings
        )

    @classmethod
    def decode_value(cls, value: bytes) -> ExtendedNextHop:
        if not value or len(value) % 6:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="extended next hop capability length")
        numbers = [int.from_bytes(value[i : i + 2], "big") for i in range(0, len(value), 2)]
        if any(safi > 0xFF for safi in numbers[1::3]):  # SAFIs are one octet wherever else they appear
            raise open_error(OpenSubcode.UNSPECIFIC, reason="extended next hop capability SAFI above 255")
        return cls(
            tuple(
                NextHopEncoding(AddressFamily(numbers[i], numbers[i + 1]), numbers[i + 2])
                for i in range(0, len(numbers), 3)
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {"extended_next_hop": [str(e) for e in self.encodings]}


@dataclass(frozen=True)
class GracefulRestart:
    restart_time: int
    restarting: bool = False
    notification: bool = False  # RFC 8538 "N" bit
    families: tuple[tuple[AddressFamily, bool], ...] = ()  # (family, forwarding state preserved)
    code = CapabilityCode.GRACEFUL_RESTART

    def encode_value(self) -> bytes:
        flags = (0x8 if self.restarting else 0) | (0x4 if self.notification else 0)
        out = ((flags << 12) | (self.restart_time & 0x0FFF)).to_bytes(2, "big")
        for family, forwarding in self.families:
            out += family.afi.to_bytes(2, "big") + bytes((family.safi, 0x80 if forwarding else 0))
        return out

    @classmethod
    def decode_value(cls, value: bytes) -> GracefulRestart:
        if len(value) < 2 or (len(value) - 2) % 4:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="graceful restart capability length")
        head = int.from_bytes(value[:2], "big")
        families = tuple(
            (AddressFamily(int.from_bytes(value[i : i + 2], "big"), value[i + 2]), bool(value[i + 3] & 0x80))
            for i in range(2, len(value), 4)
        )
        return cls(head & 0x0FFF, bool(head & 0x8000), bool(head & 0x4000), families)

    def to_dict(self) -> dict[str, Any]:
        return {
            "graceful_restart": {
                "restart_time": self.restart_time,
                "restarting": self.restarting,
                "notification": self.notification,
                "families": {str(f): forwarding for f, forwarding in self.families},
            }
        }


@dataclass(frozen=True)
class FourOctetAs:
    asn: int
    code = CapabilityCode.FOUR_OCTET_AS

    def encode_value(self) -> bytes:
        return self.asn.to_bytes(4, "big")

    @classmethod
    def decode_value(cls, value: bytes) -> FourOctetAs:
        if len(value) != 4:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="4-octet AS capability length")
        return cls(int.from_bytes(value, "big"))

    def to_dict(self) -> dict[str, Any]:
        return {"four_octet_as": self.asn}


@dataclass(frozen=True)
class UnknownCapability:
    code: int
    value: bytes = b""

    def encode_value(self) -> bytes:
        return self.value

    def to_dict(self) -> dict[str, Any]:
        return {"unknown": {"code": self.code, "value": self.value.hex()}}


Capability = Multiprotocol | RouteRefresh | ExtendedNextHop | GracefulRestart | FourOctetAs | UnknownCapability

_DECODERS: dict[int, Any] = {
    CapabilityCode.MULTIPROTOCOL: Multiprotocol.decode_value,
    CapabilityCode.ROUTE_REFRESH: RouteRefresh.decode_value,
    CapabilityCode.EXTENDED_NEXT_HOP: ExtendedNextHop.decode_value,
    CapabilityCode.GRACEFUL_RESTART: GracefulRestart.decode_value,
    CapabilityCode.FOUR_OCTET_AS: FourOctetAs.decode_value,
}


def encode_capability(capability: Capability) -> bytes:
    value = capability.encode_value()
    if len(value) > 255:
        raise ValueError("capability value longer than 255 octets")
    return bytes((int(capability.code), len(value))) + value


def decode_capabilities(data: bytes) -> list[Capability]:
    """Decode the capability TLVs of one Capabilities optional parameter."""
    out: list[Capability] = []
    offset = 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise open_error(OpenSubcode.UNSPECIFIC, reason="truncated capability header")
        code, length = data[offset], data[offset + 1]
        value = data[offset + 2 : offset + 2 + length]
        if len(value) != length:
            raise open_error(OpenSubcode.UNSPECIFIC, reason="truncated capability value")
        decoder = _DECODERS.get(code)
        out.append(decoder(value) if decoder is not None else UnknownCapability(code, value))
        offset += 2 + length
    return out


@dataclass(frozen=True)
class Negotiated:
    """What the two OPENs agreed on; encoders and decoders take it."""

    four_octet_as: bool = False
    families: frozenset[AddressFamily] = frozenset({IPV4_UNICAST})
    route_refresh: bool = False
    extended_next_hops: frozenset[NextHopEncoding] = frozenset()  # RFC 8950: what both ends advertised
    peer_graceful_restart: GracefulRestart | None = None
    hold_time: int = 0
    keepalive_time: float = 0.0
    ibgp: bool = False
    local_as: int = 0
    peer_as: int = 0

    @classmethod
    def from_capabilities(cls, ours: list[Capability], theirs: list[Capability], **values: Any) -> Negotiated:
        def families(caps: list[Capability]) -> set[AddressFamily]:
            found = {c.family for c in caps if isinstance(c, Multiprotocol)}
            # RFC 4760 §8: a speaker that advertises no multiprotocol capability supports IPv4 unicast only
            return found if found else {IPV4_UNICAST}

        def has(caps: list[Capability], kind: type[Any]) -> bool:
            return any(isinstance(c, kind) for c in caps)

        def encodings(caps: list[Capability]) -> set[NextHopEncoding]:
            return {e for c in caps if isinstance(c, ExtendedNextHop) for e in c.encodings}

        peer_gr = next((c for c in theirs if isinstance(c, GracefulRestart)), None)
        return cls(
            four_octet_as=has(ours, FourOctetAs) and has(theirs, FourOctetAs),
            families=frozenset(families(ours) & families(theirs)),
            route_refresh=has(ours, RouteRefresh) and has(theirs, RouteRefresh),
            extended_next_hops=frozenset(encodings(ours) & encodings(theirs)),
            peer_graceful_restart=peer_gr if has(ours, GracefulRestart) else None,
            **values,
        )
