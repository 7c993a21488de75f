"""BGP unnumbered: the peer of an interface session is found on the link, as FRR's ``neighbor IFNAME interface``.

FRR learns its unnumbered neighbour's IPv6 link-local address from the router advertisements it receives on
the interface, and sends its own (every 10 s, and at once in answer to a router solicitation). So the node
does the same with ICMPv6 router discovery (RFC 4861 §4.1, §4.2): it solicits once a second until a router
has advertised, advertises itself with a router lifetime of 0 (it is nobody's default router) every
``ADVERTISE_EVERY`` seconds and in answer to a solicitation, and takes as its peer the link-local source of
the router advertisements it hears. Neighbour solicitations alone would not do: FRR's bgpd waits for a router
advertisement ("Waiting for Peer IPv6 LLA") before it accepts or opens a connection.

Pure: bytes, addresses and ``now`` in, decisions out. The raw socket lives in ``link_peer.py``.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Final

ROUTER_SOLICITATION: Final = 133
ROUTER_ADVERTISEMENT: Final = 134
OPTION_SOURCE_LINK_LAYER: Final = 1
HOP_LIMIT: Final = 255  # RFC 4861 §6.1: router discovery never crosses a router
ALL_NODES: Final = ipaddress.IPv6Address("ff02::1")
ALL_ROUTERS: Final = ipaddress.IPv6Address("ff02::2")
UNSPECIFIED: Final = ipaddress.IPv6Address("::")
ADVERTISE_EVERY: Final = 10.0  # FRR's interval for unnumbered interfaces
SOLICIT_EVERY: Final = 1.0  # until a router is heard
STALE_AFTER: Final = 3 * ADVERTISE_EVERY  # a silent peer gives way to another router on the link

_RS_LENGTH: Final = 8
_RA_LENGTH: Final = 16


class RouterDiscovery(enum.Enum):
    SOLICITATION = "solicitation"
    ADVERTISEMENT = "advertisement"


class RouterDrop(enum.Enum):
    """Why a received ICMPv6 message is not taken (RFC 4861 §6.1.1, §6.1.2)."""

    TOO_SHORT = "too_short"
    NOT_ROUTER_DISCOVERY = "not_router_discovery"
    BAD_CODE = "bad_code"
    BAD_HOP_LIMIT = "bad_hop_limit"  # sent from beyond the link
    NOT_LINK_LOCAL = "not_link_local"  # an advertisement must come from a link-local address


@dataclass(frozen=True, slots=True)
class RouterMessage:
    kind: RouterDiscovery
    source: ipaddress.IPv6Address  # the unspecified address for a solicitation from a host without one


def read_router_message(
    data: bytes, *, source: ipaddress.IPv6Address, hop_limit: int | None
) -> RouterMessage | RouterDrop:
    """One ICMPv6 message as a raw ICMPv6 socket hands it over (no IPv6 header; the kernel checked the
    checksum). Never raises."""
    if len(data) < 4:
        return RouterDrop.TOO_SHORT
    kind = {ROUTER_SOLICITATION: RouterDiscovery.SOLICITATION, ROUTER_ADVERTISEMENT: RouterDiscovery.ADVERTISEMENT}
    if data[0] not in kind:
        return RouterDrop.NOT_ROUTER_DISCOVERY
    if data[1] != 0:
        return RouterDrop.BAD_CODE
    if hop_limit is not None and hop_limit != HOP_LIMIT:
        return RouterDrop.BAD_HOP_LIMIT
    message = RouterMessage(kind[data[0]], source)
    if message.kind is RouterDiscovery.SOLICITATION:
        return message if len(data) >= _RS_LENGTH else RouterDrop.TOO_SHORT
    if len(data) < _RA_LENGTH:
        return RouterDrop.TOO_SHORT
    return message if source.is_link_local else RouterDrop.NOT_LINK_LOCAL


def _source_link_layer(mac: bytes) -> bytes:
    """The source link-layer address option (RFC 4861 §4.6.1) for an Ethernet address; none without one."""
    return bytes((OPTION_SOURCE_LINK_LAYER, 1)) + mac if len(mac) == 6 else b""


def router_solicitation(mac: bytes = b"") -> bytes:
    """A router solicitation (the checksum is the kernel's to fill in), with our link-layer address."""
    return bytes((ROUTER_SOLICITATION, 0, 0, 0)) + bytes(4) + _source_link_layer(mac)


def router_advertisement(mac: bytes = b"") -> bytes:
    """A router advertisement with a router lifetime of 0: "I am on this link", not "route through me"; no
    hop limit, flags, reachable or retransmission time advice, no prefixes; our link-layer address, so the
    router's neighbour table knows us at once (GoBGP finds its unnumbered peer there)."""
    return bytes((ROUTER_ADVERTISEMENT, 0, 0, 0)) + bytes(12) + _source_link_layer(mac)


class LinkPeer:
    """The peer found on one link: the link-local source of the router advertisements heard there.

    The first router heard stays the peer while it keeps advertising; another one replaces it only after the
    peer has been silent for ``stale_after`` seconds (a replaced router), so two routers on one link (a
    misconfiguration: an unnumbered session is point to point) cannot make the session flap.
    """

    def __init__(self, *, mac: bytes = b"", stale_after: float = STALE_AFTER) -> None:
        self.mac = mac  # the interface's, for the link-layer address option
        self.stale_after = stale_after
        self.peer: ipaddress.IPv6Address | None = None
        self._last_heard = 0.0

    def heard(self, message: RouterMessage, now: float) -> ipaddress.IPv6Address | None:
        """Take one received message into account; the new peer when it changed, else None."""
        if message.kind is not RouterDiscovery.ADVERTISEMENT:
            return None
        if message.source == self.peer:
            self._last_heard = now
            return None
        if self.peer is not None and now - self._last_heard < self.stale_after:
            return None
        self.peer, self._last_heard = message.source, now
        return self.peer

    def answer(self, message: RouterMessage) -> bytes | None:
        """What to send in answer: our advertisement to a solicitation (FRR solicits when it starts)."""
        return router_advertisement(self.mac) if message.kind is RouterDiscovery.SOLICITATION else None
