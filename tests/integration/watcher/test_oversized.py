"""A Service larger than the bus takes (3 500 labels, 1.3 MB, which Kubernetes accepts): the watcher names it
in a Warning Event, a log line and a metric, skips it, and every other Service goes on — no relist loop,
nothing after it in the list held back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from schemas.events import ObjectKind
from services.common.bus import Bus, BusSettings
from services.common.health import Health
from services.common.nats_server import EmbeddedNats
from services.common.runtime import RuntimeOptions, ServiceContext
from services.common.subjects import k8s_subject
from services.watcher.leader import LeaseSettings
from services.watcher.observe import metrics
from services.watcher.service import watcher_main
from tests.integration.watcher.helpers import FAST, NAMESPACE, service, stored
from tests.integration.watcher.status.harness import events
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

LEASE = LeaseSettings(duration=60.0, renew_every=0.2, renew_deadline=40.0, retry_every=0.1, stop_grace=2.0)

def huge_service(name: str) -> dict[str, Any]:
    obj = service(name)
    obj["metadata"]["labels"] = {f"tenant.example.com/label-{i:05d}": "v" * 360 for i in range(3500)}
    return obj

@contextlib.asynccontextmanager
async def leading_watcher(nats_server: EmbeddedNats, kubeconfig: Path) -> AsyncIterator[None]:
    bus = await Bus.connect(BusSettings(url=nats_server.url), producer="watcher/w1")
    ctx = ServiceContext("watcher", "w1", bus, Health(), asyncio.Event(), RuntimeOptions(nats_server.url))
    main = watcher_main(kubeconfig=str(kubeconfig), namespace=NAMESPACE, lease=LEASE, reflectors=FAST,
                        status_writer=False)
    task = asyncio.create_task(main(ctx))
    try:
        yield
    finally:
        ctx.stopping.set()
        await asyncio.gather(task, return_exceptions=True)
        await bus.close()

async def test_an_object_too_large_for_the_bus_is_named_and_skipped_and_the_rest_go_on(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    names = [f"svc-{i:02d}" for i in range(20)]
    for name in names[:10]:
        kube_api.put_object(service(name))
    kube_api.put_object(huge_service("svc-10-huge"))  # sorts among the others
    for name in names[10:]:
        kube_api.put_object(service(name))
    oversized_before = metrics.OVERSIZED.labels("Service")._value.get()
    relists_before = metrics.RELISTS.labels(ObjectKind.SERVICE.value, "error")._value.get()
    caplog.set_level(logging.WARNING)
    async with leading_watcher(nats_server, kube_api.kubeconfig(tmp_path / "kubeconfig")):

        async def all_stored(expected: list[str]) -> bool:
            held = await stored(bus, ObjectKind.SERVICE)
            return all(k8s_subject(ObjectKind.SERVICE, "default", n) in held for n in expected)

        await async_wait_until(lambda: all_stored(names), timeout=30, what="every ordinary Service published")
        await async_wait_until(lambda: bool(events(kube_api, "default", reason="ObjectTooLarge")), timeout=10,
                               what="a Warning Event about the huge Service")
        [warning] = events(kube_api, "default", reason="ObjectTooLarge")
        assert warning["type"] == "Warning" and warning["involvedObject"]["name"] == "svc-10-huge"
        assert "svc-10-huge" in warning["message"] and "bytes" in warning["message"]
        late = [f"late-{i}" for i in range(5)]
        for name in late:
            kube_api.put_object(service(name))
        await async_wait_until(lambda: all_stored(late), timeout=30, what="Services created after it published")
        assert k8s_subject(ObjectKind.SERVICE, "default", "svc-10-huge") not in await stored(bus, ObjectKind.SERVICE)
    assert metrics.OVERSIZED.labels("Service")._value.get() == oversized_before + 1
    assert metrics.RELISTS.labels(ObjectKind.SERVICE.value, "error")._value.get() == relists_before, "a relist loop"
    assert any("svc-10-huge" in r.getMessage() and "too large" in r.getMessage() for r in caplog.records)
