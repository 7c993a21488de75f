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
from services.announcer.bgp.rib import Route, prefix_key


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


def service_name(namespace: str, name: str) -> str:
    """A Service as the announced gauge names it, and as decisions are held: ``namespace/name``."""
    return f"{namespace}/{name}"


def service_id(name: str, uid: str) -> ServiceId:
    """The Service a report names, from its ``namespace/name`` and uid (both read from a valid decision)."""
    namespace, _, short = name.partition("/")
    return ServiceId.model_construct(namespace=namespace, name=short, uid=uid)


#: strings of an IP's Services, one a Service: most IPs have one Service, whose string stands alone (no tuple
#: of one per IP: 48 octets each, twice per IP); several are a tuple
PerService = str | tuple[str, ...]


def per_service(strings: tuple[str, ...]) -> PerService:
    return strings[0] if len(strings) == 1 else strings


def of_each_service(strings: PerService) -> tuple[str, ...]:
    return (strings,) if isinstance(strings, str) else strings


class _OfServices:
    """``services`` and ``uids`` as tuples, of a class holding them as :data:`PerService`."""

    __slots__ = ()
    service_names: PerService
    service_uids: PerService

    @property
    def services(self) -> tuple[str, ...]:
        """Its Services as ``namespace/name``."""
        return of_each_service(self.service_names)

    @property
    def uids(self) -> tuple[str, ...]:
        return of_each_service(self.service_uids)


@dataclass(frozen=True, slots=True)
class IPDecision(_OfServices):
    """ipam's decision for one IP advertised from this node (``nodes`` None, or naming it), as it needs it:
    plain strings, not a model per IP (its Services as ``namespace/name``, and uids)."""

    service_names: PerService
    service_uids: PerService
    #: the first route, in slots of its own (most IPs have one: no tuple per route, no tuple of them)
    prefix: Prefix
    terms: RouteTerms
    more: tuple[tuple[Prefix, RouteTerms], ...] = ()  # the other routes

    @classmethod
    def of(
        cls, *, services: tuple[str, ...], uids: tuple[str, ...], routes: Iterable[tuple[Prefix, RouteTerms]]
    ) -> IPDecision:
        """The decision of ``routes`` (at least one, as ipam decides them)."""
        (prefix, terms), *more = routes
        return cls(per_service(services), per_service(uids), prefix, terms, tuple(more) if more else ())

    @property
    def routes(self) -> tuple[tuple[Prefix, RouteTerms], ...]:
        return ((self.prefix, self.terms), *self.more)


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
class IPAnnouncement(_OfServices):
    service_names: PerService  # namespace/name: its decision's own
    service_uids: PerService
    peers: tuple[str, ...]  # BGPPeer names the IP's prefix goes to (one tuple per set of names, shared)


@dataclass(frozen=True, slots=True)
class LocalPrefConflict:
    peer: str
    prefix: Prefix
    local_prefs: tuple[int, ...]
    chosen: int


@dataclass(frozen=True, slots=True)
class PlanChanges:
    """What changed in a plan kept current since it was last asked: the prefixes whose route changed for some
    peer (given, changed or withdrawn), and the IPs whose announcement changed (new, changed or gone)."""

    prefixes: frozenset[Prefix] = frozenset()
    ips: frozenset[str] = frozenset()


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


RouteAttributes = tuple[tuple[int, ...], tuple[tuple[int, int, int], ...], int | None]


class Planner:
    """This node's plan, kept current: built whole for a node and a configuration, then IP by IP — a decision
    that changes re-merges only its own prefixes (and, for an aggregate, the other IPs giving it).

    ``decisions`` is read, never written: the fold's own dict (or a snapshot of it while built off the loop;
    :meth:`follow` then points the planner at the live one). ``routes`` and ``announcements`` are updated in
    place. Not thread-safe: one owner at a time."""

    def __init__(
        self, *, node: NodeFacts | None, configuration: Configuration, decisions: Mapping[str, IPDecision]
    ) -> None:
        self.node = node
        self._decisions = decisions
        self.peers = {p.name: p for p in configuration.peers if peer_applies(p, node)} if node is not None else {}
        self.routes: dict[str, dict[Prefix, Route]] = {name: {} for name in self.peers}
        self.announcements: dict[str, IPAnnouncement] = {}
        self._conflicts: dict[tuple[str, Prefix], LocalPrefConflict] = {}
        #: per interned terms (by identity, the terms kept alive here): the peers its routes go to, None when
        #: this node is not admitted
        self._targets: dict[int, tuple[RouteTerms, tuple[str, ...] | None]] = {}
        #: prefixes shorter than a host route, and the IPs giving them
        self._aggregates: dict[Prefix, set[str]] = {}
        self._shared: dict[RouteAttributes, Route] = {}
        self._peer_names: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._alone: dict[int, tuple[RouteTerms, Route]] = {}  # per terms (as _targets): its route given alone
        self._changed_prefixes: set[Prefix] = set()
        self._changed_ips: set[str] = set()
        if node is None or not node.usable:
            return
        prefixes: dict[Prefix, str | None] = {}
        for ip, decision in decisions.items():
            for prefix in self._enter(ip, decision):
                prefixes[prefix] = ip if _is_host(prefix) else None
        for prefix in sorted(prefixes, key=prefix_key):
            self._merge(prefix, prefixes[prefix])
        self.take_changes()  # made whole: nothing changed since

    def follow(self, decisions: Mapping[str, IPDecision]) -> None:
        self._decisions = decisions

    def update(self, ip: str, old: IPDecision | None) -> None:
        """``ip``'s decision changed from ``old`` to what ``decisions`` now holds (None: withdrawn)."""
        if self.node is None or not self.node.usable:
            return
        touched: dict[Prefix, str | None] = {}
        if old is not None:
            for prefix, _ in old.routes:
                host = _is_host(prefix)
                if not host and (holders := self._aggregates.get(prefix)) is not None:
                    holders.discard(ip)
                    if not holders:
                        del self._aggregates[prefix]
                touched[prefix] = ip if host else None
        announced = self.announcements.pop(ip, None)
        new = self._decisions.get(ip)
        if new is not None:
            for prefix in self._enter(ip, new):
                touched[prefix] = ip if _is_host(prefix) else None
        if self.announcements.get(ip) != announced:
            self._changed_ips.add(ip)
        for prefix, host_ip in touched.items():
            self._merge(prefix, host_ip)

    def take_changes(self) -> PlanChanges:
        """What :meth:`update` changed since the last call (or since the planner was made whole)."""
        changes = PlanChanges(prefixes=frozenset(self._changed_prefixes), ips=frozenset(self._changed_ips))
        self._changed_prefixes.clear()
        self._changed_ips.clear()
        return changes

    def plan(self) -> Plan:
        return Plan(
            peers={name: PeerPlan(peer, self.routes[name]) for name, peer in self.peers.items()},
            announcements=self.announcements,
            conflicts=tuple(self._conflicts[key] for key in sorted(self._conflicts, key=_conflict_key)),
        )

    def _to(self, terms: RouteTerms) -> tuple[str, ...] | None:
        cached = self._targets.get(id(terms))
        if cached is None or cached[0] is not terms:
            assert self.node is not None
            cached = self._targets[id(terms)] = (terms, _targets(terms, self.node, self.peers))
        return cached[1]

    def _enter(self, ip: str, decision: IPDecision) -> list[Prefix]:
        """Register ``ip``'s admitted routes and its announcement; the prefixes they give."""
        admitted: list[Prefix] = []
        ip_peers: set[str] = set()
        for prefix, terms in decision.routes:
            to = self._to(terms)
            if to is None:
                continue
            admitted.append(prefix)
            ip_peers.update(to)
            if not _is_host(prefix):
                self._aggregates.setdefault(prefix, set()).add(ip)
        if admitted:
            peers = tuple(sorted(ip_peers))
            peers = self._peer_names.setdefault(peers, peers)
            self.announcements[ip] = IPAnnouncement(
                service_names=decision.service_names, service_uids=decision.service_uids, peers=peers
            )
        return admitted

    def _route_of(self, terms: RouteTerms) -> Route:
        """The route of ``terms`` given alone (worked out once per interned terms)."""
        cached = self._alone.get(id(terms))
        if cached is None or cached[0] is not terms:
            attributes = (tuple(sorted(set(terms.communities))), tuple(sorted(set(terms.large_communities))),
                          terms.local_pref or None)  # fmt: skip
            cached = self._alone[id(terms)] = (terms, self._shared_route(attributes))
        return cached[1]

    def _shared_route(self, attributes: RouteAttributes) -> Route:
        """One Route per attribute set: the speaker groups prefixes by it."""
        route = self._shared.get(attributes)
        if route is None:
            route = self._shared[attributes] = Route(
                communities=attributes[0], large_communities=attributes[1], local_pref=attributes[2]
            )
        return route

    def _set(self, prefix: Prefix, to: tuple[str, ...], route: Route) -> None:
        """``prefix`` goes with ``route`` to the peers ``to``, to no other; no conflict."""
        for name, routes in self.routes.items():
            self._conflicts.pop((name, prefix), None)
            if name in to:
                if routes.get(prefix) is not route:
                    routes[prefix] = route
                    self._changed_prefixes.add(prefix)
            elif routes.pop(prefix, None) is not None:
                self._changed_prefixes.add(prefix)

    def _merge(self, prefix: Prefix, host_ip: str | None) -> None:
        """Every peer's route for ``prefix`` from the IPs giving it (a host route: its own IP alone)."""
        holders = (host_ip,) if host_ip is not None else tuple(self._aggregates.get(prefix, ()))
        given_by: list[tuple[RouteTerms, tuple[str, ...]]] = []
        for ip in holders:
            decision = self._decisions.get(ip)
            if decision is None:
                continue
            for given, terms in decision.routes:
                if given == prefix and (to := self._to(terms)) is not None:
                    given_by.append((terms, to))
        if len(given_by) == 1:  # most prefixes: one IP's host route from one advertisement, nothing to merge
            self._set(prefix, given_by[0][1], self._route_of(given_by[0][0]))
            return
        merged: dict[str, _Merged] = {}
        for terms, to in given_by:
            for name in to:
                entry = merged.get(name)
                if entry is None:
                    entry = merged[name] = _Merged()
                entry.communities.update(terms.communities)
                entry.large.update(terms.large_communities)
                if terms.local_pref:
                    entry.local_prefs.add(terms.local_pref)
        for name, routes in self.routes.items():
            entry = merged.get(name)
            if entry is None:
                if routes.pop(prefix, None) is not None:
                    self._changed_prefixes.add(prefix)
                self._conflicts.pop((name, prefix), None)
                continue
            local_pref = max(entry.local_prefs) if entry.local_prefs else None
            if len(entry.local_prefs) > 1:
                assert local_pref is not None
                self._conflicts[(name, prefix)] = LocalPrefConflict(
                    name, prefix, tuple(sorted(entry.local_prefs)), local_pref)  # fmt: skip
            else:
                self._conflicts.pop((name, prefix), None)
            route = self._shared_route((tuple(sorted(entry.communities)), tuple(sorted(entry.large)), local_pref))
            if routes.get(prefix) is not route:
                routes[prefix] = route
                self._changed_prefixes.add(prefix)


def plan(*, node: NodeFacts | None, configuration: Configuration, decisions: Mapping[str, IPDecision]) -> Plan:
    """The whole BGP picture of this node. Deterministic: no clock, routes sorted by prefix."""
    return Planner(node=node, configuration=configuration, decisions=decisions).plan()


def _is_host(prefix: Prefix) -> bool:
    return prefix.prefixlen == prefix.max_prefixlen


def _conflict_key(key: tuple[str, Prefix]) -> tuple[str, int, int, int]:
    return (key[0], *prefix_key(key[1]))


def _targets(terms: RouteTerms, node: NodeFacts, peers: Mapping[str, BGPPeer]) -> tuple[str, ...] | None:
    """The node's peers a route of ``terms`` goes to (maybe none), or None when it does not go from here."""
    if not selectors_admit(terms.node_selectors, node.labels):
        return None
    return tuple(name for name in peers if not terms.peers or name in terms.peers)


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
