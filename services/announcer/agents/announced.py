"""``metallb_speaker_announced{ip,node,protocol,service}``: 1 while this announcer announces a Service's IP.

MetalLB serves one gauge for both protocols; here the L2 and the BGP agent run in one process, so both
report into this one collector (a metric name may be registered only once) under their own
``AnnouncementMode`` (the reports' mode; the ``protocol`` label, ``layer2`` or ``bgp``). Each report
replaces that mode's whole set (a reference swap: the scrape thread sees the old or the new one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from schemas.events import AnnouncementMode
from services.common.metrics import process_collector

#: IP → the Services ("namespace/name") announced with it.
Announced = Mapping[str, tuple[str, ...]]


class AnnouncedCollector(Collector):
    def __init__(self) -> None:
        self._reports: Mapping[AnnouncementMode, tuple[str, Announced]] = {}

    def update(self, mode: AnnouncementMode, node: str, announced: Announced) -> None:
        self._reports = {**self._reports, mode: (node, dict(announced))}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "metallb_speaker_announced", "Services being announced from this node. This is desired state,"
            " it does not guarantee that the routing protocols have converged.",
            labels=["ip", "node", "protocol", "service"],
        )  # fmt: skip
        for mode, (node, announced) in sorted(self._reports.items()):
            for ip, services in sorted(announced.items()):
                for service in services:
                    family.add_metric([ip, node, mode.value, service], 1)
        yield family


def announced_collector(registry: CollectorRegistry = REGISTRY) -> AnnouncedCollector:
    """The process's collector, registered once."""
    return process_collector(AnnouncedCollector, registry)
