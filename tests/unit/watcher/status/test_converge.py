"""What a Service or ConfigurationState lacks, decided without the API (the pure helpers of converge)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from datetime import UTC, datetime
from typing import Any, cast

from services.watcher.annotations import DEPRECATED_POOL_ANNOTATION, POOL_ANNOTATION
from services.watcher.status.configstate import (
    Condition,
    ConditionStatus,
    ConfigResult,
    ConfigStateTarget,
)
from services.watcher.status.converge import Converger, Outcome, config_status, pool_shows, service_changes
from services.watcher.status.desired import (
    Claim,
    PoolTarget,
    ServiceTarget,
)
from services.watcher.status.objects import ObjectApi, Resource
from tests.kubeapi.objects import merge_write
from tests.kubeapi.patching import PatchType, apply_patch
from tests.kubeapi.resources import ResourceTable

ALLOCATED = ServiceTarget("default", "web", "u", ("10.0.0.5",), "lan")


def service(ingress: list[dict[str, str]], annotations: dict[str, str] | None = None) -> dict[str, object]:
    return {"metadata": {"name": "web", "annotations": annotations or {}},
            "status": {"loadBalancer": {"ingress": ingress} if ingress else {}}}


def test_a_service_showing_the_allocation_needs_nothing() -> None:
    obj = service([{"ip": "10.0.0.5", "ipMode": "VIP"}], {POOL_ANNOTATION: "lan"})
    assert service_changes(ALLOCATED, obj) == (None, {})


def test_a_fresh_service_needs_ingress_and_annotation_and_loses_the_deprecated_one() -> None:
    ingress, annotations = service_changes(ALLOCATED, service([], {DEPRECATED_POOL_ANNOTATION: "lan"}))
    assert ingress == [{"ip": "10.0.0.5", "ipMode": "VIP"}]
    assert annotations == {POOL_ANNOTATION: "lan", DEPRECATED_POOL_ANNOTATION: None}


def test_without_ip_mode_support_the_plain_ip_is_enough() -> None:
    obj = service([{"ip": "10.0.0.5"}], {POOL_ANNOTATION: "lan"})
    assert service_changes(ALLOCATED, obj, ip_mode=False) == (None, {})
    assert service_changes(ALLOCATED, obj)[0] == [{"ip": "10.0.0.5", "ipMode": "VIP"}]


def test_a_cleared_service_shows_no_address_whoever_wrote_it() -> None:
    cleared = ServiceTarget("default", "web", "u")
    obj = service([{"ip": "10.0.0.5", "ipMode": "VIP"}, {"hostname": "lb.example"}, {"ip": "203.0.113.9"}],
                  {POOL_ANNOTATION: "lan"})
    assert service_changes(cleared, obj) == ([], {POOL_ANNOTATION: None})
    assert service_changes(cleared, service([])) == (None, {})


def test_an_allocated_service_shows_exactly_its_addresses() -> None:
    for shown in ([{"ip": "10.0.0.9", "ipMode": "VIP"}], [{"hostname": "lb.example"}],
                  [{"ip": "10.0.0.5", "ipMode": "VIP"}, {"ip": "fd00::5", "ipMode": "VIP"}],
                  [{"ip": "10.0.0.5", "ipMode": "Proxy"}]):
        assert service_changes(ALLOCATED, service(shown, {POOL_ANNOTATION: "lan"}))[0] == [
            {"ip": "10.0.0.5", "ipMode": "VIP"}], shown


def test_a_service_handed_over_loses_only_our_ips() -> None:
    released = ServiceTarget("default", "web", "u", claim=Claim.HANDED_OVER, strip=("10.0.0.5",))
    obj = service([{"ip": "10.0.0.5", "ipMode": "VIP"}, {"ip": "203.0.113.9"}], {POOL_ANNOTATION: "lan"})
    assert service_changes(released, obj) == ([{"ip": "203.0.113.9"}], {POOL_ANNOTATION: None})
    assert service_changes(released, service([])) == (None, {})


def test_conditions_merge_by_type_and_keep_their_transition_time() -> None:
    earlier = datetime(2026, 1, 1, tzinfo=UTC)
    later = datetime(2026, 1, 2, tzinfo=UTC)
    valid = Condition("ConfigurationValid", ConditionStatus.TRUE, "Valid", "ok")
    first = config_status(ConfigStateTarget("metalbus", ConfigResult.VALID, "", (valid,)),
                          {"conditions": [{"type": "Other", "status": "True"}]}, now=earlier)
    assert [c["type"] for c in first["conditions"]] == ["ConfigurationValid", "Other"]
    assert first["result"] == "Valid" and "errorSummary" not in first
    again = config_status(ConfigStateTarget("metalbus", ConfigResult.VALID, "", (valid,)), first, now=later)
    assert again["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    broken = Condition("ConfigurationValid", ConditionStatus.FALSE, "ConfigurationError", "bad")
    flipped = config_status(ConfigStateTarget("metalbus", ConfigResult.INVALID, "bad", (broken,)), again, now=later)
    assert flipped["conditions"][0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"
    assert (flipped["result"], flipped["errorSummary"]) == ("Invalid", "bad")
    # conditions only (result None): result and summary stay as they were
    only = config_status(ConfigStateTarget("metalbus", None, "", ()), flipped, now=later)
    assert (only["result"], only["errorSummary"]) == ("Invalid", "bad")


def test_a_pool_shows_its_counts_whatever_else_its_status_holds() -> None:
    counts = PoolTarget("lan", assigned_ipv4=1, assigned_ipv6=0, available_ipv4=3, available_ipv6=0)
    shown = {"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 3, "availableIPv6": 0}
    assert pool_shows(counts, {"status": shown})
    assert pool_shows(counts, {"status": {**shown, "note": "kept"}})
    assert not pool_shows(counts, {})  # made again under its name: no status yet
    assert not pool_shows(counts, {"status": {**shown, "assignedIPv4": 40}})


class OneService:
    """One Service behind an API whose status writes keep the metadata they carry (as Kubernetes's Service
    status strategy does) or, ``status_only``, keep nothing but the status (as a custom resource's would):
    the API stand-in's own rules (``tests/kubeapi``)."""

    def __init__(self, *, status_only: bool) -> None:
        services = ResourceTable().by_name("services")
        self.rules = dataclasses.replace(services, custom=True) if status_only else services
        self.obj: dict[str, Any] = {"metadata": {"name": "web", "uid": "u", "resourceVersion": "1",
                                                 "annotations": {DEPRECATED_POOL_ANNOTATION: "lan"}}}
        self.writes: list[bool] = []  # each write: to the status subresource or not

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    async def patch(self, resource: Resource, namespace: str, name: str, body: dict[str, Any], *,
                    status: bool = False) -> dict[str, Any]:
        self.writes.append(status)
        patched = apply_patch(self.obj, PatchType.MERGE, body)
        self.obj = merge_write(self.rules, self.obj, patched, "status" if status else None)
        self.obj["metadata"]["resourceVersion"] = str(int(self.obj["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.obj)


def test_the_pool_annotation_goes_with_the_status_in_one_write() -> None:
    server = OneService(status_only=False)
    converger = Converger(cast(ObjectApi, server), namespace="metalbus")
    assert asyncio.run(converger.converge(ALLOCATED)) is Outcome.WRITTEN
    assert server.writes == [True]
    assert service_changes(ALLOCATED, server.obj) == (None, {})


def test_a_server_keeping_only_the_status_gets_the_annotation_in_a_second_write() -> None:
    server = OneService(status_only=True)
    converger = Converger(cast(ObjectApi, server), namespace="metalbus")
    assert asyncio.run(converger.converge(ALLOCATED)) is Outcome.WRITTEN
    assert server.writes == [True, False]
    assert service_changes(ALLOCATED, server.obj) == (None, {})
    assert server.obj["metadata"]["annotations"] == {POOL_ANNOTATION: "lan"}
