"""IPAM decisions shown on Services: ingress, pool annotation and Events; conflicts; replay on start."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schemas.events import AllocationFailed, AllocationFailureReason, IPAllocated, IPReleased, ReleaseReason
from services.common.bus import Bus
from services.common.subjects import ipam_allocation_subject
from services.common.tracing import setup_tracing
from services.watcher.annotations import DEPRECATED_POOL_ANNOTATION, POOL_ANNOTATION
from services.watcher.kube import KubeClients
from services.watcher.status import StatusWriterSettings, metrics, resync, run_status_writer
from tests.integration.watcher.status.harness import (
    events,
    ingress,
    put_service,
    running_writer,
    service_annotations,
    without_status_durables,
)
from tests.kubeapi.handle import KubeApi
from tests.waiting import async_wait_until


async def test_allocation_sets_ingress_annotation_and_event(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web", annotations={DEPRECATED_POOL_ANNOTATION: "old"})
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
            service=web, ips=("192.168.10.5",), pool="lan", reason="lowest free address"))
        await async_wait_until(lambda: ingress(kube_api, "web") == [{"ip": "192.168.10.5", "ipMode": "VIP"}],
                               what="ingress written")
        await async_wait_until(lambda: service_annotations(kube_api, "web").get(POOL_ANNOTATION) == "lan",
                               what="pool annotation")
        assert DEPRECATED_POOL_ANNOTATION not in service_annotations(kube_api, "web")
        # the annotations went with the status, in one write: one change of the Service to watch, not two
        assert len(kube_api.requests("patch", "services", subresource="status")) == 1
        assert [r for r in kube_api.requests("patch", "services") if r.subresource is None] == []
        await async_wait_until(lambda: bool(events(kube_api, "default", reason="IPAllocated")), what="event")
        [event] = events(kube_api, "default", reason="IPAllocated")
        assert event["type"] == "Normal"
        assert event["message"] == 'Assigned IP ["192.168.10.5"]'
        assert event["involvedObject"]["uid"] == web.uid
        assert event["involvedObject"]["kind"] == "Service"
        assert event["reportingComponent"] == "metalbus"


async def test_failure_is_a_warning_with_the_message(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(ipam_allocation_subject("default", "web"), AllocationFailed(
            service=web, reason=AllocationFailureReason.NO_AVAILABLE_IP, message="no available IPs in pool \"lan\""))
        await async_wait_until(lambda: bool(events(kube_api, "default", reason="AllocationFailed")),
                               what="AllocationFailed event")
        [event] = events(kube_api, "default", reason="AllocationFailed")
        assert event["type"] == "Warning"
        assert event["message"] == 'Failed to allocate IP for "default/web": no available IPs in pool "lan"'
        assert ingress(kube_api, "web") == []


async def test_release_removes_ingress_and_annotation(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    subject = ipam_allocation_subject("default", "web")
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(subject, IPAllocated(service=web, ips=("10.0.0.7", "fd00::7"), pool="lan",
                                                   reason="dual stack"))
        await async_wait_until(lambda: len(ingress(kube_api, "web")) == 2, what="both IPs shown")
        await harness.publish(subject, IPReleased(service=web, ips=("10.0.0.7", "fd00::7"),
                                                  reason=ReleaseReason.NOT_LOAD_BALANCER,
                                                  message="type changed to ClusterIP"))
        await async_wait_until(lambda: ingress(kube_api, "web") == [], what="ingress removed")
        await async_wait_until(lambda: POOL_ANNOTATION not in service_annotations(kube_api, "web"),
                               what="annotation removed")
        await async_wait_until(lambda: bool(events(kube_api, "default", reason="ClearAssignment")),
                               what="ClearAssignment event")
        [event] = events(kube_api, "default", reason="ClearAssignment")
        assert "10.0.0.7" in event["message"] and "type changed to ClusterIP" in event["message"]
        obj = kube_api.get_object("services", "web", "default") or {}
        assert "ingress" not in obj.get("status", {}).get("loadBalancer", {})


async def test_conflict_is_read_again_and_the_write_lands(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    conflicts_before = metrics.CONFLICTS.labels("Service")._value.get()
    kube_api.fail_next("patch", "services/status", 409)
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
            service=web, ips=("10.0.0.9",), pool="lan", reason="r"))
        # someone else changes the Service meanwhile (its labels): that change must survive ours
        current = kube_api.get_object("services", "web", "default") or {}
        current["metadata"].setdefault("labels", {})["team"] = "blue"
        kube_api.put_object(current)
        await async_wait_until(lambda: ingress(kube_api, "web") == [{"ip": "10.0.0.9", "ipMode": "VIP"}],
                               what="ingress written after the conflict")
        await async_wait_until(lambda: service_annotations(kube_api, "web").get(POOL_ANNOTATION) == "lan",
                               what="annotation written after the conflict")
    obj = kube_api.get_object("services", "web", "default") or {}
    assert obj["metadata"]["labels"]["team"] == "blue"
    assert metrics.CONFLICTS.labels("Service")._value.get() >= conflicts_before + 1


async def test_server_errors_are_retried(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    kube_api.fail_next("patch", "services/status", 503, times=2)
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
            service=web, ips=("10.0.0.11",), pool="lan", reason="r"))
        await async_wait_until(lambda: len(ingress(kube_api, "web")) == 1, what="ingress after 503s")


async def test_a_missing_service_is_dropped_quietly(bus: Bus, kube_api: KubeApi) -> None:
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(ipam_allocation_subject("default", "ghost"), IPAllocated(
            service=put_service(kube_api, "ghost"), ips=("10.0.0.12",), pool="lan", reason="r"))
        kube_api.delete_object("services", "ghost", "default")
        web = put_service(kube_api, "web")
        await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
            service=web, ips=("10.0.0.13",), pool="lan", reason="r"))
        await async_wait_until(lambda: len(ingress(kube_api, "web")) == 1, what="later writes still made")
        assert kube_api.get_object("services", "ghost", "default") is None


async def test_deprecated_annotation_is_reported(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web", annotations={"metallb.universe.tf/address-pool": "lan"})
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
            service=web, ips=("10.0.0.14",), pool="lan", reason="r",
            deprecated_annotations=("metallb.universe.tf/address-pool",)))
        await async_wait_until(lambda: bool(events(kube_api, "default", reason="deprecatedAnnotation")),
                               what="deprecatedAnnotation event")
        [event] = events(kube_api, "default", reason="deprecatedAnnotation")
        assert event["type"] == "Warning"
        assert event["message"] == "Service uses deprecated annotation metallb.universe.tf/address-pool"
        # reported, not removed: the user's annotation still asks for the pool
        assert service_annotations(kube_api, "web")["metallb.universe.tf/address-pool"] == "lan"


async def test_identical_events_are_aggregated(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    failed = AllocationFailed(service=web, reason=AllocationFailureReason.NO_AVAILABLE_IP, message="pool lan is full")
    async with running_writer(bus, kube_api) as harness:
        for _ in range(3):
            await harness.publish(ipam_allocation_subject("default", "web"), failed)
        await async_wait_until(
            lambda: [e.get("count") for e in events(kube_api, "default", reason="AllocationFailed")] == [3],
            what="one Event counted three times")


async def test_state_is_rebuilt_on_start_and_missed_changes_follow(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    api_ = put_service(kube_api, "api")
    await without_status_durables(bus)
    await bus.publish(ipam_allocation_subject("default", "web"), IPAllocated(
        service=web, ips=("10.0.0.20",), pool="lan", reason="before the first start"))
    async with running_writer(bus, kube_api):
        await async_wait_until(lambda: len(ingress(kube_api, "web")) == 1, what="status from the rebuild")
    assert events(kube_api, "default", reason="IPAllocated") == []  # a rebuild tells nothing anew

    # while no writer runs: web is released, api allocated
    await bus.publish(ipam_allocation_subject("default", "web"), IPReleased(
        service=web, ips=("10.0.0.20",), reason=ReleaseReason.REPLACED))
    await bus.publish(ipam_allocation_subject("default", "api"), IPAllocated(
        service=api_, ips=("10.0.0.21",), pool="lan", reason="r"))
    async with running_writer(bus, kube_api):
        await async_wait_until(lambda: ingress(kube_api, "web") == [], what="release made while down")
        await async_wait_until(lambda: len(ingress(kube_api, "api")) == 1, what="allocation made while down")
        await async_wait_until(lambda: bool(events(kube_api, "default", reason="ClearAssignment"))
                               and bool(events(kube_api, "default", reason="IPAllocated", name="api")),
                               what="the missed Events")


async def test_stops_promptly(bus: Bus, kube_api: KubeApi) -> None:
    async with running_writer(bus, kube_api) as harness:
        loop = asyncio.get_running_loop()
        started = loop.time()
        harness.stopping.set()
        await asyncio.wait_for(asyncio.shield(harness.task), timeout=3)
        assert loop.time() - started < 3


async def test_writes_are_skipped_when_the_object_already_shows_the_state(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    subject = ipam_allocation_subject("default", "web")
    lag_before = metrics.WRITE_LAG.labels("Service")._sum.get()
    async with running_writer(bus, kube_api) as harness:
        await harness.publish(subject, IPAllocated(service=web, ips=("10.0.0.30",), pool="lan", reason="r"))
        await async_wait_until(lambda: service_annotations(kube_api, "web").get(POOL_ANNOTATION) == "lan",
                               what="first write")
        writes = len(kube_api.history("services", name="web", namespace="default"))
        skipped = metrics.SKIPPED.labels("Service")._value.get()
        # re-adopted by a restarted ipam: the same decision again
        await harness.publish(subject, IPAllocated(service=web, ips=("10.0.0.30",), pool="lan", reason="again"))
        await async_wait_until(lambda: metrics.SKIPPED.labels("Service")._value.get() > skipped,
                               what="the no-op noticed")
        assert len(kube_api.history("services", name="web", namespace="default")) == writes
    assert metrics.WRITE_LAG.labels("Service")._sum.get() > lag_before


async def test_run_status_writer_rebuilds_follows_and_stops(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    api_ = put_service(kube_api, "api")
    await bus.publish(ipam_allocation_subject("default", "web"), IPAllocated(
        service=web, ips=("10.0.0.40",), pool="lan", reason="r"))
    clients = KubeClients.from_api_client(kube_api.api_client())
    stopping = asyncio.Event()
    task = asyncio.create_task(run_status_writer(bus=bus, clients=clients, namespace="metallb-system",
                                                 stopping=stopping))
    try:
        await async_wait_until(lambda: len(ingress(kube_api, "web")) == 1, what="status from the rebuild")
        await bus.publish(ipam_allocation_subject("default", "api"), IPAllocated(
            service=api_, ips=("10.0.0.41",), pool="lan", reason="r"))
        await async_wait_until(lambda: len(ingress(kube_api, "api")) == 1, what="status from the stream")
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=3)
        clients.close()


async def test_an_unreachable_api_at_start_is_retried_and_stopping_still_works(
    bus: Bus, kube_api: KubeApi, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.fail_next("list", "servicel2statuses", 503, times=1000)
    clients = KubeClients.from_api_client(kube_api.api_client())
    stopping = asyncio.Event()
    settings = StatusWriterSettings(retry_delay=0.05, max_retry_delay=0.1)
    task = asyncio.create_task(run_status_writer(bus=bus, clients=clients, namespace="metallb-system",
                                                 stopping=stopping, settings=settings))
    try:
        await async_wait_until(
            lambda: sum("status writer start failed" in r.getMessage() for r in caplog.records) >= 2,
            what="start retried")
        assert not task.done()
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=3)
        clients.close()


async def test_the_write_joins_the_decision_trace(bus: Bus, kube_api: KubeApi) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("metalbus-test", extra_processor=SimpleSpanProcessor(exporter))
    web = put_service(kube_api, "web")
    async with running_writer(bus, kube_api) as harness:
        with trace.get_tracer("test").start_as_current_span("decide") as decide:
            await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
                service=web, ips=("10.0.0.50",), pool="lan", reason="r"))
        trace_id = decide.get_span_context().trace_id
        await async_wait_until(
            lambda: any(span.name == "write Service" and span.context.trace_id == trace_id
                        for span in exporter.get_finished_spans()),
            what="a write span in the decision's trace")


async def test_many_known_services_are_compared_from_one_list(
    bus: Bus, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resync, "READ_EACH_UP_TO", 0)  # as if there were thousands
    await without_status_durables(bus)
    shown = put_service(kube_api, "shown")
    missing = put_service(kube_api, "missing")
    for service, ip in ((shown, "10.0.0.60"), (missing, "10.0.0.61")):
        await bus.publish(ipam_allocation_subject("default", service.name), IPAllocated(
            service=service, ips=(ip,), pool="lan", reason="r"))
    current = kube_api.get_object("services", "shown", "default") or {}
    current["metadata"]["annotations"] = {POOL_ANNOTATION: "lan"}
    current["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.60", "ipMode": "VIP"}]}}
    kube_api.put_object(current)
    changes_of_shown = len(kube_api.history("services", name="shown", namespace="default"))
    skipped = metrics.SKIPPED.labels("Service")._value.get()
    async with running_writer(bus, kube_api):
        await async_wait_until(lambda: len(ingress(kube_api, "missing")) == 1, what="the missing one written")
    assert len(kube_api.history("services", name="shown", namespace="default")) == changes_of_shown
    assert metrics.SKIPPED.labels("Service")._value.get() == skipped  # "shown" was not even read again
