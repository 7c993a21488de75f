"""What the spans of one Kubernetes change say: the watcher's observe span, the ipam's decide span."""

from __future__ import annotations

from schemas.events import (
    AllocationFailed,
    AllocationFailureReason,
    EndpointsObserved,
    Event,
    IPAllocated,
    L2PlacementDecided,
    ObjectKind,
    PoolUsageReported,
    ServiceId,
)
from schemas.events.decisions import FamilyUsage
from services.common.subjects import k8s_subject
from services.ipam.spans import decision_attributes
from services.watcher.observe.publishing import observed_span
from services.watcher.observe.translate import Identity, Observation
from tests.builders import pool, service, service_deleted

WEB = ServiceId(namespace="default", name="web", uid="u-web")
NO_USAGE = FamilyUsage(assigned=0, available=0)


def _observed(kind: ObjectKind, event: Event, namespace: str, name: str, version: str) -> Observation:
    return Observation(k8s_subject(kind, namespace, name), event, f"uid/{version}", Identity("uid", version))


def test_an_observed_service_names_its_kind_object_version_and_service() -> None:
    name, attributes = observed_span(ObjectKind.SERVICE, _observed(ObjectKind.SERVICE, service("web"), "default",
                                                                   "web", "1"))  # fmt: skip
    assert name == "observe Service default/web"
    assert attributes["k8s.kind"] == "Service"
    assert attributes["k8s.namespace.name"] == "default"
    assert attributes["k8s.object.name"] == "web"
    assert attributes["k8s.resource_version"] == "1"
    assert attributes["metalbus.service"] == "default/web"
    assert attributes["messaging.destination.name"] == "k8s.service.default.web"


def test_endpoints_config_objects_and_tombstones_are_named_for_what_they_are() -> None:
    slices = EndpointsObserved(namespace="default", service="web")
    assert observed_span(ObjectKind.ENDPOINTS, _observed(ObjectKind.ENDPOINTS, slices, "default", "web", "h"))[0] \
        == "observe EndpointSlice default/web"
    name, attributes = observed_span(
        ObjectKind.IP_ADDRESS_POOL,
        _observed(ObjectKind.IP_ADDRESS_POOL, pool("lab", "10.0.0.0/24"), "metallb-system", "lab", "1"),
    )
    assert name == "observe IPAddressPool metallb-system/lab"
    assert attributes["metalbus.pool"] == "lab"
    name, attributes = observed_span(ObjectKind.SERVICE, _observed(ObjectKind.SERVICE, service_deleted("web"),
                                                                   "default", "web", "2"))  # fmt: skip
    assert name == "observe Service default/web"
    assert attributes["k8s.deleted"] is True


def test_a_decision_names_the_service_its_ips_pool_and_node() -> None:
    decided = [
        IPAllocated(service=WEB, ips=("10.0.0.5",), pool="lab", reason="first free"),
        L2PlacementDecided(ip="10.0.0.5", node="node1", services=(WEB,)),
        PoolUsageReported(pool="lab", ipv4=NO_USAGE, ipv6=NO_USAGE),
    ]
    assert decision_attributes(service("web"), decided) == {
        "metalbus.service": "default/web", "metalbus.ip": "10.0.0.5", "metalbus.pool": "lab",
        "metalbus.node": "node1", "metalbus.decisions": 3,
    }  # fmt: skip


def test_a_decision_about_nothing_still_says_which_service_was_observed() -> None:
    assert decision_attributes(service("web"), []) == {"metalbus.service": "default/web", "metalbus.decisions": 0}
    failed = AllocationFailed(service=WEB, reason=AllocationFailureReason.NO_AVAILABLE_IP, message="pool exhausted")
    assert decision_attributes(pool("lab"), [failed]) == {"metalbus.service": "default/web", "metalbus.decisions": 1}
