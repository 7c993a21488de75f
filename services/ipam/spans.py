"""Span attributes of an ipam decision: which Services, IPs, pools and nodes it is about.

Pure (schemas in, a plain mapping out), so the shell sets them on the ``decide`` span without knowing the
events. Each attribute is one string; several values are joined with commas, in the order decided.
"""

from __future__ import annotations

from collections.abc import Iterable

from schemas.events import (
    AllocationFailed,
    EndpointsObserved,
    Event,
    IPAllocated,
    IPReleased,
    L2PlacementCleared,
    L2PlacementDecided,
    ServiceId,
    ServiceObserved,
)

SERVICE = "metalbus.service"
IP = "metalbus.ip"
POOL = "metalbus.pool"
NODE = "metalbus.node"
DECISIONS = "metalbus.decisions"


def decision_attributes(observed: Event, decided: Iterable[Event]) -> dict[str, str | int]:
    """What a decision about ``observed`` touched: ``metalbus.service`` (namespace/name), ``metalbus.ip``,
    ``metalbus.pool``, ``metalbus.node`` (L2 placements), and ``metalbus.decisions`` (how many events)."""
    values: dict[str, dict[str, None]] = {SERVICE: {}, IP: {}, POOL: {}, NODE: {}}
    if isinstance(observed, ServiceObserved):
        values[SERVICE][f"{observed.ref.namespace}/{observed.ref.name}"] = None
    elif isinstance(observed, EndpointsObserved):
        values[SERVICE][f"{observed.namespace}/{observed.service}"] = None
    count = 0
    for event in decided:
        count += 1
        if isinstance(event, IPAllocated | IPReleased | AllocationFailed):
            _services(values, (event.service,))
        if isinstance(event, IPAllocated | IPReleased):
            values[IP].update(dict.fromkeys(event.ips))
        if isinstance(event, IPAllocated):
            values[POOL][event.pool] = None
        if isinstance(event, L2PlacementDecided):
            _services(values, event.services)
            values[NODE][event.node] = None
        if isinstance(event, L2PlacementDecided | L2PlacementCleared):
            values[IP][event.ip] = None
    attributes: dict[str, str | int] = {name: ",".join(found) for name, found in values.items() if found}
    attributes[DECISIONS] = count
    return attributes


def _services(values: dict[str, dict[str, None]], services: Iterable[ServiceId]) -> None:
    for service in services:
        values[SERVICE][f"{service.namespace}/{service.name}"] = None
