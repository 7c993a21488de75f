"""A Service the writer has seen is written without a read first; a stale view costs a 409 and a read."""

from __future__ import annotations

from schemas.events import IPAllocated, ObjectKind
from services.common.bus import Bus
from services.common.subjects import ipam_allocation_subject
from services.watcher.annotations import POOL_ANNOTATION
from services.watcher.status import metrics
from services.watcher.status.desired import service_key
from tests.integration.watcher.status.harness import (
    events,
    ingress,
    put_service,
    running_writer,
    service_annotations,
)
from tests.kubeapi.handle import KubeApi
from tests.waiting import async_wait_until


def _reads() -> float:
    return float(metrics.READS.labels("Service")._value.get())


async def test_a_seen_service_is_written_without_a_read_and_gets_one_event_per_change(
    bus: Bus, kube_api: KubeApi
) -> None:
    web = put_service(kube_api, "web")
    subject = ipam_allocation_subject("default", "web")
    async with running_writer(bus, kube_api) as harness:
        harness.writer.seen(ObjectKind.SERVICE, kube_api.get_object("services", "web", "default") or {})
        reads = _reads()
        await harness.publish(subject, IPAllocated(service=web, ips=("10.0.1.1",), pool="lan", reason="r"))
        await async_wait_until(lambda: service_annotations(kube_api, "web").get(POOL_ANNOTATION) == "lan",
                               what="status and annotation written")
        await async_wait_until(lambda: len(events(kube_api, "default", reason="IPAllocated")) == 1,
                               what="its Event")
        await harness.publish(subject, IPAllocated(service=web, ips=("10.0.1.2",), pool="lan", reason="moved"))
        await async_wait_until(lambda: ingress(kube_api, "web") == [{"ip": "10.0.1.2", "ipMode": "VIP"}],
                               what="the new address written")
        await async_wait_until(lambda: len(events(kube_api, "default", reason="IPAllocated")) == 2,
                               what="an Event for the change")
        assert _reads() == reads  # each write worked from what the writer had seen or written itself
    assert ingress(kube_api, "web") == [{"ip": "10.0.1.2", "ipMode": "VIP"}]
    assert len(events(kube_api, "default", reason="IPAllocated")) == 2


async def test_a_service_changed_since_it_was_seen_is_read_again_and_written(bus: Bus, kube_api: KubeApi) -> None:
    web = put_service(kube_api, "web")
    async with running_writer(bus, kube_api) as harness:
        harness.writer.seen(ObjectKind.SERVICE, kube_api.get_object("services", "web", "default") or {})
        # someone else changes the Service, and the writer is not told: what it saw is stale
        current = kube_api.get_object("services", "web", "default") or {}
        current["metadata"].setdefault("labels", {})["team"] = "blue"
        kube_api.put_object(current)
        conflicts, reads = metrics.CONFLICTS.labels("Service")._value.get(), _reads()
        await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
            service=web, ips=("10.0.1.3",), pool="lan", reason="r"))
        await async_wait_until(lambda: service_annotations(kube_api, "web").get(POOL_ANNOTATION) == "lan",
                               what="written after the conflict")
        assert ingress(kube_api, "web") == [{"ip": "10.0.1.3", "ipMode": "VIP"}]
        assert metrics.CONFLICTS.labels("Service")._value.get() == conflicts + 1
        assert _reads() == reads + 1
    obj = kube_api.get_object("services", "web", "default") or {}
    assert obj["metadata"]["labels"]["team"] == "blue"  # the other change survives ours
    assert len(events(kube_api, "default", reason="IPAllocated")) == 1


async def test_a_sighting_older_than_the_writers_own_write_is_not_put_back(bus: Bus, kube_api: KubeApi) -> None:
    """The observe side reads each version a write makes (the status patch, then the annotation's): one older
    than the answer the writer already holds is not judged, so its own writes queue nothing again."""
    web = put_service(kube_api, "web")
    async with running_writer(bus, kube_api) as harness:
        before_writes = kube_api.get_object("services", "web", "default") or {}
        harness.writer.seen(ObjectKind.SERVICE, before_writes)
        await harness.publish(ipam_allocation_subject("default", "web"), IPAllocated(
            service=web, ips=("10.0.1.4",), pool="lan", reason="r"))
        await async_wait_until(lambda: service_annotations(kube_api, "web").get(POOL_ANNOTATION) == "lan",
                               what="status and annotation written")
        put_back = metrics.PUT_BACK.labels("Service")._value.get()
        harness.writer.seen(ObjectKind.SERVICE, before_writes)  # late: the version before the writes
        assert not harness.writer.queue.waiting(service_key("default", "web"))
        assert metrics.PUT_BACK.labels("Service")._value.get() == put_back
        newer = kube_api.get_object("services", "web", "default") or {}
        newer["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}}
        harness.writer.seen(ObjectKind.SERVICE, kube_api.put_object(newer))  # someone else's, newer: put back
        await async_wait_until(lambda: ingress(kube_api, "web") == [{"ip": "10.0.1.4", "ipMode": "VIP"}],
                               what="the status put back")
        assert metrics.PUT_BACK.labels("Service")._value.get() == put_back + 1
