"""What is advertised over BGP for one IP, and from where: MetalLB's speaker rules as a function of the IP.
Pure: no I/O, no clock, deterministic.

MetalLB's speaker decides per node (``bgp_controller.go``); here the node-independent part is decided once per
IP, and each announcer applies the node-dependent part to itself (see ``schemas/events/decisions.py``):

- a BGPAdvertisement contributes a route for a Service's IP when it selects the Service's pool
  (``ipAddressPools`` / ``ipAddressPoolSelectors``; neither: every pool) and the Service (``serviceSelectors``);
  the route carries the advertisement's prefix (the IP masked to ``aggregationLength(V6)``), communities
  (aliases resolved), ``localPref`` (0: unset), ``peers`` (empty: every peer) and ``nodeSelectors`` (empty:
  every node), which the announcers apply to themselves;
- a Service counts when Kubernetes knows it, an advertisement selects it, and it has a serving endpoint:
  anywhere for ``externalTrafficPolicy: Cluster`` (every usable node the routes admit advertises), on the
  node for ``Local`` (only the nodes with a serving endpoint advertise);
- an IP shared by several Services is advertised with the routes of every Service that counts, from the
  union of their nodes (Cluster, if one of them is, makes it every node);
- nothing counts: withdrawn, because no advertisement selects any of its Services (``NoAdvertisement``) or
  because none has a serving endpoint where it would need one (``NoServingEndpoints``).
What one router receives (several IPs under one prefix merging, differing local preferences) is the
announcers' concern: they merge the routes of every IP exactly as MetalLB does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from schemas.events import BGPAdvertisementDecided, BGPRoute, BGPWithdrawReason, ServiceId
from schemas.metallb import BGPAdvertisement, Community, ConfigObject, IPAddressPool
from schemas.metallb.common import LabelSelector
from schemas.metallb.community import BGPCommunity
from schemas.metallb.rules import (
    TrafficPolicy,
    advertisements_selecting,
    aggregate_prefix_text,
    resolve_communities,
    where_announced,
)


@dataclass(frozen=True, slots=True)
class _Advertisement:
    """A BGPAdvertisement with what every route it gives has in common worked out once: a route differs from
    IP to IP only by its prefix."""

    ad: BGPAdvertisement
    name: str
    length_v4: int
    length_v6: int
    communities: tuple[int, ...]
    large_communities: tuple[tuple[int, int, int], ...]
    local_pref: int
    peers: tuple[str, ...]
    node_selectors: tuple[LabelSelector, ...]

    @classmethod
    def of(cls, ad: BGPAdvertisement, aliases: Mapping[str, BGPCommunity]) -> _Advertisement:
        spec = ad.spec
        communities, large = resolve_communities(spec.communities, aliases)
        return cls(ad, ad.name, spec.aggregation_length, spec.aggregation_length_v6, communities, large,
                   spec.local_pref, tuple(sorted(spec.peers)), spec.node_selectors)  # fmt: skip

    def prefix(self, ip: str) -> str:
        return aggregate_prefix_text(ip, length_v4=self.length_v4, length_v6=self.length_v6)

    def route(self, prefix: str) -> BGPRoute:
        return BGPRoute(
            advertisement=self.name,
            prefix=prefix,
            communities=self.communities,
            large_communities=self.large_communities,
            local_pref=self.local_pref,
            peers=self.peers,
            node_selectors=self.node_selectors,
        )

    def gave(self, route: BGPRoute, prefix: str) -> bool:
        """Whether ``route`` is the one this advertisement gives for ``prefix`` (no route is built)."""
        return (
            route.prefix == prefix
            and route.advertisement == self.name
            and route.local_pref == self.local_pref
            and route.communities == self.communities
            and route.large_communities == self.large_communities
            and route.peers == self.peers
            and route.node_selectors == self.node_selectors
        )


class BGPConfig:
    """The BGP side of a configuration: the BGPAdvertisements (by name), pools' labels, community aliases.

    Which advertisements select a pool and a Service is remembered per pool and per the values of the only
    labels the advertisements' ``serviceSelectors`` name, so that 50 000 Services in a few pools ask the
    selectors a few times, not 50 000."""

    def __init__(self, objects: Iterable[ConfigObject]) -> None:
        ads: list[BGPAdvertisement] = []
        self.pool_labels: dict[str, Mapping[str, str]] = {}
        aliases: dict[str, BGPCommunity] = {}
        for obj in objects:
            if isinstance(obj, BGPAdvertisement):
                ads.append(obj)
            elif isinstance(obj, IPAddressPool):
                self.pool_labels[obj.name] = obj.labels
            elif isinstance(obj, Community):
                aliases.update(obj.aliases())
        ordered = sorted(ads, key=lambda a: (a.name, a.namespace or ""))
        self.advertisements = tuple(_Advertisement.of(ad, aliases) for ad in ordered)
        self._label_keys = tuple(sorted({
            key for a in ordered for selector in a.spec.service_selectors
            for key in (*selector.match_labels, *(r.key for r in selector.match_expressions))}))  # fmt: skip
        self._selecting: dict[tuple[str, tuple[str | None, ...]], tuple[int, ...]] = {}

    def _key(self) -> tuple[object, ...]:
        return (
            tuple((a.ad.name, a.ad.spec, a.communities, a.large_communities) for a in self.advertisements),
            {name: dict(labels) for name, labels in self.pool_labels.items()},
        )

    def __eq__(self, other: object) -> bool:
        """Equal when no BGP decision would differ (other kinds and fields do not matter)."""
        if not isinstance(other, BGPConfig):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def selecting(self, pool: str, service_labels: Mapping[str, str]) -> tuple[int, ...]:
        """Indices of the advertisements that select ``pool`` (a pool it knows) and a Service with
        ``service_labels``."""
        key = (pool, tuple(service_labels.get(k) for k in self._label_keys))
        known = self._selecting.get(key)
        if known is None:
            known = self._selecting[key] = self._select(pool, service_labels)
        return known

    def _select(self, pool: str, service_labels: Mapping[str, str]) -> tuple[int, ...]:
        labels = self.pool_labels.get(pool)
        if labels is None:
            return ()
        return advertisements_selecting(
            (a.ad.spec for a in self.advertisements), pool=pool, pool_labels=labels, service_labels=service_labels
        )


EMPTY_BGP_CONFIG = BGPConfig(())


class Holder(NamedTuple):
    """One Service holding the IP, as the rules need it (``labels`` None: Kubernetes does not know it). A
    named tuple: one is made per IP and Service compared, and a frozen dataclass costs several times more."""

    service: ServiceId
    pool: str
    labels: Mapping[str, str] | None
    policy: TrafficPolicy
    serving: frozenset[str]


class Wanted(NamedTuple):
    """What the rules want advertised for one IP, before any event is built: the Services that count, the
    advertisements giving routes (indices into the configuration's, ascending) and the nodes (None: every
    node). Equal for two IPs of one kind (same Services' facts, same advertisements): only prefixes differ."""

    services: tuple[ServiceId, ...]
    advertisements: tuple[int, ...]
    nodes: tuple[str, ...] | None


def _service_order(service: ServiceId) -> tuple[str, str, str]:
    return service.namespace, service.name, service.uid


def wanted(holders: Sequence[Holder], config: BGPConfig) -> Wanted | BGPWithdrawReason:
    """What is wanted for an IP held by ``holders``, or why nothing is advertised."""
    if not holders:
        return BGPWithdrawReason.RELEASED
    selected: set[int] = set()
    services: list[ServiceId] = []
    everywhere = False
    nodes: set[str] = set()
    advertised = False
    for holder in holders:
        if holder.labels is None:
            continue
        ads = config.selecting(holder.pool, holder.labels)
        if not ads:
            continue
        advertised = True
        where = where_announced(holder.policy, holder.serving)
        if where is not None and not where:
            continue
        selected.update(ads)
        services.append(holder.service)
        if where is None:
            everywhere = True
        else:
            nodes |= where
    if not selected:
        return BGPWithdrawReason.NO_SERVING_ENDPOINTS if advertised else BGPWithdrawReason.NO_ADVERTISEMENT
    return Wanted(  # services, advertisements, nodes (positional, as ``Holder``)
        tuple(services) if len(services) == 1 else tuple(sorted(set(services), key=_service_order)),
        tuple(sorted(selected)),
        None if everywhere else tuple(sorted(nodes)),
    )


def _routes_of(ip: str, want: Wanted, config: BGPConfig) -> list[tuple[_Advertisement, str]]:
    """The advertisements giving ``ip`` its routes with their prefixes, in the decision's order (by name,
    then prefix; the configuration's advertisements are already in name order)."""
    ads = config.advertisements
    given = [(ads[i], ads[i].prefix(ip)) for i in want.advertisements]
    if len(given) > 1:
        given.sort(key=lambda pair: (pair[0].name, pair[1]))
    return given


def decision(ip: str, want: Wanted, config: BGPConfig) -> BGPAdvertisementDecided:
    """The event saying ``want`` for ``ip``."""
    return BGPAdvertisementDecided(
        ip=ip,
        services=want.services,
        routes=tuple(ad.route(prefix) for ad, prefix in _routes_of(ip, want, config)),
        nodes=want.nodes,
    )


def says(recorded: BGPAdvertisementDecided, ip: str, want: Wanted, config: BGPConfig) -> bool:
    """Whether ``recorded`` is the decision ``want`` gives ``ip`` (equal to :func:`decision`'s, no event built:
    a takeover compares every IP, most with one Service and one advertisement)."""
    routes, services = recorded.routes, recorded.services
    if recorded.nodes != want.nodes or len(routes) != len(want.advertisements) or recorded.ip != ip:
        return False
    if len(routes) == 1:
        ad = config.advertisements[want.advertisements[0]]
        if not ad.gave(routes[0], ad.prefix(ip)):
            return False
    elif not all(ad.gave(r, prefix) for r, (ad, prefix) in zip(routes, _routes_of(ip, want, config), strict=True)):
        return False
    if len(services) != len(want.services):
        return False
    return all(
        a is b or (a.namespace == b.namespace and a.name == b.name and a.uid == b.uid)  # a ServiceId's fields
        for a, b in zip(services, want.services, strict=True)
    )


def decide(ip: str, holders: Sequence[Holder], config: BGPConfig) -> BGPAdvertisementDecided | BGPWithdrawReason:
    """What is advertised for ``ip`` held by ``holders`` (at least one), or why nothing is."""
    want = wanted(holders, config)
    return want if isinstance(want, BGPWithdrawReason) else decision(ip, want, config)
