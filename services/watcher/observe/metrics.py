"""Prometheus metrics of the watcher's observe side and its leader election."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

EVENTS_PUBLISHED = Counter(
    "metalbus_watcher_events_published_total",
    "Observed-state events appended to the K8S stream (tombstones included)",
    ["kind"],
)
RELISTS = Counter(
    "metalbus_watcher_relists_total",
    "Full lists of a resource, by why they happened (initial, expired, error, absent)",
    ["kind", "reason"],
)
WATCH_RESTARTS = Counter(
    "metalbus_watcher_watch_restarts_total",
    "Watches started again from the last resourceVersion, by why the previous one ended",
    ["kind", "reason"],
)
UNTRANSLATABLE = Counter(
    "metalbus_watcher_untranslatable_objects_total",
    "Objects skipped because they could not be read (no identity, or values the events refuse)",
    ["kind"],
)
OVERSIZED = Counter(
    "metalbus_watcher_oversized_objects_total",
    "Object versions skipped because their event is larger than the bus takes (max_payload)",
    ["kind"],
)
LEADER = Gauge("metalbus_watcher_leader", "1 while this replica holds the watcher Lease")
