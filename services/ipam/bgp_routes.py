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

from schemas.events import BGPAdvertisementDecided, BGPRoute, BGPWithdrawReason, ServiceId
from schemas.metallb import BGPAdvertisement, Community, ConfigObject, IPAddressPool
from schemas.metallb.community import BGPCommunity
from schemas.metallb.rules import (
    TrafficPolicy,
    advertisements_selecting,
    aggregate_prefix,
    resolve_communities,
    where_announced,
)


@dataclass(frozen=True, slots=True)
class _Advertisement:
    """A BGPAdvertisement with what every IP it covers needs worked out once."""

    ad: BGPAdvertisement
    communities: tuple[int, ...]
    large_communities: tuple[tuple[int, int, int], ...]

    def route(self, ip: str) -> BGPRoute:
        spec = self.ad.spec
        prefix = aggregate_prefix(ip, length_v4=spec.aggregation_length, length_v6=spec.aggregation_length_v6)
        return BGPRoute(
            advertisement=self.ad.name,
            prefix=str(prefix),
            communities=self.communities,
            large_communities=self.large_communities,
            local_pref=spec.local_pref,
            peers=tuple(sorted(spec.peers)),
            node_selectors=spec.node_selectors,
        )


class BGPConfig:
    """The BGP side of a configuration: the BGPAdvertisements (by name), pools' labels, community aliases."""

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
        self.advertisements = tuple(
            _Advertisement(ad, *resolve_communities(ad.spec.communities, aliases)) for ad in ordered
        )

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
        labels = self.pool_labels.get(pool)
        if labels is None:
            return ()
        return advertisements_selecting(
            (a.ad.spec for a in self.advertisements), pool=pool, pool_labels=labels, service_labels=service_labels
        )


EMPTY_BGP_CONFIG = BGPConfig(())


@dataclass(frozen=True, slots=True)
class Holder:
    """One Service holding the IP, as the rules need it (``labels`` None: Kubernetes does not know it)."""

    service: ServiceId
    pool: str
    labels: Mapping[str, str] | None
    policy: TrafficPolicy
    serving: frozenset[str]


def decide(ip: str, holders: Sequence[Holder], config: BGPConfig) -> BGPAdvertisementDecided | BGPWithdrawReason:
    """What is advertised for ``ip`` held by ``holders`` (at least one), or why nothing is."""
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
    routes = sorted((config.advertisements[index].route(ip) for index in selected),
                    key=lambda r: (r.advertisement, r.prefix))
    return BGPAdvertisementDecided(
        ip=ip,
        services=tuple(sorted(set(services), key=lambda s: (s.namespace, s.name, s.uid))),
        routes=tuple(routes),
        nodes=None if everywhere else tuple(sorted(nodes)),
    )
