"""What this node advertises over BGP, per peer, from ipam's decisions (pure).

    plan(node, configuration, decisions) -> Plan
        peers:          the BGPPeers this node keeps a session with, each with its whole desired route set
        announcements:  per service IP, the Services behind it and the peers it is advertised to
        conflicts:      one prefix given different local preferences by two advertisements

ipam decides per IP what is advertised (prefixes after aggregation, communities, local preference, peers)
and from which nodes (``nodes``: every node for Cluster, the nodes with a local serving endpoint for Local);
what is left to this node is what only it knows for sure, by the shared rules (``schemas.metallb.rules``):
- a peer applies to this node when its ``nodeSelectors`` admit the node's labels (none: every node);
- a route of a decided IP goes from this node when the node is usable (known, not ``NetworkUnavailable``, not
  labelled ``node.kubernetes.io/exclude-from-external-load-balancers``), the decision's ``nodes`` is None or
  names it, and the route's ``node_selectors`` admit it; it goes to the route's ``peers`` (empty: every peer
  of the node);
- routes of several IPs (or several advertisements) giving one prefix to one peer merge as MetalLB's do:
  communities and large communities are united; differing local preferences are a conflict, resolved to the
  highest (MetalLB's FRR mode refuses the whole set instead, as ipam's configuration check does) and reported;
  ``localPref`` 0 means unset (the speaker's default, sent to internal peers only).
The next hop is left to the speaker: the session's own address for its family, the node's address of the other
family (see :func:`next_hops`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from schemas.events import ServiceId
from schemas.metallb import BFDProfile, BGPAdvertisement, BGPPeer, IPAddressPool
from schemas.metallb.common import LabelSelector
from schemas.metallb.parsing import ConfigObject
from schemas.metallb.rules import NodeFacts, selectors_admit
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.rib import Route


@dataclass(frozen=True, slots=True)
class RouteTerms:
    """One BGPAdvertisement's terms as decisions carry them (all but the prefix), interned by the fold:
    every IP it covers shares one instance, so a plan works out what it needs once per terms."""

    advertisement: str
    communities: tuple[int, ...]
    large_communities: tuple[tuple[int, int, int], ...]
    local_pref: int  # 0: unset
    peers: tuple[str, ...]  # empty: every peer of the node
    node_selectors: tuple[LabelSelector, ...]  # empty: every node


@dataclass(frozen=True, slots=True)
class IPDecision:
    """ipam's decision for one IP, as this node needs it."""

    services: tuple[ServiceId, ...]
    routes: tuple[tuple[Prefix, RouteTerms], ...]
    here: bool  # nodes None (Cluster) or this node among them (Local)


@dataclass(frozen=True, slots=True)
class Configuration:
    """What the BGP agent needs of the configuration in force: peers and BFD profiles (pools and
    advertisements only to tell a BFD echo peer that IPv6 is advertised to it)."""

    pools: Mapping[str, IPAddressPool] = field(default_factory=dict)
    advertisements: tuple[BGPAdvertisement, ...] = ()
    peers: tuple[BGPPeer, ...] = ()
    bfd_profiles: Mapping[str, BFDProfile] = field(default_factory=dict)

    @classmethod
    def of(cls, objects: Iterable[ConfigObject]) -> Configuration:
        pools: dict[str, IPAddressPool] = {}
        ads: list[BGPAdvertisement] = []
        peers: list[BGPPeer] = []
        profiles: dict[str, BFDProfile] = {}
        for obj in objects:
            if isinstance(obj, IPAddressPool):
                pools[obj.name] = obj
            elif isinstance(obj, BGPAdvertisement):
                ads.append(obj)
            elif isinstance(obj, BGPPeer):
                peers.append(obj)
            elif isinstance(obj, BFDProfile):
                profiles[obj.name] = obj
        return cls(
            pools=pools,
            advertisements=tuple(sorted(ads, key=lambda a: a.name)),
            peers=tuple(sorted(peers, key=lambda p: p.name)),
            bfd_profiles=profiles,
        )


@dataclass(frozen=True, slots=True)
class PeerPlan:
    peer: BGPPeer
    routes: Mapping[Prefix, Route]

    @property
    def name(self) -> str:
        return self.peer.name


@dataclass(frozen=True, slots=True)
class IPAnnouncement:
    services: tuple[ServiceId, ...]
    peers: tuple[str, ...]  # BGPPeer names the IP's prefix goes to


@dataclass(frozen=True, slots=True)
class LocalPrefConflict:
    peer: str
    prefix: Prefix
    local_prefs: tuple[int, ...]
    chosen: int


@dataclass(frozen=True, slots=True)
class Plan:
    peers: Mapping[str, PeerPlan] = field(default_factory=dict)
    announcements: Mapping[str, IPAnnouncement] = field(default_factory=dict)
    conflicts: tuple[LocalPrefConflict, ...] = ()


def peer_applies(peer: BGPPeer, node: NodeFacts) -> bool:
    """A peer without node selectors is for every node; otherwise one selector must match."""
    return selectors_admit(peer.spec.node_selectors, node.labels)


@dataclass(slots=True)
class _Merged:
    communities: set[int] = field(default_factory=set)
    large: set[tuple[int, int, int]] = field(default_factory=set)
    local_prefs: set[int] = field(default_factory=set)


def plan(*, node: NodeFacts | None, configuration: Configuration, decisions: Mapping[str, IPDecision]) -> Plan:
    """The whole BGP picture of this node. Deterministic: no clock, routes sorted by prefix."""
    if node is None:  # no labels, no addresses, no router ID: no session
        return Plan()
    peers = {p.name: p for p in configuration.peers if peer_applies(p, node)}
    merged: dict[str, dict[Prefix, _Merged]] = {name: {} for name in peers}
    announcements: dict[str, IPAnnouncement] = {}
    if node.usable:
        #: per interned terms (by identity): the peers its routes go to, None when the node is not admitted
        targets: dict[int, tuple[str, ...] | None] = {}
        for ip, decision in decisions.items():
            if not decision.here:
                continue
            admitted = False
            ip_peers: set[str] = set()
            for prefix, terms in decision.routes:
                key = id(terms)
                if key not in targets:
                    targets[key] = _targets(terms, node, peers)
                to = targets[key]
                if to is None:
                    continue
                admitted = True
                ip_peers.update(to)
                for name in to:
                    entry = merged[name].get(prefix)
                    if entry is None:
                        entry = merged[name][prefix] = _Merged()
                    entry.communities.update(terms.communities)
                    entry.large.update(terms.large_communities)
                    if terms.local_pref:
                        entry.local_prefs.add(terms.local_pref)
            if admitted:
                announcements[ip] = IPAnnouncement(services=decision.services, peers=tuple(sorted(ip_peers)))
    plans: dict[str, PeerPlan] = {}
    conflicts: list[LocalPrefConflict] = []
    shared: dict[tuple[tuple[int, ...], tuple[tuple[int, int, int], ...], int | None], Route] = {}
    for name, prefixes in merged.items():
        routes: dict[Prefix, Route] = {}
        for prefix in sorted(prefixes, key=_prefix_key):
            entry = prefixes[prefix]
            local_pref = max(entry.local_prefs) if entry.local_prefs else None
            if len(entry.local_prefs) > 1:
                assert local_pref is not None
                conflicts.append(LocalPrefConflict(name, prefix, tuple(sorted(entry.local_prefs)), local_pref))
            attributes = (tuple(sorted(entry.communities)), tuple(sorted(entry.large)), local_pref)
            route = shared.get(attributes)
            if route is None:  # one Route per attribute set: the speaker groups prefixes by it
                route = shared[attributes] = Route(
                    communities=attributes[0], large_communities=attributes[1], local_pref=local_pref
                )
            routes[prefix] = route
        plans[name] = PeerPlan(peers[name], routes)
    return Plan(peers=plans, announcements=announcements, conflicts=tuple(conflicts))


def _targets(terms: RouteTerms, node: NodeFacts, peers: Mapping[str, BGPPeer]) -> tuple[str, ...] | None:
    """The node's peers a route of ``terms`` goes to (maybe none), or None when it does not go from here."""
    if not selectors_admit(terms.node_selectors, node.labels):
        return None
    return tuple(name for name in peers if not terms.peers or name in terms.peers)


def _prefix_key(prefix: Prefix) -> tuple[int, int, int]:
    return (prefix.version, int(prefix.network_address), prefix.prefixlen)


def router_id_for(node: NodeFacts) -> ipaddress.IPv4Address:
    """The node's first IPv4 address; a node with none gets a stable id derived from its name."""
    for text in node.addresses:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv4Address):
            return address
    digest = 0
    for byte in node.name.encode():
        digest = (digest * 131 + byte) & 0xFFFFFFFF
    return ipaddress.IPv4Address(digest or 1)


def next_hops(
    node: NodeFacts, *, session_family: int
) -> tuple[ipaddress.IPv4Address | None, ipaddress.IPv6Address | None]:
    """Next hops to configure on a session running over ``session_family``: none for the session's own
    family (the speaker uses the connection's local address), the node's first address of the other."""
    v4: ipaddress.IPv4Address | None = None
    v6: ipaddress.IPv6Address | None = None
    for text in node.addresses:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv4Address) and v4 is None and session_family != 4:
            v4 = address
        elif isinstance(address, ipaddress.IPv6Address) and v6 is None and session_family != 6:
            v6 = None if address.is_link_local else address
    return v4, v6
