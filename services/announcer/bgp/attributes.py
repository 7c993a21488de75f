"""Path attributes (RFC 4271 §4.3, §5) with RFC 7606 error handling, registered by type code.

Each attribute class knows its type code, its expected Optional/Transitive flags, what to do when it is
malformed (:class:`ErrorAction`), and how to decode/encode its value given the :class:`Negotiated` state.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

from services.announcer.bgp.capabilities import Negotiated
from services.announcer.bgp.notification import ErrorCode, Notification, UpdateSubcode


class Flag(enum.IntFlag):
    OPTIONAL = 0x80
    TRANSITIVE = 0x40
    PARTIAL = 0x20
    EXTENDED_LENGTH = 0x10


WELL_KNOWN = Flag.TRANSITIVE
OPTIONAL_TRANSITIVE = Flag.OPTIONAL | Flag.TRANSITIVE
OPTIONAL_NON_TRANSITIVE = Flag.OPTIONAL


class AttributeType(enum.IntEnum):
    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MULTI_EXIT_DISC = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8  # RFC 1997
    MP_REACH_NLRI = 14  # RFC 4760
    MP_UNREACH_NLRI = 15
    AS4_PATH = 17  # RFC 6793
    AS4_AGGREGATOR = 18
    LARGE_COMMUNITIES = 32  # RFC 8092


class ErrorAction(enum.IntEnum):
    """RFC 7606 §2, from the mildest to the harshest."""

    ATTRIBUTE_DISCARD = 1
    TREAT_AS_WITHDRAW = 2
    SESSION_RESET = 3


class MalformedAttribute(Notification):
    """A malformed attribute; ``action`` says how the UPDATE decoder must handle it."""

    def __init__(self, action: ErrorAction, subcode: UpdateSubcode, data: bytes = b"", *, reason: str = "") -> None:
        self.action = action
        super().__init__(ErrorCode.UPDATE_MESSAGE, subcode, data, reason=reason)


class Attribute(Protocol):
    @property
    def type_code(self) -> int: ...

    @property
    def flags(self) -> int: ...

    def encode_value(self, negotiated: Negotiated) -> bytes: ...

    def to_dict(self) -> Any: ...


class AttributeCodec(Protocol):
    TYPE_CODE: ClassVar[int]
    FLAGS: ClassVar[int]
    ON_ERROR: ClassVar[ErrorAction]

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> Attribute: ...


class Known:
    """Base of the attributes this package interprets: type code and flags are class constants."""

    TYPE_CODE: ClassVar[int]
    FLAGS: ClassVar[int]
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.TREAT_AS_WITHDRAW

    @property
    def type_code(self) -> int:
        return self.TYPE_CODE

    @property
    def flags(self) -> int:
        return self.FLAGS


REGISTRY: dict[int, type[AttributeCodec]] = {}
_C = TypeVar("_C", bound=type[Any])


def register(cls: _C) -> _C:
    REGISTRY[cls.TYPE_CODE] = cls
    return cls


def malformed(
    cls: type[AttributeCodec], value: bytes, reason: str, subcode: UpdateSubcode | None = None
) -> MalformedAttribute:
    """The error for a malformed attribute of ``cls``; data is the attribute as received (RFC 4271 §6.3)."""
    return MalformedAttribute(
        cls.ON_ERROR,
        subcode or UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
        encode_header(cls.FLAGS, cls.TYPE_CODE, len(value)) + value,
        reason=f"{AttributeType(cls.TYPE_CODE).name}: {reason}",
    )


def encode_header(flags: int, type_code: int, length: int) -> bytes:
    if length > 255:
        return bytes((flags | Flag.EXTENDED_LENGTH, type_code)) + length.to_bytes(2, "big")
    return bytes((flags & ~Flag.EXTENDED_LENGTH, type_code, length))


def encode_attribute(attribute: Attribute, negotiated: Negotiated) -> bytes:
    value = attribute.encode_value(negotiated)
    return encode_header(attribute.flags, attribute.type_code, len(value)) + value


class OriginType(enum.IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


def _fixed(cls: type[AttributeCodec], value: bytes, size: int) -> int:
    if len(value) != size:
        raise malformed(cls, value, f"length {len(value)}, expected {size}")
    return int.from_bytes(value, "big")


@register
@dataclass(frozen=True)
class Origin(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.ORIGIN
    FLAGS: ClassVar[int] = WELL_KNOWN
    origin: OriginType = OriginType.IGP

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> Origin:
        raw = _fixed(cls, value, 1)
        if raw not in OriginType._value2member_map_:
            raise malformed(cls, value, f"value {raw}", UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE)
        return cls(OriginType(raw))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return bytes((self.origin,))

    def to_dict(self) -> Any:
        return self.origin.name


@dataclass(frozen=True)
class _Scalar(Known):
    """An attribute whose value is one unsigned 32-bit number."""

    value: int

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> Any:
        return cls(_fixed(cls, value, 4))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return self.value.to_bytes(4, "big")

    def to_dict(self) -> Any:
        return self.value


@register
@dataclass(frozen=True)
class MultiExitDisc(_Scalar):
    TYPE_CODE: ClassVar[int] = AttributeType.MULTI_EXIT_DISC
    FLAGS: ClassVar[int] = OPTIONAL_NON_TRANSITIVE


@register
@dataclass(frozen=True)
class LocalPref(_Scalar):
    TYPE_CODE: ClassVar[int] = AttributeType.LOCAL_PREF
    FLAGS: ClassVar[int] = WELL_KNOWN


@register
@dataclass(frozen=True)
class NextHop(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.NEXT_HOP
    FLAGS: ClassVar[int] = WELL_KNOWN
    address: ipaddress.IPv4Address

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> NextHop:
        _fixed(cls, value, 4)
        address = ipaddress.IPv4Address(value)
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            raise malformed(cls, value, f"address {address}", UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE)
        return cls(address)

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return self.address.packed

    def to_dict(self) -> Any:
        return str(self.address)


@register
@dataclass(frozen=True)
class AtomicAggregate(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.ATOMIC_AGGREGATE
    FLAGS: ClassVar[int] = WELL_KNOWN
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.ATTRIBUTE_DISCARD

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> AtomicAggregate:
        if value:
            raise malformed(cls, value, "has a value")
        return cls()

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return b""

    def to_dict(self) -> Any:
        return True


@register
@dataclass(frozen=True)
class Aggregator(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.AGGREGATOR
    FLAGS: ClassVar[int] = OPTIONAL_TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.ATTRIBUTE_DISCARD
    asn: int
    address: ipaddress.IPv4Address

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> Aggregator:
        size = 4 if negotiated.four_octet_as else 2
        if len(value) != size + 4:
            raise malformed(cls, value, f"length {len(value)}")
        return cls(int.from_bytes(value[:size], "big"), ipaddress.IPv4Address(value[size:]))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return self.asn.to_bytes(4 if negotiated.four_octet_as else 2, "big") + self.address.packed

    def to_dict(self) -> Any:
        return {"asn": self.asn, "address": str(self.address)}


def format_community(value: int) -> str:
    return f"{value >> 16}:{value & 0xFFFF}"


def parse_community(text: str) -> int:
    """``"65000:100"`` → the 32-bit community value."""
    high, _, low = text.partition(":")
    a, b = int(high), int(low)
    if not (0 <= a <= 0xFFFF and 0 <= b <= 0xFFFF):
        raise ValueError(f"community {text!r} out of range")
    return (a << 16) | b


@register
@dataclass(frozen=True)
class Communities(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.COMMUNITIES
    FLAGS: ClassVar[int] = OPTIONAL_TRANSITIVE
    values: tuple[int, ...]

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> Communities:
        if not value or len(value) % 4:
            raise malformed(cls, value, f"length {len(value)}", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        return cls(tuple(int.from_bytes(value[i : i + 4], "big") for i in range(0, len(value), 4)))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return b"".join(v.to_bytes(4, "big") for v in self.values)

    def to_dict(self) -> Any:
        return [format_community(v) for v in self.values]


LargeCommunity = tuple[int, int, int]


@register
@dataclass(frozen=True)
class LargeCommunities(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.LARGE_COMMUNITIES
    FLAGS: ClassVar[int] = OPTIONAL_TRANSITIVE
    values: tuple[LargeCommunity, ...]

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> LargeCommunities:
        if not value or len(value) % 12:
            raise malformed(cls, value, f"length {len(value)}", UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR)
        words = [int.from_bytes(value[i : i + 4], "big") for i in range(0, len(value), 4)]
        return cls(tuple((words[i], words[i + 1], words[i + 2]) for i in range(0, len(words), 3)))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return b"".join(b"".join(part.to_bytes(4, "big") for part in v) for v in self.values)

    def to_dict(self) -> Any:
        return [f"{g}:{a}:{b}" for g, a, b in self.values]


@dataclass(frozen=True)
class UnknownAttribute:
    """An optional attribute we do not interpret; kept as received (transitive ones get PARTIAL)."""

    flags: int
    type_code: int
    value: bytes

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return self.value

    def to_dict(self) -> Any:
        return {"flags": self.flags, "value": self.value.hex()}


def decode_attribute(
    flags: int,
    type_code: int,
    value: bytes,
    negotiated: Negotiated,
    *,
    codecs: Mapping[int, type[AttributeCodec]] = REGISTRY,
) -> Attribute:
    """Decode one attribute with its codec in ``codecs``; raise :class:`MalformedAttribute` or
    :class:`Notification`."""
    codec = codecs.get(type_code)
    if codec is None:
        if not flags & Flag.OPTIONAL:
            raise Notification(
                ErrorCode.UPDATE_MESSAGE,
                UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                encode_header(flags, type_code, len(value)) + value,
                reason=f"unrecognized well-known attribute {type_code}",
            )
        if flags & Flag.TRANSITIVE:
            flags |= Flag.PARTIAL
        return UnknownAttribute(flags & ~Flag.EXTENDED_LENGTH, type_code, value)
    if flags & (Flag.OPTIONAL | Flag.TRANSITIVE) != codec.FLAGS:
        raise malformed(codec, value, f"flags 0x{flags:02x}", UpdateSubcode.ATTRIBUTE_FLAGS_ERROR)
    return codec.decode_value(value, negotiated)
