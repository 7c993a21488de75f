"""What we advertise: the desired :class:`Route` per prefix, the Adj-RIB-Out (what the peer has been told),
and the diff between them turned into packed UPDATEs. Pure: values in, bytes out."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from services.announcer.bgp.aspath import As4Path, AsPath
from services.announcer.bgp.attributes import (
    Attribute,
    Communities,
    LargeCommunities,
    LargeCommunity,
    LocalPref,
    Origin,
    OriginType,
)
from services.announcer.bgp.capabilities import IPV4_UNICAST, IPV6_UNICAST, AddressFamily, Negotiated
from services.announcer.bgp.nlri import IPAddress, Prefix
from services.announcer.bgp.update import pack_announcements, pack_withdrawals

DEFAULT_LOCAL_PREF = 100
MAX_COMMUNITY_OCTETS = 3500  # what leaves room in a 4096-octet UPDATE for the other attributes and a prefix


@dataclass(frozen=True)
class Route:
    """How one prefix is advertised. ``next_hop=None`` means the session's own address for the family.
    ``link_local`` goes beside a global IPv6 next hop (RFC 2545 §3): the session fills it in on a link-local
    connection."""

    next_hop: IPAddress | None = None
    link_local: ipaddress.IPv6Address | None = None
    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    local_pref: int | None = None  # sent to internal peers only, as MetalLB does

    def __post_init__(self) -> None:
        words = [*self.communities, *(part for c in self.large_communities for part in c)]
        if self.local_pref is not None:
            words.append(self.local_pref)
        if any(not 0 <= word <= 0xFFFFFFFF for word in words):
            raise ValueError("communities, large community parts and local-pref are unsigned 32-bit numbers")

    def normalized(self) -> Route:
        return replace(
            self,
            communities=tuple(sorted(set(self.communities))),
            large_communities=tuple(sorted(set(self.large_communities))),
        )

    def _sort_key(self) -> tuple[str, str, tuple[int, ...], tuple[LargeCommunity, ...], int]:
        return (
            str(self.next_hop),
            str(self.link_local),
            self.communities,
            self.large_communities,
            self.local_pref or -1,
        )

    def next_hops(self) -> tuple[IPAddress, ...]:
        """What the UPDATE carries: the next hop, and the link-local one after a global IPv6 next hop."""
        assert self.next_hop is not None
        return (self.next_hop,) if self.link_local is None else (self.next_hop, self.link_local)


def family_of(prefix: Prefix) -> AddressFamily:
    return IPV4_UNICAST if prefix.version == 4 else IPV6_UNICAST


def prefix_key(prefix: Prefix) -> tuple[int, int, int]:
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def resolve(
    desired: Mapping[Prefix, Route],
    *,
    families: Iterable[AddressFamily],
    next_hop_v4: ipaddress.IPv4Address | None,
    next_hop_v6: ipaddress.IPv6Address | None,
    link_local: ipaddress.IPv6Address | None = None,
    ipv6_next_hop_for_ipv4: bool = False,
    shared: dict[tuple[Route, IPAddress, ipaddress.IPv6Address | None], Route] | None = None,
) -> tuple[dict[Prefix, Route], list[Prefix]]:
    """Fill in next hops and keep what this session can carry; also return what it cannot (a family not
    negotiated, no next hop of the prefix's family, or more communities than one UPDATE holds).

    With ``ipv6_next_hop_for_ipv4`` (RFC 8950 negotiated) an IPv4 prefix without an IPv4 next hop takes the
    IPv6 one; ``link_local`` (the session's own, on a link-local connection) goes beside a global IPv6 next hop.
    ``shared``: resolved routes by what they were made of, kept by the caller across calls — the thousands of
    prefixes that share a route share one resolved route too (made once, held once).
    """
    allowed = set(families)
    resolved: dict[Prefix, Route] = {}
    unroutable: list[Prefix] = []
    made = {} if shared is None else shared
    for prefix, route in desired.items():
        next_hop = route.next_hop or (next_hop_v4 if prefix.version == 4 else next_hop_v6)
        if next_hop is None and prefix.version == 4 and ipv6_next_hop_for_ipv4:
            next_hop = next_hop_v6
        carried = next_hop is not None and (
            next_hop.version == prefix.version or (next_hop.version == 6 and ipv6_next_hop_for_ipv4)
        )
        too_big = 4 * len(set(route.communities)) + 12 * len(set(route.large_communities)) > MAX_COMMUNITY_OCTETS
        if family_of(prefix) not in allowed or not carried or too_big:
            unroutable.append(prefix)
            continue
        assert next_hop is not None
        beside = link_local if isinstance(next_hop, ipaddress.IPv6Address) and not next_hop.is_link_local else None
        key = (route, next_hop, beside)
        filled = made.get(key)
        if filled is None:
            filled = made[key] = replace(route, next_hop=next_hop, link_local=beside).normalized()
        resolved[prefix] = filled
    return resolved, sorted(unroutable, key=prefix_key)


def path_attributes(route: Route, negotiated: Negotiated) -> list[Attribute]:
    """The attributes for ``route`` (next hop aside, which the packer adds)."""
    path = AsPath() if negotiated.ibgp else AsPath.sequence(negotiated.local_as)
    attributes: list[Attribute] = [Origin(OriginType.IGP), path]
    if path.needs_as4_path(negotiated):
        attributes.append(As4Path(path.segments))
    if negotiated.ibgp:
        attributes.append(LocalPref(route.local_pref if route.local_pref is not None else DEFAULT_LOCAL_PREF))
    if route.communities:
        attributes.append(Communities(route.communities))
    if route.large_communities:
        attributes.append(LargeCommunities(route.large_communities))
    return attributes


class AdjRibOut:
    """The routes the peer holds from us, and how to move it to a new desired set."""

    def __init__(self) -> None:
        self.sent: dict[Prefix, Route] = {}

    def clear(self) -> None:
        self.sent.clear()

    def converge(
        self, desired: Mapping[Prefix, Route], negotiated: Negotiated, *, among: Iterable[Prefix] | None = None
    ) -> tuple[list[bytes], int, int]:
        """UPDATEs that turn what the peer has into ``desired``; returns (messages, announced, withdrawn).
        With ``among``, only those prefixes changed: ``desired`` holds what is desired of them, and what the
        peer has of the others stays as it is (a change of a few prefixes costs a few, not the whole set)."""
        sent = self.sent
        withdraw = sorted((p for p in (sent if among is None else among) if p in sent and p not in desired),
                          key=prefix_key)  # fmt: skip
        announce = {p: r for p, r in desired.items() if sent.get(p) != r}
        messages = self._withdrawals(withdraw, negotiated) + self._announcements(announce, negotiated)
        for prefix in withdraw:
            del sent[prefix]
        sent.update(announce)
        return messages, len(announce), len(withdraw)

    def replay(self, family: AddressFamily, negotiated: Negotiated) -> list[bytes]:
        """Everything we advertise in ``family`` again (answer to a ROUTE-REFRESH)."""
        return self._announcements({p: r for p, r in self.sent.items() if family_of(p) == family}, negotiated)

    @staticmethod
    def _withdrawals(prefixes: list[Prefix], negotiated: Negotiated) -> list[bytes]:
        by_family: dict[AddressFamily, list[Prefix]] = defaultdict(list)
        for prefix in prefixes:
            by_family[family_of(prefix)].append(prefix)
        out: list[bytes] = []
        for family in sorted(by_family):
            out += pack_withdrawals(family=family, prefixes=by_family[family], negotiated=negotiated)
        return out

    @staticmethod
    def _announcements(routes: Mapping[Prefix, Route], negotiated: Negotiated) -> list[bytes]:
        groups: dict[tuple[AddressFamily, Route], list[Prefix]] = defaultdict(list)
        for prefix, route in routes.items():
            groups[(family_of(prefix), route)].append(prefix)
        out: list[bytes] = []
        for family, route in sorted(groups, key=lambda k: (k[0], k[1]._sort_key())):
            out += pack_announcements(
                family=family,
                attributes=path_attributes(route, negotiated),
                next_hops=route.next_hops(),
                prefixes=sorted(groups[(family, route)], key=prefix_key),
                negotiated=negotiated,
            )
        return out
