"""An API server that answers 429 Too Many Requests: the status writer slows down as a whole, honours
Retry-After, and still writes every status — without a storm of refused requests."""

from __future__ import annotations

from schemas.events import IPAllocated
from services.common.bus import Bus
from services.common.subjects import ipam_allocation_subject
from services.watcher.status import metrics
from tests.integration.watcher.status.harness import events, ingress, put_service, running_writer
from tests.kubeapi.handle import KubeApi
from tests.waiting import async_wait_until

SERVICES = 20


def _throttled() -> float:
    return sum(s.value for m in metrics.THROTTLED.collect() for s in m.samples if s.name.endswith("_total"))


async def test_a_throttling_api_server_slows_the_writer_down_and_every_status_is_written(
    bus: Bus, kube_api: KubeApi
) -> None:
    services = [put_service(kube_api, f"web-{index}") for index in range(SERVICES)]
    # a second's worth of writes saved: every burst past it is refused with Retry-After: 1
    limit = kube_api.limit_writes(20.0, burst=20, retry_after=1)
    assert limit is not None
    throttled_before = _throttled()
    async with running_writer(bus, kube_api, workers=8) as harness:
        for index, service in enumerate(services):
            await harness.publish(ipam_allocation_subject("default", service.name), IPAllocated(
                service=service, ips=(f"10.0.1.{index + 1}",), pool="lan", reason="r"))
        await async_wait_until(
            lambda: all(len(ingress(kube_api, s.name)) == 1 for s in services), timeout=60,
            what="every Service's ingress, through the 429s",
        )
        # an Event refused is recorded after the pause, not dropped: one IPAllocated per Service
        await async_wait_until(lambda: len(events(kube_api, "default", reason="IPAllocated")) == SERVICES,
                               timeout=60, what="every Service's IPAllocated Event, through the 429s")
        pacing = harness.writer.gate.pacing
    refused = [r for r in kube_api.requests() if r.code == 429]
    assert limit.refused == len(refused) > 0  # the server did push back...
    assert pacing.pauses >= 1 and _throttled() > throttled_before  # ...and the writer heard it
    # no storm: a pause stops every write, so a pause is only ever refused what was already in flight
    assert limit.refused <= pacing.pauses * 8
    assert pacing.refusals == limit.refused
