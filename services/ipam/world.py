"""The observed world as ipam sees it: the ``K8S`` stream folded into current objects.

``apply`` returns what the change touches, so the decider reconsiders only what it must:
a Service change → that Service; a Namespace's labels → the Services in it; configuration → all;
endpoints and nodes → the L2 placement (of that Service, of every group).
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas.events import (
    DECISION_KINDS,
    ConfigObjectObserved,
    EndpointsObserved,
    Event,
    KindListed,
    NamespaceObserved,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    SecretObserved,
    ServiceObserved,
)
from schemas.events.observed import CONFIG_KINDS
from services.common.compact import Compactor
from services.ipam.core import ServiceKey, service_key

ConfigKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True, slots=True)
class Touched:
    services: frozenset[ServiceKey] = frozenset()
    configuration: bool = False
    #: Services whose L2 placement inputs changed (the Service itself, or its endpoints).
    placed_services: frozenset[ServiceKey] = frozenset()
    #: Nodes whose labels or conditions may have changed (or that went).
    nodes: frozenset[str] = frozenset()
    #: A list mark changed: whether the world is complete may have changed.
    listing: bool = False
    #: Services among ``services`` whose observation only shows more than before (``shows_more_only``): the
    #: status writer's own write, observed again.
    shows_more: frozenset[ServiceKey] = frozenset()


NOTHING = Touched()
LISTING = Touched(listing=True)


@dataclass(slots=True)
class World:
    services: dict[ServiceKey, ServiceObserved] = field(default_factory=dict)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)
    config: dict[ConfigKey, ConfigObjectObserved] = field(default_factory=dict)
    endpoints: dict[ServiceKey, EndpointsObserved] = field(default_factory=dict)
    nodes: dict[str, NodeObserved] = field(default_factory=dict)
    #: The watcher's list marks by kind (``KindListed``): how complete the stream says it is.
    listed: dict[ObjectKind, KindListed] = field(default_factory=dict)
    #: Services per namespace, to find who a namespace label change concerns.
    by_namespace: dict[str, set[ServiceKey]] = field(default_factory=dict)
    #: What is kept is kept compact (repeated values shared): a Service and its endpoints are most of it.
    compact: Compactor = field(default_factory=Compactor)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return self.namespaces.get(namespace, {})

    def apply(self, event: Event) -> Touched:
        """Fold one observed event in and say what it touches."""
        if isinstance(event, ServiceObserved):
            key = service_key(event.ref.namespace, event.ref.name)
            before = self.services.get(key)
            self.services[key] = self.compact(event, like=before)
            self.by_namespace.setdefault(event.ref.namespace, set()).add(key)
            if before is not None and shows_more_only(before, event):
                return Touched(services=frozenset({key}), shows_more=frozenset({key}))
            return Touched(services=frozenset({key}), placed_services=frozenset({key}))
        if isinstance(event, EndpointsObserved):
            key = service_key(event.namespace, event.service)
            self.endpoints[key] = self.compact(event)
            return Touched(placed_services=frozenset({key}))
        if isinstance(event, NamespaceObserved):
            self.namespaces[event.ref.name] = dict(event.labels)
            return Touched(services=frozenset(self.by_namespace.get(event.ref.name, ())))
        if isinstance(event, NodeObserved):
            self.nodes[event.ref.name] = event
            return Touched(nodes=frozenset({event.ref.name}))
        if isinstance(event, ConfigObjectObserved):
            self.config[(event.kind, event.ref.namespace, event.ref.name)] = event
            return Touched(configuration=True)
        if isinstance(event, ObjectDeleted):
            return self._delete(event)
        if isinstance(event, KindListed):
            self.listed[event.kind] = event
            return LISTING
        if isinstance(event, SecretObserved):
            return NOTHING
        return NOTHING

    def _delete(self, event: ObjectDeleted) -> Touched:
        if event.kind is ObjectKind.SERVICE:
            key = service_key(event.namespace, event.name)
            self.services.pop(key, None)
            self.by_namespace.get(event.namespace, set()).discard(key)
            return Touched(services=frozenset({key}), placed_services=frozenset({key}))
        if event.kind is ObjectKind.ENDPOINTS:
            key = service_key(event.namespace, event.name)
            self.endpoints.pop(key, None)
            return Touched(placed_services=frozenset({key}))
        if event.kind is ObjectKind.NAMESPACE:
            self.namespaces.pop(event.name, None)
            return Touched(services=frozenset(self.by_namespace.get(event.name, ())))
        if event.kind is ObjectKind.NODE:
            self.nodes.pop(event.name, None)
            return Touched(nodes=frozenset({event.name}))
        kind = next((name for name, value in CONFIG_KINDS.items() if value is event.kind), None)
        if kind is not None:
            self.config.pop((kind, event.namespace, event.name), None)
            return Touched(configuration=True)
        return NOTHING


def shows_more_only(before: ServiceObserved, now: ServiceObserved) -> bool:
    """Whether ``now`` differs from ``before`` at most in its status's addresses and its resourceVersion: what
    the status writer's own write of a Service changes. No L2 placement or BGP decision reads those (the
    allocation does: the Service is still decided again), so its placement need not be looked at again — a
    cold start writes 50 000 statuses, each observed again by both replicas."""
    return before.ref.uid == now.ref.uid and before == now.model_copy(
        update={"ref": before.ref, "ingress_ips": before.ingress_ips})


def incomplete(world: World, *, decided_before: bool) -> str | None:
    """Why deciding on ``world`` now could take back what it merely lacks, or None when it may be decided on.

    Once the stream carries any list mark, every kind ipam decides from (``DECISION_KINDS``) must be marked
    complete: a mark not complete, or none at all for a kind, is a list under way (after a new stream, a purge
    or a restore). A stream with no mark at all was written by a watcher that predates them (v0.1.0): it is
    decided on as that release did — unless it holds nothing while the decisions (``decided_before``) hold
    allocations or a configuration: the stream was lost, and its watcher has not begun to list it again."""
    if world.listed:
        missing = sorted(kind.value for kind in DECISION_KINDS
                         if (mark := world.listed.get(kind)) is None or not mark.complete)
        if missing:
            return f"K8S does not hold the complete lists of {', '.join(missing)} yet (the watcher is listing them)"
        return None
    if decided_before and not world.services and not world.config:
        return "K8S holds no observation while the decisions do: the stream was lost; waiting for the watcher's lists"
    return None
