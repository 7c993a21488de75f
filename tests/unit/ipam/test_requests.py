"""Service fields → ServiceRequest / refusal / not ours, as MetalLB's controller/service.go reads them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from schemas.events import AllocationFailureReason
from schemas.metallb import IPFamily
from services.ipam.core import (
    IPFamilyPolicy,
    NotManaged,
    NotManagedReason,
    Port,
    RawService,
    Refused,
    ServiceRequest,
    TrafficPolicy,
    parse_service,
)
from tests.unit.ipam.scenario import ips

BASE = RawService(
    namespace="web",
    name="front",
    ports=(("TCP", 80), ("UDP", 53)),
    ip_families=("IPv4",),
    cluster_ips=("10.96.0.10",),
    selector={"app": "front"},
)


def raw(**changes: Any) -> RawService:
    return replace(BASE, **changes)


def request_of(service: RawService, **kw: Any) -> ServiceRequest:
    parsed = parse_service(service, **kw)
    assert isinstance(parsed, ServiceRequest), parsed
    return parsed


ACCEPTED: list[tuple[str, RawService, dict[str, Any]]] = [
    ("plain", raw(), {"requested_ips": (), "requested_pool": None, "sharing_key": None, "deprecated_annotations": ()}),
    ("spec.loadBalancerIP", raw(load_balancer_ip="192.168.1.10"), {"requested_ips": ips("192.168.1.10")}),
    (
        "annotation, dual-stack, spaces",
        raw(
            annotations={"metallb.io/loadBalancerIPs": "192.168.1.10, fd00::10"},
            ip_families=("IPv4", "IPv6"),
            ip_family_policy="RequireDualStack",
        ),
        {
            "requested_ips": ips("192.168.1.10", "fd00::10"),
            "families": (IPFamily.IPV4, IPFamily.IPV6),
            "family_policy": IPFamilyPolicy.REQUIRE_DUAL_STACK,
        },
    ),
    (
        "deprecated annotations work and are flagged",
        raw(
            annotations={
                "metallb.universe.tf/loadBalancerIPs": "192.168.1.10",
                "metallb.universe.tf/address-pool": "lan",
                "metallb.universe.tf/allow-shared-ip": "key",
            }
        ),
        {
            "requested_ips": ips("192.168.1.10"),
            "requested_pool": "lan",
            "sharing_key": "key",
            "deprecated_annotations": (
                "metallb.universe.tf/loadBalancerIPs",
                "metallb.universe.tf/address-pool",
                "metallb.universe.tf/allow-shared-ip",
            ),
        },
    ),
    (
        "metallb.io wins over the deprecated twin",
        raw(annotations={"metallb.io/address-pool": "new", "metallb.universe.tf/address-pool": "old"}),
        {"requested_pool": "new", "deprecated_annotations": ()},
    ),
    (
        "an empty metallb.io value still wins (MetalLB's valueForAnnotation)",
        raw(annotations={"metallb.io/allow-shared-ip": "", "metallb.universe.tf/allow-shared-ip": "k"}),
        {"sharing_key": None},
    ),
    (
        "Local traffic policy keeps the selector for the backend key",
        raw(external_traffic_policy="Local", selector={"b": "2", "a": "1"}),
        {"traffic_policy": TrafficPolicy.LOCAL, "backend": "a=1,b=2"},
    ),
    ("Cluster backend key is empty", raw(external_traffic_policy="Cluster"), {"backend": ""}),
    ("ports", raw(), {"ports": (Port("TCP", 80), Port("UDP", 53))}),
    (
        "families from clusterIPs when ipFamilies is empty",
        raw(ip_families=(), cluster_ips=("fd00::1",)),
        {"families": (IPFamily.IPV6,)},
    ),
    (
        "IPv6 primary",
        raw(ip_families=("IPv6", "IPv4"), ip_family_policy="PreferDualStack"),
        {"families": (IPFamily.IPV6, IPFamily.IPV4), "family_policy": IPFamilyPolicy.PREFER_DUAL_STACK},
    ),
    (
        "SingleStack keeps only the primary family",
        raw(ip_families=("IPv6", "IPv4"), ip_family_policy="SingleStack"),
        {"families": (IPFamily.IPV6,)},
    ),
    (
        "status addresses, hostnames and garbage skipped",
        raw(status_ips=("192.168.1.5", "lb.example.com", "", "fd00::5")),
        {"status_ips": ips("192.168.1.5", "fd00::5")},
    ),
    (
        "IPv4-mapped IPv6 counts as IPv4, as in Go",
        raw(load_balancer_ip="::ffff:192.168.1.9"),
        {"requested_ips": ips("192.168.1.9")},
    ),
    ("our class when configured", raw(load_balancer_class="metalbus"), {"requested_pool": None}),
]


@pytest.mark.parametrize(("case", "service", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted(case: str, service: RawService, expected: dict[str, Any]) -> None:
    klass = "metalbus" if service.load_balancer_class else None
    request = request_of(service, load_balancer_class=klass)
    assert request.key == "web/front"
    assert request.namespace == "web"
    for name, value in expected.items():
        assert getattr(request, name) == value, name


REFUSED: list[tuple[str, RawService, AllocationFailureReason]] = [
    (
        "annotation and spec.loadBalancerIP together",
        raw(annotations={"metallb.io/loadBalancerIPs": "192.168.1.10"}, load_balancer_ip="192.168.1.10"),
        AllocationFailureReason.CONFLICTING_REQUEST,
    ),
    (
        "unparsable annotation",
        raw(annotations={"metallb.io/loadBalancerIPs": "192.168.1.300"}),
        AllocationFailureReason.INVALID_REQUESTED_IP,
    ),
    ("unparsable spec", raw(load_balancer_ip="not-an-ip"), AllocationFailureReason.INVALID_REQUESTED_IP),
    ("a zone is not an address", raw(load_balancer_ip="fe80::1%eth0"), AllocationFailureReason.INVALID_REQUESTED_IP),
    (
        "empty list item",
        raw(annotations={"metallb.io/loadBalancerIPs": "192.168.1.1,"}),
        AllocationFailureReason.INVALID_REQUESTED_IP,
    ),
    (
        "two addresses of one family",
        raw(annotations={"metallb.io/loadBalancerIPs": "192.168.1.1,192.168.1.2"}),
        AllocationFailureReason.TOO_MANY_REQUESTED_IPS,
    ),
    (
        "three addresses",
        raw(annotations={"metallb.universe.tf/loadBalancerIPs": "192.168.1.1,fd00::1,192.168.1.2"}),
        AllocationFailureReason.TOO_MANY_REQUESTED_IPS,
    ),
    ("no family to allocate for", raw(ip_families=(), cluster_ips=()), AllocationFailureReason.NO_IP_FAMILY),
]


@pytest.mark.parametrize(("case", "service", "reason"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused(case: str, service: RawService, reason: AllocationFailureReason) -> None:
    parsed = parse_service(service)
    assert isinstance(parsed, Refused), parsed
    assert parsed.reason is reason
    assert parsed.service == "web/front"
    assert parsed.message


def test_refusal_still_flags_deprecated_annotations() -> None:
    parsed = parse_service(raw(annotations={"metallb.universe.tf/loadBalancerIPs": "x"}))
    assert isinstance(parsed, Refused)
    assert parsed.deprecated_annotations == ("metallb.universe.tf/loadBalancerIPs",)


NOT_OURS: list[tuple[str, RawService, str | None, NotManagedReason]] = [
    ("ClusterIP", raw(type="ClusterIP"), None, NotManagedReason.NOT_LOAD_BALANCER),
    ("NodePort", raw(type="NodePort"), None, NotManagedReason.NOT_LOAD_BALANCER),
    ("a class while we serve none", raw(load_balancer_class="other"), None, NotManagedReason.OTHER_CLASS),
    ("no class while we serve one", raw(), "metalbus", NotManagedReason.OTHER_CLASS),
    ("another class", raw(load_balancer_class="other"), "metalbus", NotManagedReason.OTHER_CLASS),
]


@pytest.mark.parametrize(("case", "service", "klass", "reason"), NOT_OURS, ids=[c[0] for c in NOT_OURS])
def test_not_ours(case: str, service: RawService, klass: str | None, reason: NotManagedReason) -> None:
    parsed = parse_service(service, load_balancer_class=klass)
    assert isinstance(parsed, NotManaged), parsed
    assert parsed.reason is reason
    assert parsed.service == "web/front"
