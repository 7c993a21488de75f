"""Received UPDATEs checked as RFC 7606 requires, their prefixes counted but never decoded.

The announcer only announces: no route a peer sends is ever used. A peer exporting a full table (a million
prefixes) must therefore cost little on the loop that also runs BFD and the keepalives, so an UPDATE is walked
as :meth:`Update.decode` walks it — the same framing checks, the same path attribute handling (attributes are
few per message and decoded as usual), the same malformed NLRI rules (RFC 7606 §5.3: session reset) — except
that each prefix is only stepped over and counted, and no object is built for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.announcer.bgp.capabilities import IPV4_UNICAST, AddressFamily, Afi, Negotiated
from services.announcer.bgp.multiprotocol import COUNTING_CODECS, MpReachCount, MpUnreachCount
from services.announcer.bgp.nlri import count_prefixes
from services.announcer.bgp.update import decode_attributes, missing_mandatory, split_update


@dataclass(frozen=True, slots=True)
class UpdateCount:
    """What one received UPDATE amounts to. With RFC 7606 treat-as-withdraw its announced prefixes count as
    withdrawn, and ``errors`` says why; what was discarded is named in ``errors`` too."""

    announced: int = 0
    withdrawn: int = 0
    errors: tuple[str, ...] = ()
    end_of_rib: AddressFamily | None = None  # the family whose End-of-RIB marker (RFC 4724 §2) this is


def count_update(body: bytes, negotiated: Negotiated) -> UpdateCount:
    """Check an UPDATE body and count its prefixes; raise :class:`Notification` when RFC 7606 asks for a
    session reset (exactly when :meth:`Update.decode` would)."""
    raw_withdrawn, attribute_data, raw_nlri = split_update(body)
    withdrawn = count_prefixes(raw_withdrawn, Afi.IPV4)
    nlri = count_prefixes(raw_nlri, Afi.IPV4)
    attributes, treat_as_withdraw, errors = decode_attributes(attribute_data, negotiated, codecs=COUNTING_CODECS)
    announced = nlri
    for attribute in attributes:
        if isinstance(attribute, MpReachCount):
            announced += attribute.prefixes
        elif isinstance(attribute, MpUnreachCount):
            withdrawn += attribute.prefixes
    if announced and not treat_as_withdraw:
        missing = missing_mandatory(attributes, classic_nlri=bool(nlri))
        if missing:
            errors.append(missing)
            treat_as_withdraw = True
    if treat_as_withdraw:
        announced, withdrawn = 0, withdrawn + announced
    end_of_rib: AddressFamily | None = None
    if not raw_withdrawn and not raw_nlri:
        if not attributes:
            end_of_rib = IPV4_UNICAST
        elif len(attributes) == 1 and isinstance(only := attributes[0], MpUnreachCount) and not only.raw:
            end_of_rib = only.family
    return UpdateCount(announced, withdrawn, tuple(errors), end_of_rib)
