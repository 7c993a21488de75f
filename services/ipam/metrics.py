"""Prometheus metrics of the ipam service (MetalLB's names where the meaning is the same)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram

from schemas.events import Event, PoolUsageReported

ADDRESSES_IN_USE = Gauge(
    "metallb_allocator_addresses_in_use_total", "Number of IP addresses in use, per pool", ["pool"]
)
ADDRESSES_TOTAL = Gauge("metallb_allocator_addresses_total", "Number of usable IP addresses, per pool", ["pool"])
ACTIVE = Gauge("metalbus_ipam_active", "1 while this replica is the one deciding")
WAITING_FOR_WORLD = Gauge(
    "metalbus_ipam_waiting_for_world",
    "1 while the active replica decides nothing because K8S does not hold the watcher's complete lists",
)
DECISIONS = Counter("metalbus_ipam_decisions_total", "Decisions appended to the IPAM stream", ["type"])
INVALID_INPUTS = Counter("metalbus_ipam_invalid_inputs_total", "Observed messages that failed validation")
DECISION_LATENCY = Histogram(
    "metalbus_ipam_decision_latency_seconds",
    "From an observed event stored to the decisions it caused appended",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

LIVE_ANNOUNCERS = Gauge("metalbus_ipam_live_announcers", "Announcers whose heartbeats this replica hears")
PLACEMENTS = Gauge("metalbus_ipam_placements", "L2 IPs placed on each node (as appended)", ["node"])
FAILOVER_SECONDS = Histogram(
    "metalbus_ipam_failover_seconds",
    "From an announcer's death noticed (silence or leaving) to its IPs' new placements appended",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
_reported: dict[str, int] = {}


def report_placements(placed_per_node: Mapping[str, int]) -> None:
    """Set the per-node placement gauge to the ledger's counts (``Ledger.placed_per_node``): only the nodes
    whose count changed are set, and nodes that hold nothing any more are removed."""
    for node in _reported.keys() - placed_per_node.keys():
        PLACEMENTS.remove(node)
    for node, count in placed_per_node.items():
        if _reported.get(node) != count:
            PLACEMENTS.labels(node=node).set(count)
    _reported.clear()
    _reported.update(placed_per_node)


def count_decisions(kinds: Mapping[type[Event], int]) -> None:
    """Count decisions appended, given how many of each type."""
    for kind, count in kinds.items():
        DECISIONS.labels(type=kind.__name__).inc(count)


def report_usage(event: PoolUsageReported) -> None:
    in_use = event.ipv4.assigned + event.ipv6.assigned
    ADDRESSES_IN_USE.labels(pool=event.pool).set(in_use)
    ADDRESSES_TOTAL.labels(pool=event.pool).set(in_use + event.ipv4.available + event.ipv6.available)
