"""AS_PATH (RFC 4271 §4.3) and AS4_PATH (RFC 6793): 2- or 4-octet AS numbers per the negotiated capability."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

from services.announcer.bgp.attributes import (
    OPTIONAL_TRANSITIVE,
    WELL_KNOWN,
    AttributeType,
    ErrorAction,
    Known,
    malformed,
    register,
)
from services.announcer.bgp.capabilities import AS_TRANS, Negotiated
from services.announcer.bgp.notification import UpdateSubcode


class SegmentType(enum.IntEnum):
    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3  # RFC 5065
    AS_CONFED_SET = 4


@dataclass(frozen=True)
class Segment:
    kind: SegmentType
    asns: tuple[int, ...]

    def to_dict(self) -> Any:
        return {"type": self.kind.name, "asns": list(self.asns)}


def _decode_segments(cls: Any, value: bytes, width: int) -> tuple[Segment, ...]:
    segments: list[Segment] = []
    offset = 0
    while offset < len(value):
        if offset + 2 > len(value):
            raise malformed(cls, value, "truncated segment header", UpdateSubcode.MALFORMED_AS_PATH)
        kind, count = value[offset], value[offset + 1]
        if kind not in SegmentType._value2member_map_:
            raise malformed(cls, value, f"segment type {kind}", UpdateSubcode.MALFORMED_AS_PATH)
        if count == 0:
            raise malformed(cls, value, "empty segment", UpdateSubcode.MALFORMED_AS_PATH)
        end = offset + 2 + count * width
        if end > len(value):
            raise malformed(cls, value, "segment overruns attribute", UpdateSubcode.MALFORMED_AS_PATH)
        asns = tuple(int.from_bytes(value[i : i + width], "big") for i in range(offset + 2, end, width))
        segments.append(Segment(SegmentType(kind), asns))
        offset = end
    return tuple(segments)


def _encode_segments(segments: tuple[Segment, ...], width: int) -> bytes:
    out = b""
    for segment in segments:
        asns = [a if width == 4 or a <= 0xFFFF else AS_TRANS for a in segment.asns]
        for start in range(0, len(asns), 255):
            chunk = asns[start : start + 255]
            out += bytes((segment.kind, len(chunk))) + b"".join(a.to_bytes(width, "big") for a in chunk)
    return out


@register
@dataclass(frozen=True)
class AsPath(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.AS_PATH
    FLAGS: ClassVar[int] = WELL_KNOWN
    segments: tuple[Segment, ...] = ()

    @classmethod
    def sequence(cls, *asns: int) -> AsPath:
        return cls((Segment(SegmentType.AS_SEQUENCE, asns),) if asns else ())

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> AsPath:
        return cls(_decode_segments(cls, value, 4 if negotiated.four_octet_as else 2))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return _encode_segments(self.segments, 4 if negotiated.four_octet_as else 2)

    def needs_as4_path(self, negotiated: Negotiated) -> bool:
        """On a 2-octet session a path holding a 4-octet AS must also travel as AS4_PATH (RFC 6793 §4.2.2)."""
        return not negotiated.four_octet_as and any(a > 0xFFFF for s in self.segments for a in s.asns)

    def to_dict(self) -> Any:
        return [s.to_dict() for s in self.segments]


@register
@dataclass(frozen=True)
class As4Path(Known):
    TYPE_CODE: ClassVar[int] = AttributeType.AS4_PATH
    FLAGS: ClassVar[int] = OPTIONAL_TRANSITIVE
    ON_ERROR: ClassVar[ErrorAction] = ErrorAction.ATTRIBUTE_DISCARD  # RFC 6793 §6
    segments: tuple[Segment, ...] = ()

    @classmethod
    def decode_value(cls, value: bytes, negotiated: Negotiated) -> As4Path:
        return cls(_decode_segments(cls, value, 4))

    def encode_value(self, negotiated: Negotiated) -> bytes:
        return _encode_segments(self.segments, 4)

    def to_dict(self) -> Any:
        return [s.to_dict() for s in self.segments]
