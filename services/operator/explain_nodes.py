"""Why each node does or does not announce a Service's IP, in layer 2 and over BGP, grouped by reason so that
thousands of nodes stay readable. Pure: the nodes, the configuration in force and ipam's decisions in,
sentences out; the rules are those of ``schemas.metallb.rules``, the ones ipam and the announcers apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    DataPlaneReported,
    L2PlacementDecided,
    NodeObserved,
)
from schemas.metallb import BGPAdvertisement, BGPPeer, ConfigObject, IPAddressPool, L2Advertisement
from schemas.metallb.common import LabelSelector
from schemas.metallb.rules import (
    NodeFacts,
    NodeReason,
    TrafficPolicy,
    advertisements_selecting,
    bgp_peers_of_node,
    l2_node_reason,
    selectors_admit,
)

#: How many node names a reason lists before it only counts the others.
NAMES_PER_REASON = 5


@dataclass(frozen=True, slots=True)
class ServiceScope:
    """What the rules need of the Service asked about."""

    pool: str
    labels: Mapping[str, str]
    policy: TrafficPolicy
    serving: frozenset[str]


@dataclass(frozen=True, slots=True)
class InForce:
    """The configuration in force, as far as ``explain`` needs it."""

    l2_advertisements: tuple[L2Advertisement, ...]
    pool_labels: Mapping[str, Mapping[str, str]]
    bgp_advertisements: int
    peers: Mapping[str, tuple[LabelSelector, ...]]

    @classmethod
    def of(cls, objects: Iterable[ConfigObject]) -> InForce:
        listed = list(objects)
        l2 = sorted((o for o in listed if isinstance(o, L2Advertisement)), key=lambda a: a.name)
        return cls(
            l2_advertisements=tuple(l2),
            pool_labels={o.name: o.labels for o in listed if isinstance(o, IPAddressPool)},
            bgp_advertisements=sum(isinstance(o, BGPAdvertisement) for o in listed),
            peers={o.name: o.spec.node_selectors for o in listed if isinstance(o, BGPPeer)},
        )  # fmt: skip


def node_facts(observed: NodeObserved) -> NodeFacts:
    return NodeFacts(observed.ref.name, dict(observed.labels), observed.network_unavailable)


def grouped(verdicts: Iterable[tuple[str, str]], *, indent: str = "  ") -> list[str]:
    """One line per verdict (most nodes first): how many nodes, and the first few names."""
    by_verdict: dict[str, list[str]] = {}
    for node, verdict in verdicts:
        by_verdict.setdefault(verdict, []).append(node)
    lines = []
    for verdict, nodes in sorted(by_verdict.items(), key=lambda item: (-len(item[1]), item[0])):
        names = sorted(nodes)
        shown = ", ".join(names[:NAMES_PER_REASON])
        more = f", … and {len(names) - NAMES_PER_REASON} more" if len(names) > NAMES_PER_REASON else ""
        lines.append(f"{indent}{verdict} ({len(names)}): {shown}{more}")
    return lines


def l2_lines(
    ip: str, scope: ServiceScope, in_force: InForce, nodes: Sequence[NodeFacts], placement: L2PlacementDecided | None,
    dataplanes: Mapping[str, DataPlaneReported] | None = None,
) -> list[str]:
    """Layer 2: per node, why it answers for ``ip`` or not; a node the rules admit whose announcer reports that it
    cannot answer on the interfaces the advertisements name (``dataplanes``) is told so."""
    listed = in_force.l2_advertisements
    ads = advertisements_selecting((a.spec for a in listed), pool=scope.pool,
                                   pool_labels=in_force.pool_labels.get(scope.pool, {}), service_labels=scope.labels)
    if not ads:
        return [f"{ip}: layer 2 — no L2Advertisement selects pool {scope.pool} and the Service."]
    selectors = [listed[index].spec.node_selectors for index in ads]
    placed_on = placement.node if placement is not None else None

    def verdict(node: NodeFacts) -> str:
        reason = l2_node_reason(node, node_selectors=selectors, policy=scope.policy, serving=scope.serving,
                                placed_on=placed_on)
        report = (dataplanes or {}).get(node.name)
        if reason in (NodeReason.ANNOUNCES, NodeReason.STANDBY) and report is not None:
            names = _interfaces_named(node, [listed[index] for index in ads])
            if not report.answers(names):
                why = "not ready" if not report.ready else f"no interface up among {', '.join(names) or 'any'}"
                return f"{NodeReason.CANNOT_ANSWER.value} ({why})"
        return reason.value

    verdicts = ((node.name, verdict(node)) for node in nodes)
    names = ", ".join(listed[index].name for index in ads)
    return [f"{ip}: layer 2 by {names}; per node:", *grouped(verdicts)]


def _interfaces_named(node: NodeFacts, advertisements: Sequence[L2Advertisement]) -> tuple[str, ...]:
    """The interfaces the advertisements admitting ``node`` name (none: any interface)."""
    names: set[str] = set()
    for advertisement in advertisements:
        if selectors_admit(advertisement.spec.node_selectors, node.labels):
            if not advertisement.spec.interfaces:
                return ()
            names.update(advertisement.spec.interfaces)
    return tuple(sorted(names))


def bgp_lines(
    ip: str,
    in_force: InForce,
    nodes: Sequence[NodeFacts],
    decision: BGPAdvertisementDecided | BGPAdvertisementWithdrawn | None,
) -> list[str]:
    """BGP: what ipam decided for ``ip``, and per node whether it advertises it and to which peers."""
    if decision is None:
        if not in_force.bgp_advertisements:
            return []
        return [f"{ip}: BGP — ipam has decided nothing for it (no BGPAdvertisement selects it, or not yet)."]
    if isinstance(decision, BGPAdvertisementWithdrawn):
        return [f"{ip}: BGP — nothing advertised ({decision.reason.value})."]
    routes = ", ".join(f"{r.prefix} by {r.advertisement}" for r in decision.routes)
    if decision.nodes is None:
        where = "from every usable node the advertisements admit (externalTrafficPolicy Cluster)"
    else:
        where = f"only from the {len(decision.nodes)} nodes with a serving endpoint (externalTrafficPolicy Local)"
    verdicts = []
    for node in nodes:
        reason, peers = bgp_peers_of_node(node, routes=decision.routes, nodes=decision.nodes, peers=in_force.peers)
        verdicts.append((node.name, f"{reason.value} to {', '.join(peers)}" if reason is NodeReason.ANNOUNCES
                         else reason.value))  # fmt: skip
    return [f"{ip}: BGP — advertised as {routes}, {where}; per node:", *grouped(verdicts)]
