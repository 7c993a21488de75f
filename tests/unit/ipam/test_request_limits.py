"""Hostile request annotations are refused by their size alone, with a message that stays short."""

from __future__ import annotations

from dataclasses import replace

import pytest

from schemas.events import AllocationFailureReason
from services.ipam.core import IPAddress, RawService, Refused, ServiceRequest, parse_service
from services.ipam.core import requests as requests_module

BASE = RawService(namespace="tenant", name="greedy", ports=(("TCP", 80),), ip_families=("IPv4", "IPv6"),
                  ip_family_policy="PreferDualStack", cluster_ips=("10.96.0.10",))
#: What the issue measured: a 225 KB list of addresses.
HUGE_LIST = ",".join(f"192.168.{i // 250}.{i % 250}" for i in range(16_000))
NEAR_LIMIT = 300  # a message quotes a prefix and a size, never the value


def refusal(annotations: dict[str, str], **changes: object) -> Refused:
    parsed = parse_service(replace(BASE, annotations=annotations, **changes))  # type: ignore[arg-type]
    assert isinstance(parsed, Refused), parsed
    return parsed


@pytest.fixture
def parsed_addresses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address text the parser looks at."""
    seen: list[str] = []
    real = requests_module.parse_ip

    def counting(text: str) -> IPAddress | None:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(requests_module, "parse_ip", counting)
    return seen


@pytest.mark.parametrize("name", ["metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"])
def test_a_huge_address_list_is_refused_unread_with_a_short_message(name: str, parsed_addresses: list[str]) -> None:
    refused = refusal({name: HUGE_LIST})
    assert refused.reason is AllocationFailureReason.TOO_MANY_REQUESTED_IPS
    assert parsed_addresses == [], "an entry was parsed before the count was checked"
    assert len(refused.message) < NEAR_LIMIT
    assert "16000 addresses" in refused.message and "192.168.0.0,192.168.0.1" in refused.message


def test_three_addresses_are_too_many_before_any_is_read(parsed_addresses: list[str]) -> None:
    refused = refusal({"metallb.io/loadBalancerIPs": "192.168.1.1,fd00::1,192.168.1.2"})
    assert refused.reason is AllocationFailureReason.TOO_MANY_REQUESTED_IPS
    assert parsed_addresses == []


@pytest.mark.parametrize(
    ("annotations", "changes", "quoted"),
    [
        ({"metallb.io/loadBalancerIPs": "192.168.1.1" + " " * 200_000}, {}, "loadBalancerIPs annotation"),
        ({}, {"load_balancer_ip": "x" * 100_000}, "spec.loadBalancerIP"),
        ({"metallb.io/address-pool": "p" * 200_000}, {}, "address-pool annotation"),
        ({"metallb.universe.tf/address-pool": "p" * 254}, {}, "address-pool annotation"),
        ({"metallb.io/allow-shared-ip": "k" * 200_000}, {}, "allow-shared-ip annotation"),
    ],
    ids=["padded address list", "spec.loadBalancerIP", "pool", "deprecated pool", "sharing key"],
)
def test_an_overlong_field_is_refused_by_its_length(
    annotations: dict[str, str], changes: dict[str, object], quoted: str, parsed_addresses: list[str]
) -> None:
    refused = refusal(annotations, **changes)
    assert refused.reason is AllocationFailureReason.REQUEST_TOO_LARGE
    assert quoted in refused.message and "characters" in refused.message
    assert len(refused.message) < NEAR_LIMIT
    assert parsed_addresses == []


def test_values_within_the_bounds_are_served_as_before() -> None:
    parsed = parse_service(replace(BASE, annotations={
        "metallb.io/loadBalancerIPs": "192.168.1.10, fd00::10",
        "metallb.io/address-pool": "p" * 253,
        "metallb.io/allow-shared-ip": "k" * 253,
    }))
    assert isinstance(parsed, ServiceRequest)
    assert [str(ip) for ip in parsed.requested_ips] == ["192.168.1.10", "fd00::10"]


def test_a_conflicting_request_quotes_the_annotation_short() -> None:
    refused = refusal({"metallb.io/loadBalancerIPs": "192.168.1.10"}, load_balancer_ip="192.168.1.11")
    assert refused.reason is AllocationFailureReason.CONFLICTING_REQUEST
    assert "'192.168.1.10'" in refused.message and "'192.168.1.11'" in refused.message
