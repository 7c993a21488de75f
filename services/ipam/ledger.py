"""The ipam's own history folded into its current state: ``apply(ledger, event, sequence)``.

The ``IPAM`` stream is the single source of truth. A replica rebuilds this ledger by replaying it,
then keeps folding every decision it (or a former active replica) appended. Every field is decided by
the newest event of one subject (a Service's allocation subject, an IP's placement and BGP subjects, a pool's
usage subject, the configuration subject and its parts), so folding only the last message per subject, in stream
order, gives the same ledger as the whole history. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch
from typing import TypeVar

from schemas.events import (
    AllocationFailed,
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    ConfigurationEvaluated,
    ConfigurationPart,
    Event,
    IPAllocated,
    IPReleased,
    L2PlacementCleared,
    L2PlacementDecided,
    PoolUsageReported,
    ServiceId,
)
from schemas.events.in_force import InForceParts
from services.common.compact import Compactor
from services.ipam.core import ServiceKey, service_key

#: The decisions kept per IP, each naming the Services behind it.
PerIPDecision = TypeVar("PerIPDecision", L2PlacementDecided, BGPAdvertisementDecided)


@dataclass(frozen=True, slots=True)
class Placement:
    decision: L2PlacementDecided
    epoch: int


@dataclass(slots=True)
class Ledger:
    """What the IPAM stream says now. ``last_sequence`` is the fence for the next append."""

    last_sequence: int = 0
    allocations: dict[ServiceKey, IPAllocated] = field(default_factory=dict)
    failures: dict[ServiceKey, AllocationFailed] = field(default_factory=dict)
    placements: dict[str, Placement] = field(default_factory=dict)
    #: How many placed IPs each node holds (nodes holding none are not here): kept as placements are
    #: folded, so that neither the metrics nor a death count them over every IP.
    placed_per_node: dict[str, int] = field(default_factory=dict)
    #: What is advertised over BGP per IP (a withdrawn IP is not here).
    bgp: dict[str, BGPAdvertisementDecided] = field(default_factory=dict)
    usage: dict[str, PoolUsageReported] = field(default_factory=dict)
    configuration: ConfigurationEvaluated | None = None
    #: The raw objects of the configuration in force, from its parts.
    in_force: InForceParts = field(default_factory=InForceParts)
    #: Decisions are kept compact (repeated values shared): one per Service and one per IP.
    compact: Compactor = field(default_factory=Compactor)

    def allocation_of(self, key: ServiceKey) -> IPAllocated | None:
        return self.allocations.get(key)


def apply(ledger: Ledger, event: Event, sequence: int) -> Ledger:
    """Fold one IPAM event in (mutates and returns ``ledger``)."""
    _apply(event, ledger, sequence)
    ledger.last_sequence = max(ledger.last_sequence, sequence)
    return ledger


@singledispatch
def _apply(event: Event, ledger: Ledger, sequence: int) -> None:
    """Events the ledger does not track change nothing but the sequence."""


@_apply.register
def _(event: IPAllocated, ledger: Ledger, sequence: int) -> None:
    key = service_key(event.service.namespace, event.service.name)
    ledger.allocations[key] = ledger.compact(event)
    ledger.failures.pop(key, None)


@_apply.register
def _(event: IPReleased, ledger: Ledger, sequence: int) -> None:
    key = service_key(event.service.namespace, event.service.name)
    ledger.allocations.pop(key, None)
    ledger.failures.pop(key, None)


@_apply.register
def _(event: AllocationFailed, ledger: Ledger, sequence: int) -> None:
    key = service_key(event.service.namespace, event.service.name)
    ledger.failures[key] = event
    ledger.allocations.pop(key, None)


@_apply.register
def _(event: L2PlacementDecided, ledger: Ledger, sequence: int) -> None:
    _unplace(ledger, ledger.placements.get(event.ip))
    ledger.placements[event.ip] = Placement(ledger.compact(_ids_shared(event, ledger)), sequence)
    node = event.node
    ledger.placed_per_node[node] = ledger.placed_per_node.get(node, 0) + 1


@_apply.register
def _(event: L2PlacementCleared, ledger: Ledger, sequence: int) -> None:
    _unplace(ledger, ledger.placements.pop(event.ip, None))


def _ids_shared(event: PerIPDecision, ledger: Ledger) -> PerIPDecision:
    """``event`` (changed in place) naming each Service by the same object as the Service's allocation does,
    when equal: one per Service kept rather than two (about 260 bytes each)."""
    shared = tuple(_allocation_id(ledger, service) for service in event.services)
    if any(mine is not theirs for mine, theirs in zip(shared, event.services, strict=True)):
        event.__dict__["services"] = shared  # frozen: equal values, as the compactor does
    return event


def _allocation_id(ledger: Ledger, service: ServiceId) -> ServiceId:
    allocation = ledger.allocations.get(service_key(service.namespace, service.name))
    if (
        allocation is not None
        and allocation.service == service
        and allocation.service.__pydantic_fields_set__ == service.__pydantic_fields_set__
    ):
        return allocation.service
    return service


def _unplace(ledger: Ledger, placement: Placement | None) -> None:
    """Count a placement replaced or cleared off its node."""
    if placement is None:
        return
    node = placement.decision.node
    left = ledger.placed_per_node[node] - 1
    if left:
        ledger.placed_per_node[node] = left
    else:
        del ledger.placed_per_node[node]


@_apply.register
def _(event: BGPAdvertisementDecided, ledger: Ledger, sequence: int) -> None:
    ledger.bgp[event.ip] = ledger.compact(_ids_shared(event, ledger))


@_apply.register
def _(event: BGPAdvertisementWithdrawn, ledger: Ledger, sequence: int) -> None:
    ledger.bgp.pop(event.ip, None)


@_apply.register
def _(event: PoolUsageReported, ledger: Ledger, sequence: int) -> None:
    ledger.usage[event.pool] = event


@_apply.register
def _(event: ConfigurationPart, ledger: Ledger, sequence: int) -> None:
    ledger.in_force.add(event)


@_apply.register
def _(event: ConfigurationEvaluated, ledger: Ledger, sequence: int) -> None:
    ledger.configuration = event
    ledger.in_force.settle(event)
