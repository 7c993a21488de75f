"""``metalbus explain <namespace>/<service>``: why a Service has (or has not) an IP, and why it is announced
where it is — from the last decisions on the bus, in plain words.

:func:`explain_lines` is pure (a view of the bus and the observed Service in, sentences out);
:func:`show_explain` reads the bus and prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from schemas.events import (
    AllocationFailed,
    EndpointsObserved,
    IPAllocated,
    IPReleased,
    NodeObserved,
    ObjectKind,
    ServiceObserved,
)
from schemas.metallb import ConfigObject, InvalidConfigObject, parse_config_object
from schemas.metallb.rules import NodeFacts, TrafficPolicy, serving_nodes, traffic_policy
from services.common.bus import Bus, Received
from services.common.subjects import StreamName, k8s_kind_filter, k8s_subject
from services.operator.explain_nodes import InForce, ServiceScope, bgp_lines, l2_lines, node_facts
from services.operator.views import At, ClusterView, connect_operator, read_view, since


def _when(at: At, now: datetime) -> str:
    return f"{since(at, now)} ago (sequence {at.sequence})"


def _serving(endpoints: EndpointsObserved | None) -> frozenset[str]:
    return serving_nodes(endpoints.nodes) if endpoints is not None else frozenset()


def _endpoint_lines(observed: ServiceObserved | None, endpoints: EndpointsObserved | None) -> list[str]:
    serving = sorted(_serving(endpoints))
    where = f"on {', '.join(serving)}" if serving else "nowhere"
    policy = traffic_policy(observed.external_traffic_policy if observed is not None else None)
    if observed is not None and policy is TrafficPolicy.LOCAL:
        return [f"externalTrafficPolicy is Local: only nodes with a serving endpoint may announce it;"
                f" its serving endpoints are {where}."]
    if not serving:
        return ["It has no serving endpoints: in layer 2 mode no node announces it until one serves."]
    return [f"Its serving endpoints are {where} (externalTrafficPolicy Cluster: any eligible node may announce it)."]


def _observed_lines(key: str, observed: ServiceObserved | None) -> list[str]:
    if observed is None:
        return [f"The watcher has not published a Service {key}: it does not exist, or the watcher does not"
                " see it."]
    lines = []
    if observed.service_type != "LoadBalancer":
        lines.append(f"It is of type {observed.service_type}, not LoadBalancer: metalbus gives it no IP.")
    if observed.load_balancer_class:
        lines.append(f"It asks for loadBalancerClass {observed.load_balancer_class!r}: only an ipam serving"
                     " that class handles it.")
    requests = dict(observed.annotations)
    if observed.load_balancer_ip:
        requests["spec.loadBalancerIP"] = observed.load_balancer_ip
    if requests:
        lines.append("It asks for: " + ", ".join(f"{k}={v}" for k, v in sorted(requests.items())) + ".")
    return lines


def _decision_lines(view: ClusterView, key: str, now: datetime) -> tuple[list[str], tuple[str, ...]]:
    decision = view.decisions.get(key)
    if decision is None:
        return ["ipam has made no decision about it yet (is ipam running? is it a LoadBalancer?)."], ()
    event, at = decision
    if isinstance(event, IPAllocated):
        lines = [f"It holds {', '.join(event.ips)} from pool {event.pool}, decided {_when(at, now)}.",
                 f"Why: {event.reason}."]
        if event.sharing_key:
            lines.append(f"It shares its IP with Services of sharing key {event.sharing_key!r}"
                         " (metallb.io/allow-shared-ip).")
        if event.deprecated_annotations:
            lines.append(f"It uses deprecated annotations: {', '.join(event.deprecated_annotations)}.")
        return lines, event.ips
    if isinstance(event, AllocationFailed):
        return [f"It has no IP: allocation failed {_when(at, now)}.",
                f"Why: {event.message} (reason {event.reason.value})."], ()
    assert isinstance(event, IPReleased)
    detail = f": {event.message}" if event.message else ""
    return [f"It has no IP: {', '.join(event.ips) or 'its IPs'} released {_when(at, now)}"
            f" ({event.reason.value}){detail}."], ()


def _announcement_lines(view: ClusterView, ip: str, now: datetime) -> list[str]:
    lines: list[str] = []
    placement = view.placements.get(ip)
    if placement is not None:
        why = f": {placement.event.reason}" if placement.event.reason else ""
        where = f" on {', '.join(placement.event.interfaces)}" if placement.event.interfaces else ""
        lines.append(f"{ip}: layer 2 — ipam placed it on {placement.event.node}{where} "
                     f"(epoch {placement.at.sequence}, {since(placement.at, now)} ago){why}.")
    elif ip in view.cleared:
        cleared, at = view.cleared[ip]
        why = f": {cleared.reason}" if cleared.reason else ""
        lines.append(f"{ip}: no node is placed to answer for it ({_when(at, now)}){why}.")
    reports = view.announcing(ip)
    for report in reports:
        event = report.event
        if event.mode.value == "layer2":
            how = f"answers {'NDP' if ':' in ip else 'ARP'} on {', '.join(event.interfaces) or 'no interface'}"
            epoch = f", acting on epoch {event.placement_epoch}" if event.placement_epoch else ""
        else:
            how = f"advertises it over BGP to {', '.join(event.peers) or 'no peer'}"
            epoch = ""
        lines.append(f"{ip}: {event.node} {how}{epoch}, since {since(report.at, now)} ago.")
    if placement is not None and not any(r.event.node == placement.event.node for r in reports):
        lines.append(f"{ip}: {placement.event.node} has not reported answering for it yet"
                     " (is its announcer running?).")
    if placement is None and not reports:
        lines.append(f"{ip}: no announcer reports announcing it (no matching L2Advertisement or"
                     " BGPAdvertisement, no eligible node, or no announcer running).")
    return lines


def _per_node_lines(
    view: ClusterView, key: str, observed: ServiceObserved | None, endpoints: EndpointsObserved | None,
    nodes: Sequence[NodeFacts],
) -> list[str]:
    """Per IP, why each node announces it or not, in layer 2 and over BGP (from the configuration in force)."""
    allocated = view.allocation(key)
    if allocated is None or observed is None:
        return []
    in_force = InForce.of(_parsed(view.in_force.objects or ()))
    scope = ServiceScope(pool=allocated[0].pool, labels=observed.labels,
                         policy=traffic_policy(observed.external_traffic_policy), serving=_serving(endpoints))
    lines = [f"Nodes known: {len(nodes)}."]
    for ip in allocated[0].ips:
        placement = view.placements.get(ip)
        lines += l2_lines(ip, scope, in_force, nodes, placement.event if placement is not None else None,
                          view.dataplanes)
        bgp = view.bgp.get(ip)
        lines += bgp_lines(ip, in_force, nodes, bgp[0] if bgp is not None else None)
    return lines


def _parsed(raws: Sequence[dict[str, object]]) -> list[ConfigObject]:
    objects = []
    for raw in raws:
        try:
            objects.append(parse_config_object(raw))
        except InvalidConfigObject:
            continue  # never in force: an invalid configuration is never put in force
    return objects


def explain_lines(
    view: ClusterView, key: str, observed: ServiceObserved | None, *, now: datetime,
    endpoints: EndpointsObserved | None = None, nodes: Sequence[NodeFacts] = (),
) -> list[str]:
    """Sentences about Service ``key`` (``namespace/name``); ``nodes``: every Node known."""
    lines = [f"Service {key}"]
    lines += _observed_lines(key, observed)
    if observed is not None and observed.service_type == "LoadBalancer":
        lines += _endpoint_lines(observed, endpoints)
    decided, ips = _decision_lines(view, key, now)
    lines += decided
    for ip in ips:
        lines += _announcement_lines(view, ip, now)
    lines += _per_node_lines(view, key, observed, endpoints, nodes)
    if view.configuration is not None and not view.configuration.valid:
        lines.append("The configuration is INVALID; the last valid one stays in force: "
                     + "; ".join(p.message for p in view.configuration.problems))
    return lines


async def observed_service(
    bus: Bus, namespace: str, name: str
) -> tuple[ServiceObserved | None, EndpointsObserved | None]:
    """The Service and its endpoints as the watcher last published them."""
    found: list[object] = []
    for kind in (ObjectKind.SERVICE, ObjectKind.ENDPOINTS):
        received = await bus.last_value(StreamName.K8S, k8s_subject(kind, namespace, name))
        found.append(received.event if received is not None else None)
    service, endpoints = found
    return (service if isinstance(service, ServiceObserved) else None,
            endpoints if isinstance(endpoints, EndpointsObserved) else None)


async def observed_nodes(bus: Bus) -> list[NodeFacts]:
    """Every Node as the watcher last published it, by name."""
    found: dict[str, NodeFacts] = {}

    def fold(received: Received) -> None:
        if isinstance(received.event, NodeObserved):
            found[received.event.ref.name] = node_facts(received.event)

    await bus.replay(StreamName.K8S, fold, subjects=[k8s_kind_filter(ObjectKind.NODE)], last_per_subject=True)
    return [found[name] for name in sorted(found)]


async def show_explain(
    nats_url: str, target: str, *, console: Console | None = None, ca_file: str | None = None
) -> int:
    console = console or Console()
    namespace, _, name = target.rpartition("/")
    namespace = namespace or "default"
    bus = await connect_operator(nats_url, ca_file=ca_file, command="explain")
    async with bus:
        view = await read_view(bus)
        observed, endpoints = await observed_service(bus, namespace, name)
        nodes = await observed_nodes(bus)
    lines = explain_lines(view, f"{namespace}/{name}", observed, now=datetime.now(UTC), endpoints=endpoints,
                          nodes=nodes)
    for line in lines:
        console.print(escape(line))
    return 0
