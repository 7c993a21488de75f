"""Prometheus metrics of the status writer (process-wide, like every Prometheus collector)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WRITE_LAG = Histogram(
    "metalbus_watcher_status_write_lag_seconds",
    "From the decision (event time) to the Kubernetes object showing it",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
WRITES = Counter(
    "metalbus_watcher_status_writes_total",
    "Kubernetes write requests made by the status writer (create, patch, delete)",
    ["kind", "verb"],
)
READS = Counter(
    "metalbus_watcher_status_reads_total",
    "Objects read before a write; a Service only when the writer has not seen it yet or a write answered 409",
    ["kind"],
)
SKIPPED = Counter(
    "metalbus_watcher_status_writes_skipped_total",
    "Objects that already showed the desired state (no write made)",
    ["kind"],
)
HELD_FOR_GIVER = Counter(
    "metalbus_watcher_status_held_for_giver_total",
    "Service status writes held back because another Service still shows an address this one takes (the "
    "giver's status is written first: no two Services that do not share an address ever show it)",
)
CONFLICTS = Counter(
    "metalbus_watcher_status_conflicts_total",
    "409 Conflict answers, each followed by a re-read and a retry",
    ["kind"],
)
THROTTLED = Counter(
    "metalbus_watcher_status_throttled_total",
    "Status writes and Events the API server answered 429 Too Many Requests: the whole writer pauses, the "
    "object or Event is written again after (kind Event for Events)",
    ["kind"],
)
ERRORS = Counter(
    "metalbus_watcher_status_errors_total",
    "Failed status writes (after retries), by kind",
    ["kind"],
)
EVENTS = Counter(
    "metalbus_watcher_status_events_total",
    "Kubernetes Events recorded, by reason and outcome (created, aggregated, dropped, failed)",
    ["reason", "outcome"],
)
PENDING = Gauge(
    "metalbus_watcher_status_pending_objects",
    "Objects whose desired state is not written yet",
)
PUT_BACK = Counter(
    "metalbus_watcher_status_put_back_total",
    "Objects seen not showing what metalbus decided (status written by someone else, object made again), "
    "queued to be written again",
    ["kind"],
)
