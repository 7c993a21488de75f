"""UPDATE message (RFC 4271 §4.3) with RFC 7606 revised error handling, End-of-RIB (RFC 4724 §2), and
packing of many prefixes into as few UPDATEs as fit in 4096 octets."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from services.announcer.bgp import aspath as _aspath  # noqa: F401 - registers AS_PATH, AS4_PATH
from services.announcer.bgp.attributes import (
    OPTIONAL_NON_TRANSITIVE,
    REGISTRY,
    Attribute,
    AttributeCodec,
    AttributeType,
    ErrorAction,
    Flag,
    MalformedAttribute,
    NextHop,
    decode_attribute,
    encode_attribute,
    encode_header,
)
from services.announcer.bgp.capabilities import IPV4_UNICAST, AddressFamily, Afi, Negotiated
from services.announcer.bgp.message import HEADER_LENGTH, MAX_MESSAGE_LENGTH, MessageType, frame
from services.announcer.bgp.multiprotocol import MpReachNlri, MpUnreachNlri
from services.announcer.bgp.nlri import IPAddress, Prefix, decode_prefixes, encode_prefix
from services.announcer.bgp.notification import UpdateSubcode, update_error

_A = TypeVar("_A")
_MANDATORY = (AttributeType.ORIGIN, AttributeType.AS_PATH)


@dataclass(frozen=True)
class Update:
    withdrawn: tuple[Prefix, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    nlri: tuple[Prefix, ...] = ()
    treat_as_withdraw: bool = False  # RFC 7606: the announced prefixes must be handled as withdrawn
    errors: tuple[str, ...] = ()  # what was discarded or withdrawn, and why

    def get(self, kind: type[_A]) -> _A | None:
        return next((a for a in self.attributes if isinstance(a, kind)), None)

    def end_of_rib(self) -> AddressFamily | None:
        """The family whose End-of-RIB marker this is, or None."""
        if self.withdrawn or self.nlri:
            return None
        if not self.attributes:
            return IPV4_UNICAST
        if len(self.attributes) == 1:
            only = self.attributes[0]
            if isinstance(only, MpUnreachNlri) and not only.withdrawn and not only.raw:
                return only.family
        return None

    def announced(self) -> list[tuple[AddressFamily, Prefix]]:
        if self.treat_as_withdraw:
            return []
        return _announced(self)

    def withdrawals(self) -> list[tuple[AddressFamily, Prefix]]:
        out = [(IPV4_UNICAST, p) for p in self.withdrawn]
        unreach = self.get(MpUnreachNlri)
        if unreach is not None:
            out += [(unreach.family, p) for p in unreach.withdrawn]
        if self.treat_as_withdraw:
            out += _announced(self)
        return out

    def encode(self, negotiated: Negotiated) -> bytes:
        withdrawn = b"".join(encode_prefix(p) for p in self.withdrawn)
        ordered = sorted(self.attributes, key=lambda a: a.type_code)
        attributes = b"".join(encode_attribute(a, negotiated) for a in ordered)
        nlri = b"".join(encode_prefix(p) for p in self.nlri)
        body = len(withdrawn).to_bytes(2, "big") + withdrawn + len(attributes).to_bytes(2, "big") + attributes + nlri
        return frame(MessageType.UPDATE, body)

    @classmethod
    def decode(cls, body: bytes, negotiated: Negotiated) -> Update:
        return _decode(body, negotiated)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "UPDATE",
            "withdrawn": [str(p) for p in self.withdrawn],
            "attributes": {_attribute_name(a): a.to_dict() for a in self.attributes},
            "nlri": [str(p) for p in self.nlri],
        }
        if self.treat_as_withdraw:
            out["treat_as_withdraw"] = True
        if self.errors:
            out["errors"] = list(self.errors)
        family = self.end_of_rib()
        if family is not None:
            out["end_of_rib"] = str(family)
        return out


def _attribute_name(attribute: Attribute) -> str:
    code = attribute.type_code
    return AttributeType(code).name if code in AttributeType._value2member_map_ else f"TYPE_{code}"


def _announced(update: Update) -> list[tuple[AddressFamily, Prefix]]:
    out = [(IPV4_UNICAST, p) for p in update.nlri]
    reach = update.get(MpReachNlri)
    if reach is not None:
        out += [(reach.family, p) for p in reach.nlri]
    return out


def _decode(body: bytes, negotiated: Negotiated) -> Update:
    raw_withdrawn, attribute_data, raw_nlri = split_update(body)
    withdrawn = decode_prefixes(raw_withdrawn, Afi.IPV4)
    nlri = decode_prefixes(raw_nlri, Afi.IPV4)
    attributes, treat_as_withdraw, errors = decode_attributes(attribute_data, negotiated)
    update = Update(withdrawn, tuple(attributes), nlri, treat_as_withdraw, tuple(errors))
    if not treat_as_withdraw and _announced(update):
        missing = missing_mandatory(attributes, classic_nlri=bool(nlri))
        if missing:
            return Update(withdrawn, tuple(attributes), nlri, True, (*errors, missing))
    return update


def split_update(body: bytes) -> tuple[bytes, bytes, bytes]:
    """The withdrawn routes, path attribute and NLRI octets of an UPDATE body, their lengths checked."""
    if len(body) < 4:
        raise update_error(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason="UPDATE shorter than 4 octets")
    withdrawn_length = int.from_bytes(body[:2], "big")
    if 2 + withdrawn_length + 2 > len(body):
        raise update_error(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason="withdrawn routes length overruns")
    offset = 2 + withdrawn_length
    attributes_length = int.from_bytes(body[offset : offset + 2], "big")
    offset += 2
    if offset + attributes_length > len(body):
        raise update_error(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason="total attribute length overruns")
    return body[2 : 2 + withdrawn_length], body[offset : offset + attributes_length], body[offset + attributes_length :]


def missing_mandatory(attributes: Sequence[Attribute], *, classic_nlri: bool) -> str:
    """RFC 7606 §3 (d): what an UPDATE that announces routes lacks (empty: nothing), as an error to report."""
    present = {a.type_code for a in attributes}
    missing = [t for t in _MANDATORY if t not in present]
    if classic_nlri and AttributeType.NEXT_HOP not in present:
        missing.append(AttributeType.NEXT_HOP)
    return f"missing {', '.join(t.name for t in missing)}" if missing else ""


def decode_attributes(
    data: bytes, negotiated: Negotiated, *, codecs: Mapping[int, type[AttributeCodec]] = REGISTRY
) -> tuple[list[Attribute], bool, list[str]]:
    """The path attributes with RFC 7606 handling: the ones kept, whether the routes must be treated as
    withdrawn, and what was discarded and why. A session reset is raised as :class:`Notification`."""
    attributes: list[Attribute] = []
    errors: list[str] = []
    treat_as_withdraw = False
    seen: set[int] = set()
    offset = 0
    while offset < len(data):
        flags = data[offset]
        head = 4 if flags & Flag.EXTENDED_LENGTH else 3
        if offset + head > len(data):  # RFC 7606 §4: attribute list ends mid-header
            errors.append("attribute header overruns the attribute list")
            treat_as_withdraw = True
            break
        type_code = data[offset + 1]
        length = int.from_bytes(data[offset + 2 : offset + head], "big")
        value = data[offset + head : offset + head + length]
        offset += head + length
        if len(value) != length:  # RFC 7606 §4: attribute overruns the list
            if type_code in (AttributeType.MP_REACH_NLRI, AttributeType.MP_UNREACH_NLRI):
                raise update_error(
                    UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason="MP attribute overruns the attribute list"
                )
            errors.append(f"attribute {type_code} overruns the attribute list")
            treat_as_withdraw = True
            break
        if type_code in seen:  # RFC 7606 §3 (g)
            if type_code in (AttributeType.MP_REACH_NLRI, AttributeType.MP_UNREACH_NLRI):
                raise update_error(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason=f"repeated attribute {type_code}")
            errors.append(f"repeated attribute {type_code} discarded")
            continue
        seen.add(type_code)
        try:
            attributes.append(decode_attribute(flags, type_code, value, negotiated, codecs=codecs))
        except MalformedAttribute as error:
            if error.action is ErrorAction.SESSION_RESET:
                raise
            errors.append(str(error))
            if error.action is ErrorAction.TREAT_AS_WITHDRAW:
                treat_as_withdraw = True
    return attributes, treat_as_withdraw, errors


def end_of_rib(family: AddressFamily, negotiated: Negotiated) -> bytes:
    """The End-of-RIB marker for ``family`` (RFC 4724 §2)."""
    if family == IPV4_UNICAST:
        return Update().encode(negotiated)
    return Update(attributes=(MpUnreachNlri(family),)).encode(negotiated)


def _chunks(encoded: Sequence[bytes], budget: int) -> list[bytes]:
    out: list[bytes] = []
    current = bytearray()
    for item in encoded:
        if current and len(current) + len(item) > budget:
            out.append(bytes(current))
            current = bytearray()
        current += item
    if current:
        out.append(bytes(current))
    return out


def pack_announcements(
    *,
    family: AddressFamily,
    attributes: Sequence[Attribute],
    next_hops: Sequence[IPAddress],
    prefixes: Sequence[Prefix],
    negotiated: Negotiated,
    max_length: int = MAX_MESSAGE_LENGTH,
) -> list[bytes]:
    """UPDATEs announcing ``prefixes`` with the same ``attributes``, as few as fit in ``max_length``.

    ``attributes`` holds everything but NEXT_HOP / MP_REACH_NLRI, which are built here: IPv4 unicast with a
    IPv4 next hop travels in the classic NLRI field, everything else in MP_REACH_NLRI.
    """
    if not prefixes:
        return []
    pieces = [(a.type_code, encode_attribute(a, negotiated)) for a in attributes]
    classic = family == IPV4_UNICAST and len(next_hops) == 1 and next_hops[0].version == 4
    encoded = [encode_prefix(p) for p in prefixes]
    messages: list[bytes] = []
    if classic:
        nh = next_hops[0]
        assert isinstance(nh, ipaddress.IPv4Address)
        pieces.append((AttributeType.NEXT_HOP, encode_attribute(NextHop(nh), negotiated)))
        blob = b"".join(p for _, p in sorted(pieces, key=lambda x: x[0]))
        budget = max_length - HEADER_LENGTH - 4 - len(blob)
        for chunk in _chunks(encoded, budget):
            messages.append(frame(MessageType.UPDATE, b"\x00\x00" + len(blob).to_bytes(2, "big") + blob + chunk))
        return messages
    nh_bytes = b"".join(a.packed for a in next_hops)
    mp_head = family.afi.to_bytes(2, "big") + bytes((family.safi, len(nh_bytes))) + nh_bytes + b"\x00"
    fixed = sum(len(p) for _, p in pieces)
    budget = max_length - HEADER_LENGTH - 4 - fixed - 4 - len(mp_head)
    for chunk in _chunks(encoded, budget):
        value = mp_head + chunk
        mp = encode_header(OPTIONAL_NON_TRANSITIVE, AttributeType.MP_REACH_NLRI, len(value)) + value
        blob = b"".join(p for _, p in sorted([*pieces, (AttributeType.MP_REACH_NLRI, mp)], key=lambda x: x[0]))
        messages.append(frame(MessageType.UPDATE, b"\x00\x00" + len(blob).to_bytes(2, "big") + blob))
    return messages


def pack_withdrawals(
    *, family: AddressFamily, prefixes: Sequence[Prefix], negotiated: Negotiated, max_length: int = MAX_MESSAGE_LENGTH
) -> list[bytes]:
    """UPDATEs withdrawing ``prefixes``: the withdrawn routes field for IPv4 unicast, else MP_UNREACH_NLRI."""
    encoded = [encode_prefix(p) for p in prefixes]
    messages: list[bytes] = []
    if family == IPV4_UNICAST:
        for chunk in _chunks(encoded, max_length - HEADER_LENGTH - 4):
            messages.append(frame(MessageType.UPDATE, len(chunk).to_bytes(2, "big") + chunk + b"\x00\x00"))
        return messages
    head = family.afi.to_bytes(2, "big") + bytes((family.safi,))
    for chunk in _chunks(encoded, max_length - HEADER_LENGTH - 4 - 4 - len(head)):
        value = head + chunk
        mp = encode_header(OPTIONAL_NON_TRANSITIVE, AttributeType.MP_UNREACH_NLRI, len(value)) + value
        messages.append(frame(MessageType.UPDATE, b"\x00\x00" + len(mp).to_bytes(2, "big") + mp))
    return messages


__all__ = [
    "Update",
    "decode_attributes",
    "end_of_rib",
    "missing_mandatory",
    "pack_announcements",
    "pack_withdrawals",
    "split_update",
]
