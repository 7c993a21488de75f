"""L2 placement: which one node answers ARP/NDP for each IP. Pure: no I/O, no clock, deterministic.

The unit of placement is a *group* of IPs that must stay on one node: the IPs of one Service (a
dual-stack pair) and every IP shared between Services, closed transitively. The rules:

Eligible nodes (``eligibility``)
  A node is *usable* when its announcer is live and can answer (``services.ipam.dataplane_rule``: ready,
  with an interface to answer on) and MetalLB's rules find it usable (``schemas.metallb.rules``: Kubernetes
  knows it, not ``NetworkUnavailable``, not excluded by label). An advertisement selects a usable node only
  where the node can answer on the interfaces it names (on any, when it names none).
  A Service *wants* its IPs announced when an L2Advertisement selects its pool (``ipAddressPools`` /
  ``ipAddressPoolSelectors``; neither selects every pool) and the Service (``serviceSelectors``), and it
  has a serving endpoint somewhere. A node is eligible for a Service when it is usable and one of those
  advertisements selects it (``nodeSelectors``) and, for ``externalTrafficPolicy: Local``, a serving
  endpoint runs on it. A node is eligible for a group when it is eligible for every Service of the group
  that wants it; Services without a serving endpoint do not hold the shared IP back. A group none of whose
  Services has an L2Advertisement gets no placement at all (a BGP-only pool).

Choice (sticky, preferred, balanced within fair share + 1): see ``services.ipam.placer``.

Interfaces: the union of the ``interfaces`` of the wanting Services' advertisements that select the chosen
node; empty (every interface) when one of them names none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from schemas.metallb import IPAddressPool, L2Advertisement
from schemas.metallb.rules import NodeFacts, advertisements_selecting
from services.ipam.dataplane_rule import Answering


class L2Config:
    """The L2 side of a configuration: the L2Advertisements (in name order) and the pools' labels."""

    def __init__(self, advertisements: Iterable[L2Advertisement], pools: Iterable[IPAddressPool]) -> None:
        self.advertisements = tuple(
            sorted(advertisements, key=lambda a: (a.metadata.namespace or "", a.metadata.name))
        )
        self.pool_labels: dict[str, Mapping[str, str]] = {p.metadata.name: p.metadata.labels for p in pools}

    def __eq__(self, other: object) -> bool:
        """Equal when placement would see no difference (other kinds and fields do not matter)."""
        if not isinstance(other, L2Config):
            return NotImplemented
        return (
            tuple(a.spec for a in self.advertisements) == tuple(a.spec for a in other.advertisements)
            and {k: dict(v) for k, v in self.pool_labels.items()} == {k: dict(v) for k, v in other.pool_labels.items()}
        )

    __hash__ = None  # type: ignore[assignment]

    def selecting(self, pool: str, service_labels: Mapping[str, str]) -> tuple[int, ...]:
        """Indices of the advertisements that select ``pool`` and a Service with ``service_labels``."""
        return advertisements_selecting(
            (ad.spec for ad in self.advertisements), pool=pool, pool_labels=self.pool_labels.get(pool, {}),
            service_labels=service_labels,
        )


EMPTY_CONFIG = L2Config((), ())


class Topology:
    """Which usable nodes each advertisement selects, and how much each prefers them."""

    def __init__(self, config: L2Config, nodes: Iterable[NodeFacts], live: frozenset[str],
                 answering: Mapping[str, Answering] | None = None) -> None:
        self.config = config
        known = {node.name: node for node in nodes}
        self.live = live
        self.answering: Mapping[str, Answering] = answering or {}
        self.known = frozenset(known)
        self.usable = frozenset(name for name, node in known.items() if name in live and node.usable
                                and (name not in self.answering or self.answering[name].anything))
        ordered = sorted(self.usable)
        #: per advertisement, the usable nodes it selects that can answer on its interfaces, held-down ones too
        self.selected_held_too: tuple[frozenset[str], ...] = tuple(
            frozenset(n for n in ordered if ad.spec.selects_node(known[n].labels) and self._answers(n, ad))
            for ad in config.advertisements
        )
        self.held_down = frozenset(n for n, answering in self.answering.items() if answering.held_down)
        #: ... and without the held-down ones
        self.selected: tuple[frozenset[str], ...] = (
            tuple(nodes - self.held_down for nodes in self.selected_held_too) if self.held_down
            else self.selected_held_too
        )
        self.preference: tuple[dict[str, int], ...] = tuple(
            {n: w for n in self.selected[i] if (w := ad.spec.node_preference(known[n].labels))}
            for i, ad in enumerate(config.advertisements)
        )

    def _answers(self, node: str, advertisement: L2Advertisement) -> bool:
        answering = self.answering.get(node)
        return answering is None or answering.answers(advertisement.spec.interfaces)

    def why_not(self, node: str) -> str:
        """Plain words for why ``node`` cannot answer (for the reason of a failover)."""
        if node not in self.live:
            return f"{node} is not live"
        if node not in self.known:
            return f"{node} is not a known node"
        answering = self.answering.get(node)
        if answering is not None and not answering.anything:
            return f"{node} cannot answer: {answering.why_not()}"
        if node not in self.usable:
            return f"{node} is unavailable or excluded"
        if answering is not None:
            return f"{node} is no longer eligible (or cannot answer on the interfaces its advertisements name)"
        return f"{node} is no longer eligible"


EMPTY_TOPOLOGY = Topology(EMPTY_CONFIG, (), frozenset())


@dataclass(frozen=True, slots=True)
class Demand:
    """One Service's claim on its IPs, as placement needs it."""

    advertisements: tuple[int, ...]
    """The advertisements selecting its pool and the Service (none: it is not announced over L2)."""
    local: bool
    """``externalTrafficPolicy: Local``."""
    serving: frozenset[str]
    """Nodes with a serving endpoint of the Service."""

    @property
    def l2(self) -> bool:
        return bool(self.advertisements)

    @property
    def wants(self) -> bool:
        return bool(self.advertisements) and bool(self.serving)

    def signature(self) -> tuple[tuple[int, ...], bool, frozenset[str] | bool]:
        """What eligibility depends on: Services with equal signatures are eligible on the same nodes."""
        return self.advertisements, self.local, self.serving if self.local else bool(self.serving)


@dataclass(frozen=True, slots=True)
class Eligibility:
    nodes: frozenset[str]
    """Every eligible node."""
    preferred: frozenset[str]
    """The eligible nodes of the highest preference (all of them when nothing is preferred)."""


NOWHERE = Eligibility(frozenset(), frozenset())


def eligibility(demands: Sequence[Demand], topology: Topology) -> Eligibility | None:
    """Where a group may be placed; None when none of its Services is announced over L2. Nodes held down after
    flapping count only where no other node is eligible."""
    if not any(d.l2 for d in demands):
        return None
    found = _eligible(demands, topology, topology.selected)
    if found is NOWHERE and topology.held_down:
        return _eligible(demands, topology, topology.selected_held_too)
    return found


def _eligible(demands: Sequence[Demand], topology: Topology, by_advertisement: Sequence[frozenset[str]]
              ) -> Eligibility:
    nodes: frozenset[str] | None = None
    wanting = [d for d in demands if d.wants]
    for demand in wanting:
        # Sets are not copied or walked whole where they need not be: a topology change evaluates every
        # kind again, thousands at 5 000 nodes (a Local Service's kind is its few serving nodes).
        selected = [by_advertisement[a] for a in demand.advertisements]
        if demand.local:
            own = frozenset(n for n in demand.serving if any(n in s for s in selected))
        else:
            own = selected[0] if len(selected) == 1 else frozenset().union(*selected)
        nodes = own if nodes is None else nodes & own
    if not nodes:
        return NOWHERE
    preferences = [p for a in sorted({a for d in wanting for a in d.advertisements}) if (p := topology.preference[a])]
    if not preferences:
        return Eligibility(nodes, nodes)  # nobody prefers: every eligible node ties
    scores = {n: max(p.get(n, 0) for p in preferences) for n in nodes}
    best = max(scores.values())
    return Eligibility(nodes, frozenset(n for n, s in scores.items() if s == best))


def interfaces(demands: Sequence[Demand], topology: Topology, node: str) -> tuple[str, ...]:
    """The interfaces ``node`` answers on for a group: the union over the advertisements that apply there."""
    names: set[str] = set()
    for a in sorted({a for d in demands if d.wants for a in d.advertisements}):
        if node in topology.selected[a]:
            listed = topology.config.advertisements[a].spec.interfaces
            if not listed:
                return ()
            names.update(listed)
    return tuple(sorted(names))
