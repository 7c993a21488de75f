"""Prometheus metrics every service shares (each service keeps its own in its package)."""

from __future__ import annotations

from prometheus_client import Counter

DEAD_LETTERS = Counter(
    "metalbus_dead_letters_total",
    "Messages set aside on the dead-letter stream (invalid, or failing every redelivery)",
    ["stream", "consumer"],
)
