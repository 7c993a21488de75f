"""Prometheus metrics of BGP mode under MetalLB's names, labelled by the peer's address as MetalLB does:

    metallb_bgp_session_up{peer}                 1 while the session is Established
    metallb_bgp_updates_total{peer}              UPDATE messages sent (End-of-RIB markers included)
    metallb_bgp_announced_prefixes_total{peer}   prefixes the peer holds from us

(``metallb_speaker_announced``, shared with L2 mode, is in ``announced.py``.)

The event loop swaps in an immutable snapshot; the scrape thread only reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from services.common.metrics import process_collector


@dataclass(frozen=True, slots=True)
class PeerStats:
    up: bool = False
    updates: int = 0
    announced_prefixes: int = 0


@dataclass(frozen=True, slots=True)
class BgpSnapshot:
    peers: Mapping[str, PeerStats] = field(default_factory=dict)  # peer address -> stats


class BgpCollector(Collector):
    def __init__(self) -> None:
        self._snapshot = BgpSnapshot()

    def update(self, snapshot: BgpSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        up = GaugeMetricFamily("metallb_bgp_session_up", "BGP session state (1 is up, 0 is down)", labels=["peer"])
        updates = CounterMetricFamily("metallb_bgp_updates", "Number of BGP UPDATE messages sent", labels=["peer"])
        prefixes = GaugeMetricFamily(
            "metallb_bgp_announced_prefixes_total", "Number of prefixes currently being advertised on the BGP session",
            labels=["peer"],
        )  # fmt: skip
        for peer, stats in sorted(snap.peers.items()):
            up.add_metric([peer], int(stats.up))
            updates.add_metric([peer], stats.updates)
            prefixes.add_metric([peer], stats.announced_prefixes)
        yield up
        yield updates
        yield prefixes


def bgp_collector(registry: CollectorRegistry = REGISTRY) -> BgpCollector:
    """The process's collector, registered once."""
    return process_collector(BgpCollector, registry)
