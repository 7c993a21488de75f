"""Prometheus metrics of BGP mode under MetalLB's names, labelled by the peer's address as MetalLB does:

    metallb_bgp_session_up{peer}                 1 while the session is Established
    metallb_bgp_updates_total{peer}              UPDATE messages sent (End-of-RIB markers included)
    metallb_bgp_announced_prefixes_total{peer}   prefixes the peer holds from us

and what peers send, which is checked and counted but never used (``metalbus_`` names, MetalLB has none):

    metalbus_bgp_received_updates_total{peer}    UPDATE messages received (End-of-RIB markers included)
    metalbus_bgp_received_prefixes_total{peer}   prefixes announced or withdrawn in them
    metalbus_bgp_update_errors_total{peer}       UPDATEs with an RFC 7606 error handled without a reset
                                                 (an attribute discarded, routes treated as withdrawn)
    metalbus_bgp_refused_connections_total       connections from addresses no BGPPeer has, refused before
                                                 OPEN (no label: the sources are anyone's to choose)

(``metallb_speaker_announced``, shared with L2 mode, is in ``announced.py``; :class:`AnnouncedGauge` keeps BGP
mode's set of it, read from the plan when scraped.)

The event loop swaps in an immutable snapshot; the scrape thread only reads it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from schemas.events import AnnouncementMode
from services.announcer.agents.announced import AnnouncedCollector
from services.announcer.agents.bgp_plan import IPAnnouncement
from services.common.metrics import process_collector


@dataclass(frozen=True, slots=True)
class PeerStats:
    up: bool = False
    updates: int = 0
    announced_prefixes: int = 0
    received_updates: int = 0
    received_prefixes: int = 0
    update_errors: int = 0


@dataclass(frozen=True, slots=True)
class BgpSnapshot:
    peers: Mapping[str, PeerStats] = field(default_factory=dict)  # peer address -> stats
    refused_connections: int = 0  # connections from addresses no BGPPeer has, refused before OPEN


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
        received = CounterMetricFamily("metalbus_bgp_received_updates", "BGP UPDATE messages received", labels=["peer"])
        received_prefixes = CounterMetricFamily(
            "metalbus_bgp_received_prefixes", "Prefixes announced or withdrawn in the UPDATEs received", labels=["peer"]
        )
        errors = CounterMetricFamily(
            "metalbus_bgp_update_errors", "UPDATEs received with an error handled as RFC 7606 says, without a reset",
            labels=["peer"],
        )  # fmt: skip
        for peer, stats in sorted(snap.peers.items()):
            up.add_metric([peer], int(stats.up))
            updates.add_metric([peer], stats.updates)
            prefixes.add_metric([peer], stats.announced_prefixes)
            received.add_metric([peer], stats.received_updates)
            received_prefixes.add_metric([peer], stats.received_prefixes)
            errors.add_metric([peer], stats.update_errors)
        refused = CounterMetricFamily(
            "metalbus_bgp_refused_connections", "Connections from addresses no BGPPeer has, refused before OPEN"
        )
        refused.add_metric([], snap.refused_connections)
        yield from (up, updates, prefixes, received, received_prefixes, errors, refused)


def bgp_collector(registry: CollectorRegistry = REGISTRY) -> BgpCollector:
    """The process's collector, registered once."""
    return process_collector(BgpCollector, registry)


class AnnouncedGauge:
    """BGP mode's set of ``metallb_speaker_announced`` (IP → its Services): every IP planned for a peer this
    announcer has a session with, read from the plan when scraped — no copy of tens of thousands of IPs kept
    beside the plan. The loop swaps in the plan's announcements and the sessions by reference (:meth:`show`);
    the scrape thread copies the announcements in one step (a dict copied under the GIL, while the planner
    changes it in place) and keeps those for a session."""

    def __init__(self, collector: AnnouncedCollector, node: str) -> None:
        self._view: tuple[Mapping[str, IPAnnouncement], frozenset[str]] = ({}, frozenset())
        collector.follow(AnnouncementMode.BGP, node, self.announced)

    def show(self, announcements: Mapping[str, IPAnnouncement], sessions: frozenset[str]) -> None:
        """The plan's announcements (kept current in place) and the BGPPeers this announcer has a session with."""
        self._view = (announcements, sessions)

    def announced(self) -> dict[str, tuple[str, ...]]:
        announcements, sessions = self._view
        return {ip: a.services for ip, a in dict(announcements).items() if sessions.intersection(a.peers)}
