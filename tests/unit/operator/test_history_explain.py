"""The pure parts of `explain` and `history`: a log of events in, the sentences a user reads out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import (
    AllocationFailed,
    AllocationFailureReason,
    AnnouncementMode,
    AnnouncementReported,
    EndpointsObserved,
    Event,
    IPAllocated,
    IPReleased,
    L2PlacementDecided,
    NodeEndpoints,
    ObjectRef,
    ReleaseReason,
    ServiceId,
    ServiceObserved,
)
from schemas.events.codec import wrap
from services.common.bus import Received
from services.common.subjects import StreamName
from services.operator.explain import explain_lines
from services.operator.history import describe, history
from services.operator.views import ClusterView

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
WEB = ServiceId(namespace="demo", name="web", uid="u1")
DB = ServiceId(namespace="demo", name="db", uid="u2")


def at(sequence: int, event: Event, minutes: int) -> Received:
    return Received(subject="x", sequence=sequence, envelope=wrap(event, producer="test"),
                    time=T0 + timedelta(minutes=minutes))


LOG: list[tuple[StreamName, Received]] = [
    (StreamName.IPAM, at(1, IPAllocated(service=WEB, ips=("10.0.0.5",), pool="lan", reason="lowest free"), 0)),
    (StreamName.IPAM, at(2, L2PlacementDecided(ip="10.0.0.5", node="node1", services=(WEB,), reason="least loaded"),
                         0)),
    (StreamName.ANNOUNCE, at(1, AnnouncementReported(node="node1", ip="10.0.0.5", mode=AnnouncementMode.L2,
                                                     announcing=True, services=(WEB,), interfaces=("eth0",),
                                                     placement_epoch=2), 1)),
    (StreamName.IPAM, at(3, IPReleased(service=WEB, ips=("10.0.0.5",), reason=ReleaseReason.SERVICE_DELETED), 10)),
    (StreamName.IPAM, at(4, IPAllocated(service=DB, ips=("10.0.0.5",), pool="lan", reason="lowest free"), 20)),
    (StreamName.IPAM, at(5, L2PlacementDecided(ip="10.0.0.5", node="node2", services=(DB,)), 20)),
]


def test_history_of_an_ip_tells_who_held_it_and_who_answered_when() -> None:
    lines = [(e.time.strftime("%H:%M"), e.what) for e in history(LOG, "10.0.0.5")]
    assert lines == [
        ("09:00", "demo/web holds 10.0.0.5 (pool lan): lowest free"),
        ("09:00", "10.0.0.5 placed on node node1: least loaded"),
        ("09:01", "node node1 announces 10.0.0.5 (layer2 via eth0, epoch 2)"),
        ("09:10", "demo/web released 10.0.0.5 (ServiceDeleted)"),
        ("09:20", "demo/db holds 10.0.0.5 (pool lan): lowest free"),
        ("09:20", "10.0.0.5 placed on node node2"),
    ]


def test_history_of_a_service_shows_its_ips_only_while_it_held_them() -> None:
    whats = [e.what for e in history(LOG, "demo/web")]
    assert whats[-1] == "demo/web released 10.0.0.5 (ServiceDeleted)"
    assert not any("node2" in what for what in whats)  # after the release it is db's business
    assert [e.what for e in history(LOG, "demo/db")][-1] == "10.0.0.5 placed on node node2"


def test_explain_an_allocated_and_announced_service() -> None:
    view = ClusterView()
    for _, received in LOG[:3]:
        view.fold(received)
    lines = explain_lines(view, "demo/web", None, now=T0 + timedelta(minutes=5))
    assert "It holds 10.0.0.5 from pool lan, decided 5m ago (sequence 1)." in lines
    assert "10.0.0.5: layer 2 — ipam placed it on node1 (epoch 2, 5m ago): least loaded." in lines
    assert "10.0.0.5: node1 answers ARP on eth0, acting on epoch 2, since 4m ago." in lines


def test_explain_a_placement_nobody_reports() -> None:
    view = ClusterView()
    for _, received in LOG[:2]:
        view.fold(received)
    lines = explain_lines(view, "demo/web", None, now=T0)
    assert "10.0.0.5: node1 has not reported answering for it yet (is its announcer running?)." in lines


def test_explain_a_failure() -> None:
    view = ClusterView()
    failed = AllocationFailed(service=WEB, reason=AllocationFailureReason.NO_AVAILABLE_IP, message="pool lan is full")
    view.fold(at(7, failed, 0))
    lines = explain_lines(view, "demo/web", None, now=T0)
    assert "Why: pool lan is full (reason NoAvailableIP)." in lines


def test_explain_says_where_a_local_policy_lets_it_be_announced() -> None:
    observed = ServiceObserved(
        ref=ObjectRef(namespace="demo", name="web", uid="u1", resource_version="1"), service_type="LoadBalancer",
        external_traffic_policy="Local", annotations={"metallb.io/loadBalancerIPs": "10.0.0.5"},
    )
    endpoints = EndpointsObserved(namespace="demo", service="web", nodes=(
        NodeEndpoints(node="node1", ready=1, serving=1), NodeEndpoints(node="node2", ready=0, serving=0)))
    lines = explain_lines(ClusterView(), "demo/web", observed, now=T0, endpoints=endpoints)
    assert "It asks for: metallb.io/loadBalancerIPs=10.0.0.5." in lines
    assert ("externalTrafficPolicy is Local: only nodes with a serving endpoint may announce it;"
            " its serving endpoints are on node1.") in lines


def test_a_withdrawn_failure_reads_as_a_service_metalbus_no_longer_serves() -> None:
    withdrawn = IPReleased(service=ServiceId(namespace="default", name="web", uid="u"), ips=(),
                           reason=ReleaseReason.CLASS_CHANGED)
    assert describe(withdrawn) == "default/web no longer served (LoadBalancerClassChanged)"
