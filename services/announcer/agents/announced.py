"""``metallb_speaker_announced{ip,node,protocol,service}``: 1 while this announcer announces a Service's IP.

MetalLB serves one gauge for both protocols; here the L2 and the BGP agent run in one process, so both
report into this one collector (a metric name may be registered only once) under their own
``AnnouncementMode`` (the reports' mode; the ``protocol`` label, ``layer2`` or ``bgp``). A mode either hands
its whole set (:meth:`AnnouncedCollector.update`, a copy swapped in by reference: the scrape thread sees the old
or the new one) or has it read when scraped (:meth:`AnnouncedCollector.follow`, no copy kept: BGP mode's tens
of thousands of IPs are read from its plan).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from schemas.events import AnnouncementMode
from services.common.metrics import process_collector

#: IP → the Services ("namespace/name") announced with it.
Announced = Mapping[str, tuple[str, ...]]


class AnnouncedCollector(Collector):
    def __init__(self) -> None:
        self._reports: Mapping[AnnouncementMode, tuple[str, Callable[[], Announced]]] = {}

    def update(self, mode: AnnouncementMode, node: str, announced: Announced) -> None:
        """``mode``'s whole set is now ``announced`` (copied)."""
        copy = dict(announced)
        self.follow(mode, node, lambda: copy)

    def follow(self, mode: AnnouncementMode, node: str, read: Callable[[], Announced]) -> None:
        """``mode``'s set is what ``read`` returns when scraped (called from the scrape thread)."""
        self._reports = {**self._reports, mode: (node, read)}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "metallb_speaker_announced", "Services being announced from this node. This is desired state,"
            " it does not guarantee that the routing protocols have converged.",
            labels=["ip", "node", "protocol", "service"],
        )  # fmt: skip
        for mode, (node, read) in sorted(self._reports.items()):
            for ip, services in sorted(read().items()):
                for service in services:
                    family.add_metric([ip, node, mode.value, service], 1)
        yield family


def announced_collector(registry: CollectorRegistry = REGISTRY) -> AnnouncedCollector:
    """The process's collector, registered once."""
    return process_collector(AnnouncedCollector, registry)
