"""Prometheus metrics of L2 mode under MetalLB's names, so existing dashboards keep working.

    metallb_layer2_requests_received{ip}      ARP requests / neighbor solicitations received for owned IPs
    metallb_layer2_responses_sent{ip}         ARP replies / neighbor advertisements sent
    metallb_layer2_gratuitous_sent{ip}        gratuitous ARP / unsolicited NA sent
    metallb_speaker_announced{ip,node,protocol,service}   1 while the IP is announced (served by
                                               services/announcer/agents/announced.py, for both protocols)
    metalbus_layer2_conflicts{ip}, metalbus_layer2_yields{ip}, metalbus_layer2_dropped{reason},
    metalbus_layer2_partitioned                1 while the announcer has lost the bus

MetalLB exposes its counters without the `_total` suffix the Python client would add to a Counter, so they
are served as untyped samples with the exact names. The event loop publishes an immutable `L2Snapshot`
(`L2Collector.update`); the scrape thread only reads the reference it holds, never the live counters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import GaugeMetricFamily, Metric, UnknownMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from services.announcer.agents.layer2_ownership import Answering
from services.announcer.l2.interfaces import IPAddress
from services.announcer.l2.responder import L2Stats
from services.common.metrics import process_collector


@dataclass(frozen=True, slots=True)
class L2Snapshot:
    node: str = ""
    requests_received: Mapping[str, int] = field(default_factory=dict)
    responses_sent: Mapping[str, int] = field(default_factory=dict)
    gratuitous_sent: Mapping[str, int] = field(default_factory=dict)
    conflicts: Mapping[str, int] = field(default_factory=dict)
    yields: Mapping[str, int] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)
    announced: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # IP -> services "ns/name"
    partitioned: bool = False

    @classmethod
    def of(
        cls,
        *,
        node: str,
        stats: L2Stats,
        answering: Mapping[IPAddress, Answering],
        yields: Mapping[str, int],
        partitioned: bool,
    ) -> L2Snapshot:
        view = stats.as_dict()

        def ips(key: str) -> dict[str, int]:
            value = view[key]
            assert isinstance(value, dict)
            return dict(value)

        return cls(
            node=node,
            requests_received=ips("requests_received"),
            responses_sent=ips("responses_sent"),
            gratuitous_sent=ips("gratuitous_sent"),
            conflicts=ips("conflicts"),
            yields=dict(yields),
            dropped=ips("dropped"),
            announced={
                str(ip): tuple(f"{s.namespace}/{s.name}" for s in a.services) or ("",) for ip, a in answering.items()
            },
            partitioned=partitioned,
        )


class L2Collector(Collector):
    def __init__(self) -> None:
        self._snapshot = L2Snapshot()

    def update(self, snapshot: L2Snapshot) -> None:
        self._snapshot = snapshot  # one reference swap: the scrape thread sees the old or the new one

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        per_ip = (
            ("metallb_layer2_requests_received", "Number of layer2 requests received for owned IPs",
             snap.requests_received),
            ("metallb_layer2_responses_sent", "Number of layer2 responses sent for owned IPs", snap.responses_sent),
            ("metallb_layer2_gratuitous_sent", "Number of gratuitous layer2 packets sent for owned IPs",
             snap.gratuitous_sent),
            ("metalbus_layer2_conflicts", "Claims of an owned IP by another station seen on the wire",
             snap.conflicts),
            ("metalbus_layer2_yields", "IPs given up while partitioned because another station claimed them",
             snap.yields),
        )  # fmt: skip
        for name, help_text, values in per_ip:
            family = UnknownMetricFamily(name, help_text, labels=["ip"])
            for ip, count in sorted(values.items()):
                family.add_metric([ip], count)
            yield family
        dropped = UnknownMetricFamily("metalbus_layer2_dropped", "Frames dropped by the parser", labels=["reason"])
        for reason, count in sorted(snap.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        yield GaugeMetricFamily(
            "metalbus_layer2_partitioned", "1 while this announcer has lost the bus", value=int(snap.partitioned)
        )


def l2_collector(registry: CollectorRegistry = REGISTRY) -> L2Collector:
    """The process's collector, registered once."""
    return process_collector(L2Collector, registry)
