"""An address that moves from one Service to another is never shown by both, not even for a moment: the
Service that gives it up is written first, whatever order the decisions reach the status writer in."""

from __future__ import annotations

import time
from typing import Any

from schemas.events import IPAllocated, ServiceId
from services.common.bus import Bus
from services.common.subjects import ipam_allocation_subject
from tests.integration.watcher.status.harness import Harness, ingress, put_service, running_writer
from tests.kubeapi.handle import KubeApi
from tests.kubeapi.store import EventType
from tests.waiting import async_wait_until


def overlaps(api: KubeApi) -> list[str]:
    """Every moment in the stand-in's history at which two Services showed one address."""
    showing: dict[str, set[str]] = {}
    seen: list[str] = []
    for change in api.history("services", namespace="default"):
        name = change.obj["metadata"]["name"]
        entries: list[dict[str, Any]] = (change.obj.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        showing[name] = set() if change.type is EventType.DELETED else {e["ip"] for e in entries if "ip" in e}
        for ip in showing[name]:
            holders = sorted(other for other, ips in showing.items() if ip in ips)
            if len(holders) > 1:
                seen.append(f"{ip} shown by {' and '.join(holders)} at resourceVersion "
                            f"{change.obj['metadata']['resourceVersion']}")
    return seen


async def allocate(harness: Harness, service: ServiceId, ip: str) -> None:
    await harness.publish(ipam_allocation_subject(service.namespace, service.name),
                          IPAllocated(service=service, ips=(ip,), pool="lan", reason="test"))


async def test_the_taker_is_written_after_the_giver_even_when_its_decision_comes_first(
    bus: Bus, kube_api: KubeApi
) -> None:
    web, api = put_service(kube_api, "web"), put_service(kube_api, "api")
    async with running_writer(bus, kube_api) as harness:
        await allocate(harness, web, "10.91.1.9")
        await async_wait_until(lambda: _ips(kube_api, "web") == ["10.91.1.9"], what="web showing 10.91.1.9")
        await allocate(harness, api, "10.91.1.9")  # the taker's decision reaches the writer first
        await allocate(harness, web, "10.91.1.10")
        await async_wait_until(lambda: _ips(kube_api, "api") == ["10.91.1.9"], what="api showing 10.91.1.9")
        assert _ips(kube_api, "web") == ["10.91.1.10"]
    assert overlaps(kube_api) == []


async def test_two_services_trading_addresses_wait_for_nobody(bus: Bus, kube_api: KubeApi) -> None:
    web, api = put_service(kube_api, "web"), put_service(kube_api, "api")
    async with running_writer(bus, kube_api) as harness:
        await allocate(harness, web, "10.91.1.9")
        await allocate(harness, api, "10.91.1.10")
        await async_wait_until(lambda: _ips(kube_api, "api") == ["10.91.1.10"], what="both shown")
        await async_wait_until(lambda: _ips(kube_api, "web") == ["10.91.1.9"], what="both shown")
        await allocate(harness, web, "10.91.1.10")
        await allocate(harness, api, "10.91.1.9")
        await async_wait_until(lambda: (_ips(kube_api, "web"), _ips(kube_api, "api")) == (
            ["10.91.1.10"], ["10.91.1.9"]), what="the addresses traded")
    assert overlaps(kube_api) == []


async def test_a_taker_waiting_for_a_failing_giver_leaves_the_giver_to_its_backoff(
    bus: Bus, kube_api: KubeApi
) -> None:
    web, api = put_service(kube_api, "web"), put_service(kube_api, "api")
    async with running_writer(bus, kube_api, retry_delay=0.5, max_retry_delay=4.0) as harness:
        await allocate(harness, web, "10.91.1.9")
        await async_wait_until(lambda: _ips(kube_api, "web") == ["10.91.1.9"], what="web showing 10.91.1.9")

        def status_writes() -> int:
            return len(kube_api.requests("patch", "services", subresource="status"))

        before = status_writes()
        kube_api.fail_next("patch", "services/status", times=3)
        failing_since = time.monotonic()
        await allocate(harness, web, "10.91.1.10")
        await allocate(harness, api, "10.91.1.9")  # held until web gives 10.91.1.9 up
        await async_wait_until(lambda: status_writes() - before >= 3, what="three failed status writes", timeout=10)
        # web is tried again on its backoff (its new decision comes at once, then 0.5 s, 1 s): the held taker
        # does not hurry it along every 50 ms
        assert time.monotonic() - failing_since >= 0.9
        await async_wait_until(lambda: _ips(kube_api, "api") == ["10.91.1.9"], what="api showing 10.91.1.9",
                               timeout=10)
        assert _ips(kube_api, "web") == ["10.91.1.10"]
    assert overlaps(kube_api) == []


def _ips(api: KubeApi, name: str) -> list[str]:
    return [entry["ip"] for entry in ingress(api, name) if "ip" in entry]
