"""MetalLB's rules about where a Service's IP may be announced, in one place. Pure: no I/O, no clock.

Every reader of the rules uses this module: ipam's L2 placement and BGP decisions, the announcer's check of
its own node, and ``metalbus explain``.

- A node is *usable* when Kubernetes knows it, it is not ``NetworkUnavailable`` and it does not carry
  ``node.kubernetes.io/exclude-from-external-load-balancers`` (:func:`node_usability`, with the reason).
- A Service's *serving endpoints* are those with ``conditions.serving`` (ready or terminating), counted per
  node (:func:`serving_nodes`).
- ``externalTrafficPolicy`` decides where the IP may be announced (:func:`where_announced`): Cluster, from
  every eligible node once one endpoint serves anywhere; Local, only from the nodes with a serving endpoint.
- Label selectors (an advertisement's or a peer's ``nodeSelectors``): none selects everything, otherwise
  any one must match (:func:`selectors_admit`).
- BGP: the prefix is the IP masked to ``aggregationLength(V6)`` (:func:`aggregate_prefix`, as text
  :func:`aggregate_prefix_text`); communities are values or ``Community`` alias names, resolved to integers
  (:func:`resolve_communities`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from schemas.metallb.advertisements import PoolSelection
from schemas.metallb.common import LabelSelector, any_selector_matches
from schemas.metallb.community import (
    BGPCommunity,
    LargeCommunity,
    StandardCommunity,
    looks_like_community_value,
    parse_community,
)

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


class NodeUsability(StrEnum):
    """Whether a node may announce anything at all, and if not why (MetalLB's speaker reasons)."""

    USABLE = "Usable"
    NODE_UNKNOWN = "NodeUnknown"
    """No Node object is known by that name."""
    NETWORK_UNAVAILABLE = "NodeNetworkUnavailable"
    """The node's ``NetworkUnavailable`` condition is true."""
    EXCLUDED = "NodeLabeledExcludeBalancers"
    """The node carries ``node.kubernetes.io/exclude-from-external-load-balancers``."""


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the rules need of a Node (``addresses``: InternalIP first, then the other addresses)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    network_unavailable: bool = False
    addresses: tuple[str, ...] = ()

    @property
    def usability(self) -> NodeUsability:
        if self.network_unavailable:
            return NodeUsability.NETWORK_UNAVAILABLE
        if EXCLUDE_LABEL in self.labels:
            return NodeUsability.EXCLUDED
        return NodeUsability.USABLE

    @property
    def usable(self) -> bool:
        return self.usability is NodeUsability.USABLE


def node_usability(node: NodeFacts | None) -> NodeUsability:
    """Whether ``node`` (None: not known) may announce, with the reason when it may not."""
    return NodeUsability.NODE_UNKNOWN if node is None else node.usability


class TrafficPolicy(StrEnum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


def traffic_policy(external_traffic_policy: str | None) -> TrafficPolicy:
    """A Service's ``externalTrafficPolicy``; anything but ``Local`` (unset included) is Cluster."""
    return TrafficPolicy.LOCAL if external_traffic_policy == TrafficPolicy.LOCAL else TrafficPolicy.CLUSTER


class EndpointsOnNode(Protocol):
    """One node's share of a Service's endpoints (``NodeEndpoints`` on the bus)."""

    @property
    def node(self) -> str: ...

    @property
    def serving(self) -> int: ...


def serving_nodes(endpoints: Iterable[EndpointsOnNode]) -> frozenset[str]:
    """The nodes with at least one serving endpoint."""
    return frozenset([e.node for e in endpoints if e.serving > 0])  # a list: cheaper than a generator here


class ServingVerdict(StrEnum):
    """Whether the endpoints let a node announce a Service (MetalLB's ``ShouldAnnounce`` endpoint answers)."""

    SERVING = "Serving"
    NO_ENDPOINTS = "NoServingEndpoints"
    """No endpoint serves anywhere."""
    NO_LOCAL_ENDPOINTS = "NoLocalServingEndpoints"
    """externalTrafficPolicy Local and no endpoint serves on this node."""


def where_announced(policy: TrafficPolicy, serving: frozenset[str]) -> frozenset[str] | None:
    """The nodes the endpoints allow to announce: None for every node (Cluster, something serves), else
    only these (Local: the serving nodes; empty: nowhere)."""
    if policy is TrafficPolicy.LOCAL:
        return serving
    return None if serving else frozenset()


def serving_verdict(policy: TrafficPolicy, serving: frozenset[str], node: str) -> ServingVerdict:
    """Whether the endpoints let ``node`` announce, and if not why."""
    if not serving:
        return ServingVerdict.NO_ENDPOINTS
    if policy is TrafficPolicy.LOCAL and node not in serving:
        return ServingVerdict.NO_LOCAL_ENDPOINTS
    return ServingVerdict.SERVING


def selectors_admit(selectors: Iterable[LabelSelector], labels: Mapping[str, str]) -> bool:
    """MetalLB's rule for a list of selectors (``nodeSelectors``): none admits everything, otherwise any
    one must match."""
    return any_selector_matches(tuple(selectors), labels)


def advertisements_selecting(
    selections: Iterable[PoolSelection], *, pool: str, pool_labels: Mapping[str, str], service_labels: Mapping[str, str]
) -> tuple[int, ...]:
    """Indices of the advertisements (their specs) that select ``pool`` (``ipAddressPools`` /
    ``ipAddressPoolSelectors``; neither: every pool) and a Service with ``service_labels``."""
    return tuple(
        index
        for index, spec in enumerate(selections)
        if spec.selects_pool(pool, pool_labels) and spec.selects_service(service_labels)
    )


# --- BGP: prefixes and communities ------------------------------------------------------------------


def aggregate_prefix(ip: str, *, length_v4: int, length_v6: int) -> Prefix:
    """``ip`` masked to the aggregation length of its family."""
    address = ipaddress.ip_address(ip)
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv4Network((int(address) >> (32 - length_v4) << (32 - length_v4), length_v4))
    return ipaddress.IPv6Network((int(address) >> (128 - length_v6) << (128 - length_v6), length_v6))


#: An IPv4 address as ``ipaddress`` writes it (no leading zeros, each octet at most 255).
_CANONICAL_V4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def aggregate_prefix_text(ip: str, *, length_v4: int, length_v6: int) -> str:
    """``str(aggregate_prefix(...))``; a host route of an IPv4 address written as ``ipaddress`` writes it (the
    common case: MetalLB's default aggregationLength) is that text with ``/32``, without parsing."""
    if length_v4 == 32 and _CANONICAL_V4.fullmatch(ip):
        return f"{ip}/32"
    return str(aggregate_prefix(ip, length_v4=length_v4, length_v6=length_v6))


def resolve_communities(
    texts: Iterable[str], aliases: Mapping[str, BGPCommunity]
) -> tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]]:
    """Standard communities as 32-bit values and large ones as triples, sorted and unique; unknown aliases
    are dropped (the configuration check reports them, and an invalid configuration is never put in force)."""
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


# --- where a node stands, for one IP (what ``explain`` shows, what the announcers apply) ------------------


class NodeReason(StrEnum):
    """Why a node does or does not announce an IP, in one mode."""

    ANNOUNCES = "Announces"
    STANDBY = "Standby"
    """Layer 2: eligible, but another node was chosen to answer (one node answers per IP)."""
    NODE_NETWORK_UNAVAILABLE = NodeUsability.NETWORK_UNAVAILABLE.value
    NODE_EXCLUDED = NodeUsability.EXCLUDED.value
    NOT_SELECTED = "NotSelectedByAdvertisement"
    """No advertisement for the IP admits the node (their ``nodeSelectors``)."""
    NO_SERVING_ENDPOINTS = ServingVerdict.NO_ENDPOINTS.value
    NO_LOCAL_SERVING_ENDPOINTS = ServingVerdict.NO_LOCAL_ENDPOINTS.value
    NO_PEER = "NoPeerForNode"
    """BGP: no BGPPeer the routes go to applies to the node (the peers' ``nodeSelectors``)."""
    CANNOT_ANSWER = "CannotAnswer"
    """Layer 2: the rules admit the node, but its announcer reports it cannot answer (not ready, or no interface
    up among those the advertisements name): ipam places the IP elsewhere."""


_UNUSABLE: dict[NodeUsability, NodeReason] = {
    NodeUsability.NETWORK_UNAVAILABLE: NodeReason.NODE_NETWORK_UNAVAILABLE,
    NodeUsability.EXCLUDED: NodeReason.NODE_EXCLUDED,
}


class RouteScope(Protocol):
    """Where one BGP route goes (``BGPRoute`` on the bus): the peers named (empty: every peer) and the
    nodes admitted (empty: every node)."""

    @property
    def peers(self) -> tuple[str, ...]: ...

    @property
    def node_selectors(self) -> tuple[LabelSelector, ...]: ...


def bgp_peers_of_node(
    node: NodeFacts,
    *,
    routes: Iterable[RouteScope],
    nodes: tuple[str, ...] | None,
    peers: Mapping[str, tuple[LabelSelector, ...]],
) -> tuple[NodeReason, tuple[str, ...]]:
    """Whether ``node`` advertises an IP decided with ``routes`` and ``nodes`` (None: every node), and to
    which of ``peers`` (BGPPeer name → its nodeSelectors): a route goes from a usable node its nodeSelectors
    admit, when ``nodes`` is None or names it, to each peer that applies to the node and that it names."""
    unusable = _UNUSABLE.get(node.usability)
    if unusable is not None:
        return unusable, ()
    if nodes is not None and node.name not in nodes:
        return NodeReason.NO_LOCAL_SERVING_ENDPOINTS, ()
    admitting = [r for r in routes if selectors_admit(r.node_selectors, node.labels)]
    if not admitting:
        return NodeReason.NOT_SELECTED, ()
    own = [name for name, selectors in sorted(peers.items()) if selectors_admit(selectors, node.labels)]
    reached = tuple(p for p in own if any(not r.peers or p in r.peers for r in admitting))
    return (NodeReason.ANNOUNCES, reached) if reached else (NodeReason.NO_PEER, ())


def l2_node_reason(
    node: NodeFacts,
    *,
    node_selectors: Iterable[tuple[LabelSelector, ...]],
    policy: TrafficPolicy,
    serving: frozenset[str],
    placed_on: str | None,
) -> NodeReason:
    """Whether ``node`` answers for an IP over layer 2: usable, admitted by one of the advertisements
    (each advertisement's nodeSelectors), allowed by the endpoints, and the one chosen (``placed_on``)."""
    unusable = _UNUSABLE.get(node.usability)
    if unusable is not None:
        return unusable
    if not any(selectors_admit(selectors, node.labels) for selectors in node_selectors):
        return NodeReason.NOT_SELECTED
    match serving_verdict(policy, serving, node.name):
        case ServingVerdict.NO_ENDPOINTS:
            return NodeReason.NO_SERVING_ENDPOINTS
        case ServingVerdict.NO_LOCAL_ENDPOINTS:
            return NodeReason.NO_LOCAL_SERVING_ENDPOINTS
    return NodeReason.ANNOUNCES if node.name == placed_on else NodeReason.STANDBY
