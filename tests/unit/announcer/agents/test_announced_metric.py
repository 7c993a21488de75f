"""metallb_speaker_announced: one gauge that both announcing protocols of a process report into."""

from __future__ import annotations

from ipaddress import ip_address

from prometheus_client import CollectorRegistry, generate_latest

from schemas.events import AnnouncementMode, ServiceId
from services.announcer.agents.announced import AnnouncedCollector
from services.announcer.agents.bgp_metrics import AnnouncedGauge
from services.announcer.agents.bgp_plan import IPAnnouncement
from services.announcer.agents.layer2_metrics import L2Snapshot
from services.announcer.agents.layer2_ownership import Answering
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
    announced.update(AnnouncementMode.L2, "n1", snapshot.announced)
    announced.update(AnnouncementMode.BGP, "n1", {"198.51.100.7": ("ns/api", "ns/db")})
    assert served(registry) == {
        'metallb_speaker_announced{ip="192.0.2.10",node="n1",protocol="layer2",service="ns/web"} 1.0',
        'metallb_speaker_announced{ip="198.51.100.7",node="n1",protocol="bgp",service="ns/api"} 1.0',
        'metallb_speaker_announced{ip="198.51.100.7",node="n1",protocol="bgp",service="ns/db"} 1.0',
    }
    announced.update(AnnouncementMode.BGP, "n1", {})
    assert served(registry) == {
        'metallb_speaker_announced{ip="192.0.2.10",node="n1",protocol="layer2",service="ns/web"} 1.0',
    }
    # one family, one HELP/TYPE pair: what a second registration of the name would have broken
    assert generate_latest(registry).decode().count("# TYPE metallb_speaker_announced gauge") == 1


def test_bgp_set_is_read_from_the_plan_when_scraped_for_peers_with_a_session() -> None:
    registry = CollectorRegistry()
    announced = AnnouncedCollector()
    registry.register(announced)
    gauge = AnnouncedGauge(announced, "n1")
    assert served(registry) == set()
    plan = {
        "198.51.100.7": IPAnnouncement(service_names="ns/api", service_uids="u1", peers=("tor",)),
        "198.51.100.8": IPAnnouncement(service_names=("ns/a", "ns/b"), service_uids=("u2", "u3"), peers=("spine",)),
    }
    gauge.show(plan, frozenset({"tor"}))
    assert served(registry) == {
        'metallb_speaker_announced{ip="198.51.100.7",node="n1",protocol="bgp",service="ns/api"} 1.0'
    }
    # the plan changed in place, a session came: the next scrape shows it, no hand-over needed
    del plan["198.51.100.7"]
    gauge.show(plan, frozenset({"tor", "spine"}))
    assert served(registry) == {
        'metallb_speaker_announced{ip="198.51.100.8",node="n1",protocol="bgp",service="ns/a"} 1.0',
        'metallb_speaker_announced{ip="198.51.100.8",node="n1",protocol="bgp",service="ns/b"} 1.0',
    }
    gauge.show(plan, frozenset())  # sessions ended
    assert served(registry) == set()
