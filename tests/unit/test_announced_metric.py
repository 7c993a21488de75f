"""metallb_speaker_announced: one gauge that both announcing protocols of a process report into."""

from __future__ import annotations

from ipaddress import ip_address

from prometheus_client import CollectorRegistry, generate_latest

from schemas.events import ServiceId
from services.announcer.announced import AnnouncedCollector, Protocol
from services.announcer.l2.metrics import L2Snapshot
from services.announcer.l2.ownership import Answering
from services.announcer.l2.responder import L2Stats


def served(registry: CollectorRegistry) -> set[str]:
    return {line for line in generate_latest(registry).decode().splitlines() if line.startswith("metallb_")}


def test_both_protocols_in_one_gauge_each_replacing_only_its_own_set() -> None:
    registry = CollectorRegistry()
    announced = AnnouncedCollector()
    registry.register(announced)
    web = (ServiceId(namespace="ns", name="web"),)
    snapshot = L2Snapshot.of(
        node="n1", stats=L2Stats(), yields={}, partitioned=False,
        answering={ip_address("192.0.2.10"): Answering(interfaces=("eth0",), epoch=7, services=web)},
    )  # fmt: skip
    announced.update(Protocol.LAYER2, "n1", snapshot.announced)
    announced.update(Protocol.BGP, "n1", {"198.51.100.7": ("ns/api", "ns/db")})
    assert served(registry) == {
        'metallb_speaker_announced{ip="192.0.2.10",node="n1",protocol="layer2",service="ns/web"} 1.0',
        'metallb_speaker_announced{ip="198.51.100.7",node="n1",protocol="bgp",service="ns/api"} 1.0',
        'metallb_speaker_announced{ip="198.51.100.7",node="n1",protocol="bgp",service="ns/db"} 1.0',
    }
    announced.update(Protocol.BGP, "n1", {})
    assert served(registry) == {
        'metallb_speaker_announced{ip="192.0.2.10",node="n1",protocol="layer2",service="ns/web"} 1.0',
    }
    # one family, one HELP/TYPE pair: what a second registration of the name would have broken
    assert generate_latest(registry).decode().count("# TYPE metallb_speaker_announced gauge") == 1
