"""The status file of a Service, folded from IPAM and ANNOUNCE events."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import (
    AllocationFailed,
    AllocationFailureReason,
    AnnouncementMode,
    AnnouncementReported,
    Event,
    IPAllocated,
    IPReleased,
    ReleaseReason,
    ServiceId,
)
from schemas.events.codec import wrap
from services.common.bus import Received
from services.watcher.files.status import FileStatus, service_document
from services.watcher.status.desired import StatusState

WEB = ServiceId(namespace="demo", name="web", uid="u1")


def fold(status: FileStatus, sequence: int, subject: str, event: Event) -> set[tuple[str, str]]:
    return status.fold(Received(subject=subject, sequence=sequence, envelope=wrap(event, producer="t"),
                                time=datetime(2026, 11, 3, tzinfo=UTC)))


def test_ingress_pool_announcers_and_events() -> None:
    status = FileStatus(StatusState("metallb-system"))
    assert fold(status, 1, "ipam.allocation.demo.web",
                IPAllocated(service=WEB, ips=("10.0.0.5",), pool="lan", reason="r")) == {("demo", "web")}
    assert fold(status, 1, "announce.n1.ip.x", AnnouncementReported(
        node="n1", ip="10.0.0.5", mode=AnnouncementMode.L2, announcing=True, services=(WEB,),
        interfaces=("eth0",), placement_epoch=2)) == {("demo", "web")}
    document = service_document(status, "demo", "web")
    assert document is not None
    assert document["status"] == {"loadBalancer": {"ingress": [{"ip": "10.0.0.5", "ipMode": "VIP"}]}}
    assert document["metalbus"]["pool"] == "lan"
    assert document["metalbus"]["announcedBy"] == [
        {"node": "n1", "ip": "10.0.0.5", "mode": "layer2", "epoch": 2, "interfaces": ["eth0"]}]
    assert [e["reason"] for e in document["metalbus"]["events"]] == ["IPAllocated", "nodeAssigned"]


def test_a_failure_has_no_ingress_but_says_why_and_a_deleted_service_has_no_file() -> None:
    status = FileStatus(StatusState("metallb-system"))
    failed = AllocationFailed(service=WEB, reason=AllocationFailureReason.NO_AVAILABLE_IP, message="full")
    fold(status, 1, "ipam.allocation.demo.web", failed)
    document = service_document(status, "demo", "web")
    assert document is not None and document["status"] == {"loadBalancer": {}}
    assert document["metalbus"]["events"][0]["message"] == 'Failed to allocate IP for "demo/web": full'
    fold(status, 2, "ipam.allocation.demo.web",
         IPReleased(service=WEB, ips=(), reason=ReleaseReason.SERVICE_DELETED))
    assert service_document(status, "demo", "web") is None
