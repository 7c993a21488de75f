"""What Kubernetes should show, folded from the IPAM, ANNOUNCE and K8S (kube-proxy) streams. No I/O.

:func:`apply` folds one event into :class:`StatusState` and answers with a :class:`Change`: the objects
whose desired state moved (to be written) and the Kubernetes Events to record. :func:`target` gives
the desired state of one object as it is *now*, so a writer that falls behind writes only the newest.

Facts taken from MetalLB so its users see the same things:
- ``status.loadBalancer.ingress`` lists exactly the allocated IPs (we add ``ipMode: VIP``), and the
  ``metallb.io/ip-allocated-from-pool`` annotation names the pool; the deprecated
  ``metallb.universe.tf/ip-allocated-from-pool`` is removed. A released or failed allocation leaves no
  address at all, whoever wrote it (MetalLB's ``clearServiceState``): the status of a Service metalbus
  serves is metalbus's. Only a Service handed to another controller (its ``loadBalancerClass``) keeps
  what is not ours.
- Event reasons and messages: ``IPAllocated`` "Assigned IP [...]", ``AllocationFailed``
  "Failed to allocate IP for "ns/name": ...", ``nodeAssigned`` "announcing from node "n" with protocol
  "layer2"", ``deprecatedAnnotation`` "Service uses deprecated annotation ...", ``ClearAssignment``.
- ServiceL2Status / ServiceBGPStatus: one per (node, Service) in the speaker namespace, labelled
  ``metallb.io/node``, ``metallb.io/service-name``, ``metallb.io/service-namespace``.
- ConfigurationState ``status.result`` is Valid / Invalid / Unknown, ``errorSummary`` the problems.
Unlike MetalLB, the user's deprecated annotations are reported, never deleted from the Service.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from schemas.events import (
    AllocationFailed,
    AnnouncementMode,
    AnnouncementReported,
    ConfigurationEvaluated,
    Event,
    IPAllocated,
    IPReleased,
    KubeProxyObserved,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
    PoolUsageReported,
    ReleaseReason,
    ServiceId,
)
from services.common.compact import Compactor, add_member, discard_member
from services.watcher.status.configstate import (
    CONFIG_STATE_NAME,
    ConfigStateTarget,
    config_state_target,
    strict_arp_message,
    strict_arp_missing,
)

LABEL_NODE = "metallb.io/node"
LABEL_SERVICE_NAME = "metallb.io/service-name"
LABEL_SERVICE_NAMESPACE = "metallb.io/service-namespace"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "metalbus"
#: Kubernetes stores the pool counters as int64; an IPv6 pool can hold more.
INT64_MAX = 2**63 - 1

class TargetKind(StrEnum):
    SERVICE = "Service"
    POOL = "IPAddressPool"
    L2_STATUS = "ServiceL2Status"
    BGP_STATUS = "ServiceBGPStatus"
    CONFIG_STATE = "ConfigurationState"


@dataclass(frozen=True, slots=True, order=True)
class ObjectKey:
    kind: TargetKind
    namespace: str
    name: str


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Reason(StrEnum):
    IP_ALLOCATED = "IPAllocated"
    ALLOCATION_FAILED = "AllocationFailed"
    CLEAR_ASSIGNMENT = "ClearAssignment"
    NODE_ASSIGNED = "nodeAssigned"
    DEPRECATED_ANNOTATION = "deprecatedAnnotation"
    STRICT_ARP_REQUIRED = "StrictARPRequired"


@dataclass(frozen=True, slots=True)
class KubeEvent:
    """A Kubernetes Event to record about ``regarding`` (uid empty when unknown)."""

    regarding: ObjectKey
    uid: str
    type: EventType
    reason: Reason
    message: str


# --- desired objects ---------------------------------------------------------------------------


class Claim(StrEnum):
    """What metalbus has to say about a Service's status."""

    SERVED = "served"
    """metalbus serves the Service: its status shows exactly ``ips`` (none while it holds none), and is
    put back whenever anyone else changes it."""
    LEFT = "left"
    """No LoadBalancer any more: its addresses are cleared once, then the Service is forgotten."""
    HANDED_OVER = "handed_over"
    """Its ``loadBalancerClass`` names another controller: only the addresses metalbus gave (``strip``)
    are taken out, once; the rest of the status is that controller's."""


@dataclass(frozen=True, slots=True)
class ServiceTarget:
    """Allocated: ``ips`` and ``pool`` set. Cleared: both empty (``claim`` says how far)."""

    namespace: str
    name: str
    uid: str
    ips: tuple[str, ...] = ()
    pool: str | None = None
    claim: Claim = Claim.SERVED
    strip: tuple[str, ...] = ()
    #: The allocation's sharing key (``metallb.io/allow-shared-ip``): Services with the same one may show one
    #: address; two without may not, whatever their decisions say while one of them is on its way.
    sharing_key: str | None = None

    @property
    def forgotten_once_shown(self) -> bool:
        """Whether nothing needs remembering once Kubernetes shows it."""
        return self.claim is not Claim.SERVED


@dataclass(frozen=True, slots=True)
class PoolTarget:
    name: str
    assigned_ipv4: int
    assigned_ipv6: int
    available_ipv4: int
    available_ipv6: int


@dataclass(frozen=True, slots=True)
class AnnouncementStatusTarget:
    """A ServiceL2Status (``interfaces``) or ServiceBGPStatus (``peers``) object."""

    key: ObjectKey
    node: str
    service_namespace: str
    service_name: str
    interfaces: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Absent:
    """The object should not exist (deleted if it does)."""

    key: ObjectKey


Target = ServiceTarget | PoolTarget | AnnouncementStatusTarget | ConfigStateTarget | Absent


def target_kind(target: Target) -> TargetKind:
    if isinstance(target, ServiceTarget):
        return TargetKind.SERVICE
    if isinstance(target, PoolTarget):
        return TargetKind.POOL
    if isinstance(target, ConfigStateTarget):
        return TargetKind.CONFIG_STATE
    return target.key.kind


# --- state --------------------------------------------------------------------------------------

NodeIp = tuple[str, str]


class Reported(NamedTuple):
    """What is kept of one node's report on one IP (its event, kept whole, was ~730 bytes: ~35 MB for the
    62 500 reports of 50 000 Services)."""

    #: the Services announced, (namespace, name)
    services: tuple[tuple[str, str], ...]
    interfaces: tuple[str, ...]
    peers: tuple[str, ...]
    placement_epoch: int


@dataclass
class StatusState:
    """The fold of every event seen so far; ``namespace`` is where metalbus keeps its status objects."""

    namespace: str
    services: dict[tuple[str, str], ServiceTarget] = field(default_factory=dict)
    #: every node's reports (names interned, ``compact``): with BGP, a report per node per IP
    announcements: dict[tuple[str, str, AnnouncementMode], Reported] = field(default_factory=dict)
    #: status object key → the (node, ip) announcements it summarises (small sets kept as tuples: ``add_member``)
    by_status: dict[ObjectKey, tuple[NodeIp, ...]] = field(default_factory=dict)
    pools: dict[str, PoolTarget] = field(default_factory=dict)
    config: ConfigurationEvaluated | None = None
    kube_proxy: KubeProxyObserved | None = None
    #: subject → the last stream sequence folded (a redelivered or older message changes nothing)
    applied: dict[str, int] = field(default_factory=dict)
    compact: Compactor = field(default_factory=Compactor)

    def object_keys(self) -> list[ObjectKey]:
        """Every object this state has an opinion about."""
        out = [service_key(ns, name) for ns, name in self.services]
        out += list(self.by_status)
        out += [pool_key(self.namespace, name) for name in self.pools]
        if self.config is not None or self.kube_proxy is not None:
            out.append(config_state_key(self.namespace))
        return sorted(out)


@dataclass(frozen=True, slots=True)
class Change:
    keys: frozenset[ObjectKey] = frozenset()
    events: tuple[KubeEvent, ...] = ()


NO_CHANGE = Change()


def service_key(namespace: str, name: str) -> ObjectKey:
    return ObjectKey(TargetKind.SERVICE, namespace, name)


def pool_key(namespace: str, name: str) -> ObjectKey:
    return ObjectKey(TargetKind.POOL, namespace, name)


def config_state_key(namespace: str) -> ObjectKey:
    return ObjectKey(TargetKind.CONFIG_STATE, namespace, CONFIG_STATE_NAME)


def status_object_name(mode: AnnouncementMode, node: str, namespace: str, name: str) -> str:
    """A stable, valid object name per (mode, node, Service): readable prefix plus a digest."""
    prefix = "l2" if mode is AnnouncementMode.L2 else "bgp"
    digest = hashlib.sha256(f"{mode}/{node}/{namespace}/{name}".encode()).hexdigest()[:10]
    readable = f"{prefix}-{namespace}-{name}-{node}".lower()[:200].rstrip("-.")
    return f"{readable}-{digest}"


def go_quoted_list(items: tuple[str, ...]) -> str:
    """How Go's ``%q`` prints a slice of strings: ``["a" "b"]``."""
    return "[" + " ".join(f'"{item}"' for item in items) + "]"


# --- the fold -----------------------------------------------------------------------------------


def apply(state: StatusState, event: Event, *, subject: str, sequence: int) -> Change:
    """Fold one event (read from ``subject`` at ``sequence``) into ``state``."""
    if sequence and state.applied.get(subject, 0) >= sequence:
        return NO_CHANGE
    if sequence:
        state.applied[subject] = sequence
    if isinstance(event, IPAllocated | IPReleased | AllocationFailed):
        state.compact(event)  # what is kept of it (names, uid, addresses, pool) shared with what else holds them
    if isinstance(event, IPAllocated):
        return _allocated(state, event)
    if isinstance(event, IPReleased):
        return _released(state, event)
    if isinstance(event, AllocationFailed):
        return _failed(state, event)
    if isinstance(event, AnnouncementReported):
        return _announced(state, event)
    if isinstance(event, PoolUsageReported):
        return _pool_usage(state, event)
    if isinstance(event, ConfigurationEvaluated):
        state.config = event
        return Change(keys=frozenset({config_state_key(state.namespace)}))
    if isinstance(event, KubeProxyObserved):
        return _kube_proxy(state, event)
    if isinstance(event, ObjectDeleted) and event.kind is ObjectKind.KUBE_PROXY:
        # no ConfigMap: kube-proxy runs on its defaults (iptables), where layer2 is safe
        ref = ObjectRef(namespace=event.namespace, name=event.name, uid=event.uid or "deleted", resource_version="0")
        return _kube_proxy(state, KubeProxyObserved(ref=ref, mode="", strict_arp=False))
    return NO_CHANGE


def _service_event(service: ServiceId, kind: EventType, reason: Reason, message: str) -> KubeEvent:
    return KubeEvent(service_key(service.namespace, service.name), service.uid, kind, reason, message)


def _allocated(state: StatusState, event: IPAllocated) -> Change:
    service = event.service
    ident = (service.namespace, service.name)
    before = state.services.get(ident)
    uid = service.uid or (before.uid if before else "")
    state.services[ident] = ServiceTarget(service.namespace, service.name, uid, event.ips, event.pool,
                                          sharing_key=event.sharing_key)
    key = service_key(*ident)
    if before is not None and before.ips == event.ips and before.pool == event.pool:
        return Change(keys=frozenset({key}))  # re-adopted: nothing new to tell
    service = ServiceId(namespace=service.namespace, name=service.name, uid=uid)
    events = [_service_event(service, EventType.NORMAL, Reason.IP_ALLOCATED,
                             f"Assigned IP {go_quoted_list(event.ips)}")]
    events += [
        _service_event(service, EventType.WARNING, Reason.DEPRECATED_ANNOTATION,
                       f"Service uses deprecated annotation {annotation}")
        for annotation in sorted(event.deprecated_annotations)
    ]
    return Change(keys=frozenset({key}), events=tuple(events))


#: How a release leaves the Service's status (any other reason: still served, holding nothing).
_RELEASE_CLAIMS = {ReleaseReason.NOT_LOAD_BALANCER: Claim.LEFT, ReleaseReason.CLASS_CHANGED: Claim.HANDED_OVER}


def _cleared(state: StatusState, service: ServiceId, released: tuple[str, ...],
             claim: Claim = Claim.SERVED) -> tuple[ObjectKey, str]:
    ident = (service.namespace, service.name)
    before = state.services.get(ident)
    uid = service.uid or (before.uid if before else "")
    known = (*before.ips, *before.strip) if before else ()
    strip = tuple(dict.fromkeys((*known, *released))) if claim is Claim.HANDED_OVER else ()
    state.services[ident] = ServiceTarget(service.namespace, service.name, uid, claim=claim, strip=strip)
    return service_key(*ident), uid


def _released(state: StatusState, event: IPReleased) -> Change:
    service = event.service
    if event.reason is ReleaseReason.SERVICE_DELETED:
        state.services.pop((service.namespace, service.name), None)
        return NO_CHANGE  # nothing left to write on, nobody to tell
    key, uid = _cleared(state, service, event.ips, _RELEASE_CLAIMS.get(event.reason, Claim.SERVED))
    if not event.ips:
        return Change(keys=frozenset({key}))  # it held nothing (a failure before): nothing to tell
    detail = f": {event.message}" if event.message else ""
    message = (f"Released IP {go_quoted_list(event.ips)} of \"{service.namespace}/{service.name}\" "
               f"({event.reason.value}){detail}")
    return Change(keys=frozenset({key}), events=(
        KubeEvent(key, uid, EventType.NORMAL, Reason.CLEAR_ASSIGNMENT, message),))


def _failed(state: StatusState, event: AllocationFailed) -> Change:
    service = event.service
    key, uid = _cleared(state, service, ())
    message = f"Failed to allocate IP for \"{service.namespace}/{service.name}\": {event.message}"
    return Change(keys=frozenset({key}), events=(
        KubeEvent(key, uid, EventType.WARNING, Reason.ALLOCATION_FAILED, message),))


def _announced(state: StatusState, event: AnnouncementReported) -> Change:
    """One (node, IP) report; a Service gets ``nodeAssigned`` when the node starts announcing it at all."""
    where = (event.node, event.ip, event.mode)
    kind = TargetKind.L2_STATUS if event.mode is AnnouncementMode.L2 else TargetKind.BGP_STATUS

    def key_of(namespace: str, name: str) -> ObjectKey:
        return ObjectKey(kind, state.namespace, status_object_name(event.mode, event.node, namespace, name))

    announced = {service: key_of(service.namespace, service.name) for service in event.services}
    shown_before = {service: key in state.by_status for service, key in announced.items()}
    before = state.announcements.pop(where, None)
    keys: set[ObjectKey] = set()
    for previous in before.services if before else ():
        key = key_of(*previous)
        discard_member(state.by_status, key, (event.node, event.ip))
        keys.add(key)
    events: list[KubeEvent] = []
    if event.announcing:
        state.announcements[where] = Reported(
            state.compact.compacted(tuple((service.namespace, service.name) for service in event.services)),
            state.compact.compacted(event.interfaces), state.compact.compacted(event.peers), event.placement_epoch)
        for service, key in announced.items():
            add_member(state.by_status, key, (event.node, event.ip))
            keys.add(key)
            if not shown_before[service]:
                events.append(_service_event(
                    service, EventType.NORMAL, Reason.NODE_ASSIGNED,
                    f'announcing from node "{event.node}" with protocol "{event.mode.value}"'))
    return Change(keys=frozenset(keys), events=tuple(events))


def _pool_usage(state: StatusState, event: PoolUsageReported) -> Change:
    state.pools[event.pool] = PoolTarget(
        event.pool,
        assigned_ipv4=min(event.ipv4.assigned, INT64_MAX),
        assigned_ipv6=min(event.ipv6.assigned, INT64_MAX),
        available_ipv4=min(event.ipv4.available, INT64_MAX),
        available_ipv6=min(event.ipv6.available, INT64_MAX),
    )
    return Change(keys=frozenset({pool_key(state.namespace, event.pool)}))


def _kube_proxy(state: StatusState, event: KubeProxyObserved) -> Change:
    was_missing = state.kube_proxy is not None and strict_arp_missing(state.kube_proxy)
    state.kube_proxy = event
    key = config_state_key(state.namespace)
    events: tuple[KubeEvent, ...] = ()
    if strict_arp_missing(event) and not was_missing:
        events = (KubeEvent(key, "", EventType.WARNING, Reason.STRICT_ARP_REQUIRED, strict_arp_message()),)
    return Change(keys=frozenset({key}), events=events)


# --- desired state of one object ----------------------------------------------------------------


def target(state: StatusState, key: ObjectKey) -> Target | None:
    """The desired state of ``key`` now; None when this state has no opinion about it."""
    if key.kind is TargetKind.SERVICE:
        return state.services.get((key.namespace, key.name))
    if key.kind is TargetKind.POOL:
        return state.pools.get(key.name)
    if key.kind is TargetKind.CONFIG_STATE:
        return config_state_target(state.config, state.kube_proxy, name=key.name)
    return _announcement_target(state, key)


def _announcement_target(state: StatusState, key: ObjectKey) -> Target:
    where = state.by_status.get(key)
    mode = AnnouncementMode.L2 if key.kind is TargetKind.L2_STATUS else AnnouncementMode.BGP
    reports = [((node, ip), state.announcements[(node, ip, mode)]) for node, ip in sorted(where or ())
               if (node, ip, mode) in state.announcements]
    if not reports:
        state.by_status.pop(key, None)
        return Absent(key)
    (node, _), first = reports[0]
    namespace, name = next(service for service in first.services
                           if status_object_name(mode, node, *service) == key.name)
    interfaces = sorted({interface for _, report in reports for interface in report.interfaces})
    peers = sorted({peer for _, report in reports for peer in report.peers})
    return AnnouncementStatusTarget(key, node, namespace, name,
                                    interfaces=tuple(interfaces) if mode is AnnouncementMode.L2 else (),
                                    peers=tuple(peers) if mode is AnnouncementMode.BGP else ())
