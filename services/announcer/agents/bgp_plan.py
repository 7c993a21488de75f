"""What this node advertises over BGP, per peer: MetalLB's advertisement semantics as a pure function.

    plan(node, configuration, services, allocations) -> Plan
        peers:          the BGPPeers this node keeps a session with, each with its whole desired route set
        announcements:  per service IP, the Services behind it and the peers it is advertised to
        skipped:        per Service, why this node does not announce it (an enum, MetalLB's reasons)
        conflicts:      one prefix given different local preferences by two advertisements

The rules (MetalLB's speaker, ``bgp_controller.go`` and the FRR session's merge):
- a peer applies to this node when one of its ``nodeSelectors`` matches (none: every node);
- a Service is announced from this node when the node is available (not ``NetworkUnavailable``, not labelled
  ``node.kubernetes.io/exclude-from-external-load-balancers``), some BGPAdvertisement of its pool selects this
  node, and it has a serving endpoint: anywhere with ``externalTrafficPolicy: Cluster`` (every eligible node
  announces; the router spreads with ECMP), on this node with ``Local``. No serving endpoint: withdrawn;
- an advertisement applies to an IP when it selects the IP's pool (``ipAddressPools`` /
  ``ipAddressPoolSelectors``; neither: every pool), this node (``nodeSelectors``), the Service
  (``serviceSelectors``) and the peer (``peers``; empty: every peer);
- the prefix is the IP masked to ``aggregationLength`` / ``aggregationLengthV6``; several advertisements (or
  several IPs under one aggregate) giving one prefix to one peer merge: communities and large communities are
  united; differing local preferences are a conflict, resolved to the highest (MetalLB's FRR mode refuses the
  whole set instead) and reported;
- communities are values (``a:b``, ``large:a:b:c``) or names of ``Community`` aliases; ``localPref`` 0 means
  unset (the speaker's default, sent to internal peers only).
The next hop is left to the speaker: the session's own address for its family, the node's address of the other
family (see :func:`next_hops`).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from schemas.events import ServiceId
from schemas.metallb import (
    BFDProfile,
    BGPAdvertisement,
    BGPCommunity,
    BGPPeer,
    Community,
    IPAddressPool,
    LargeCommunity,
    StandardCommunity,
    parse_community,
)
from schemas.metallb.community import looks_like_community_value
from schemas.metallb.parsing import ConfigObject
from services.announcer.bgp.nlri import Prefix
from services.announcer.bgp.rib import Route

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
ServiceKey = tuple[str, str]  # (namespace, name)


class Skip(enum.StrEnum):
    """Why this node does not announce a Service (MetalLB's ``ShouldAnnounce`` answers)."""

    NODE_UNKNOWN = "nodeUnknown"
    NODE_NETWORK_UNAVAILABLE = "nodeNetworkUnavailable"
    NODE_EXCLUDED = "nodeLabeledExcludeBalancers"
    UNKNOWN_POOL = "unknownPool"
    NOT_OWNER = "notOwner"  # no BGPAdvertisement of the pool selects this node
    NO_ENDPOINTS = "noEndpoints"
    NO_LOCAL_ENDPOINTS = "noLocalEndpoints"
    SERVICE_UNKNOWN = "serviceUnknown"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    network_unavailable: bool = False
    addresses: tuple[str, ...] = ()  # InternalIP first, then ExternalIP, as observed


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    external_traffic_policy: str = "Cluster"
    labels: Mapping[str, str] = field(default_factory=dict)
    serving: Mapping[str, int] = field(default_factory=dict)  # node -> serving endpoints on it


@dataclass(frozen=True, slots=True)
class Allocation:
    service: ServiceId
    ips: tuple[str, ...]
    pool: str


@dataclass(frozen=True, slots=True)
class Configuration:
    """The BGP-relevant part of one metallb.io configuration, parsed."""

    pools: Mapping[str, IPAddressPool] = field(default_factory=dict)
    advertisements: tuple[BGPAdvertisement, ...] = ()
    peers: tuple[BGPPeer, ...] = ()
    aliases: Mapping[str, BGPCommunity] = field(default_factory=dict)
    bfd_profiles: Mapping[str, BFDProfile] = field(default_factory=dict)

    @classmethod
    def of(cls, objects: Iterable[ConfigObject]) -> Configuration:
        pools: dict[str, IPAddressPool] = {}
        ads: list[BGPAdvertisement] = []
        peers: list[BGPPeer] = []
        aliases: dict[str, BGPCommunity] = {}
        profiles: dict[str, BFDProfile] = {}
        for obj in objects:
            if isinstance(obj, IPAddressPool):
                pools[obj.name] = obj
            elif isinstance(obj, BGPAdvertisement):
                ads.append(obj)
            elif isinstance(obj, BGPPeer):
                peers.append(obj)
            elif isinstance(obj, Community):
                aliases.update(obj.aliases())
            elif isinstance(obj, BFDProfile):
                profiles[obj.name] = obj
        return cls(
            pools=pools,
            advertisements=tuple(sorted(ads, key=lambda a: a.name)),
            peers=tuple(sorted(peers, key=lambda p: p.name)),
            aliases=aliases,
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
    skipped: Mapping[ServiceKey, Skip] = field(default_factory=dict)
    conflicts: tuple[LocalPrefConflict, ...] = ()


def peer_applies(peer: BGPPeer, node: NodeFacts) -> bool:
    """A peer without node selectors is for every node; otherwise one selector must match."""
    selectors = peer.spec.node_selectors
    return not selectors or any(selector.matches(node.labels) for selector in selectors)


def node_skip(node: NodeFacts | None) -> Skip | None:
    if node is None:
        return Skip.NODE_UNKNOWN
    if node.network_unavailable:
        return Skip.NODE_NETWORK_UNAVAILABLE
    if EXCLUDE_LABEL in node.labels:
        return Skip.NODE_EXCLUDED
    return None


def endpoints_skip(service: ServiceFacts, node: str) -> Skip | None:
    if service.external_traffic_policy == "Local":
        return None if service.serving.get(node, 0) > 0 else Skip.NO_LOCAL_ENDPOINTS
    return None if any(count > 0 for count in service.serving.values()) else Skip.NO_ENDPOINTS


def resolve_communities(
    texts: Iterable[str], aliases: Mapping[str, BGPCommunity]
) -> tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]:
    """Standard communities as 32-bit values and large ones as triples; unknown aliases are dropped (the
    configuration check reports them, and an invalid configuration is never put in force)."""
    standard: set[int] = set()
    large: set[tuple[int, int, int]] = set()
    for text in texts:
        value: BGPCommunity | None
        if looks_like_community_value(text):
            try:
                value = parse_community(text)
            except ValueError:
                value = None
        else:
            value = aliases.get(text)
        if isinstance(value, StandardCommunity):
            standard.add(value.as_int)
        elif isinstance(value, LargeCommunity):
            large.add((value.global_admin, value.local_data1, value.local_data2))
    return tuple(sorted(standard)), tuple(sorted(large))


def prefix_of(ip: str, ad: BGPAdvertisement) -> Prefix:
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv4Address):
        length = ad.spec.aggregation_length
        return ipaddress.IPv4Network((int(address) >> (32 - length) << (32 - length), length))
    length = ad.spec.aggregation_length_v6
    return ipaddress.IPv6Network((int(address) >> (128 - length) << (128 - length), length))


@dataclass(frozen=True, slots=True)
class _Ad:
    """An advertisement with what every IP it covers needs worked out once."""

    ad: BGPAdvertisement
    peers: tuple[str, ...]
    communities: tuple[int, ...]
    large: tuple[tuple[int, int, int], ...]


@dataclass(slots=True)
class _Merged:
    communities: set[int] = field(default_factory=set)
    large: set[tuple[int, int, int]] = field(default_factory=set)
    local_prefs: set[int] = field(default_factory=set)


def plan(
    *,
    node: NodeFacts | None,
    configuration: Configuration,
    services: Mapping[ServiceKey, ServiceFacts],
    allocations: Mapping[ServiceKey, Allocation],
) -> Plan:
    """The whole BGP picture of this node. Deterministic: sorted inputs, no clock."""
    if node is None:
        return Plan(skipped={key: Skip.NODE_UNKNOWN for key in sorted(allocations)})
    peers = {p.name: p for p in configuration.peers if peer_applies(p, node)}
    merged: dict[str, dict[Prefix, _Merged]] = {name: {} for name in peers}
    ip_services: dict[str, list[ServiceId]] = {}
    ip_peers: dict[str, set[str]] = {}
    skipped: dict[ServiceKey, Skip] = {}
    unavailable = node_skip(node)
    for_node: list[_Ad] = []
    for ad in configuration.advertisements:
        if ad.spec.selects_node(node.labels):
            communities, large = resolve_communities(ad.spec.communities, configuration.aliases)
            for_node.append(_Ad(ad, tuple(n for n in peers if ad.spec.selects_peer(n)), communities, large))
    by_pool: dict[str, list[_Ad]] = {
        name: [a for a in for_node if a.ad.spec.selects_pool(pool.name, pool.labels)]
        for name, pool in configuration.pools.items()
    }
    for key in sorted(allocations):
        allocation = allocations[key]
        facts = services.get(key)
        pool = configuration.pools.get(allocation.pool)
        reason = unavailable
        if reason is None and facts is None:
            reason = Skip.SERVICE_UNKNOWN
        if reason is None and pool is None:
            reason = Skip.UNKNOWN_POOL
        ads: list[_Ad] = []
        if reason is None:
            assert facts is not None and pool is not None
            ads = [a for a in by_pool[pool.name] if a.ad.spec.selects_service(facts.labels)]
            reason = Skip.NOT_OWNER if not ads else endpoints_skip(facts, node.name)
        if reason is not None:
            skipped[key] = reason
            continue
        for ip in allocation.ips:
            for a in ads:
                prefix = prefix_of(ip, a.ad)
                for name in a.peers:
                    entry = merged[name].setdefault(prefix, _Merged())
                    entry.communities.update(a.communities)
                    entry.large.update(a.large)
                    if a.ad.spec.local_pref:
                        entry.local_prefs.add(a.ad.spec.local_pref)
                if a.peers:
                    ip_peers.setdefault(ip, set()).update(a.peers)
            ip_services.setdefault(ip, []).append(allocation.service)
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
    announcements = {
        ip: IPAnnouncement(
            services=_services_of(ip_services[ip]),
            peers=tuple(sorted(ip_peers.get(ip, ()))),
        )
        for ip in sorted(ip_services)
    }
    return Plan(peers=plans, announcements=announcements, skipped=skipped, conflicts=tuple(conflicts))


def _services_of(services: list[ServiceId]) -> tuple[ServiceId, ...]:
    if len(services) == 1:
        return (services[0],)
    return tuple(sorted(set(services), key=lambda s: (s.namespace, s.name)))


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
