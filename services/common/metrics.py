"""Prometheus metrics every service shares (each service keeps its own in its package)."""

from __future__ import annotations

from typing import TypeVar, cast

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.registry import Collector

DEAD_LETTERS = Counter(
    "metalbus_dead_letters_total",
    "Messages set aside on the dead-letter stream (invalid, or failing every redelivery)",
    ["stream", "consumer"],
)
INPUTS_REFUSED = Counter(
    "metalbus_inputs_refused_total",
    "Inputs a decoder refused (message bodies, subjects, trace headers, Kubernetes objects), by why; "
    "the message or object is dropped or dead-lettered, a refused trace header is ignored",
    ["component", "reason"],
)
STOPPED_ON_NEWER_SCHEMA = Gauge(
    "metalbus_stopped_on_newer_schema",
    "1 while a reader of this process stands stopped at an event of a schema version this build does not "
    "understand (it neither skips nor dead-letters it: upgrade the component)",
    ["component", "stream"],
)

TASK_FAILURES = Counter(
    "metalbus_task_failures_total",
    "Background tasks that died with an exception (then restarted, or the probes failed: see the log)",
    ["component", "task"],
)

_Kind = TypeVar("_Kind", bound=Collector)
_PROCESS_COLLECTORS: dict[type[Collector], Collector] = {}


def process_collector(kind: type[_Kind], registry: CollectorRegistry = REGISTRY) -> _Kind:
    """The process's one collector of ``kind`` (a metric name may be registered once), made and
    registered on first use."""
    found = _PROCESS_COLLECTORS.get(kind)
    if found is None:
        found = _PROCESS_COLLECTORS[kind] = kind()
        registry.register(found)
    return cast(_Kind, found)
