"""``watcher_main`` as the CLI runs it: two replicas on one Lease, only the leader observes and writes
status, a stop hands over to the other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from schemas.events import IPAllocated, ObjectKind
from services.common.bus import Bus, BusSettings
from services.common.health import Health
from services.common.nats_server import EmbeddedNats
from services.common.runtime import RuntimeOptions, ServiceContext
from services.common.subjects import StreamName, ipam_allocation_subject, k8s_subject
from services.watcher.kube import KubeClients
from services.watcher.leader import LeaseSettings
from services.watcher.service import chosen_status_writer, watcher_main
from services.watcher.sightings import Sightings
from tests.integration.watcher.helpers import FAST, NAMESPACE, service, wait_stored
from tests.integration.watcher.status.harness import ingress, put_service
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

#: Long enough never to expire in a test (a hand-over comes from the release), quick to retry.
LEASE = LeaseSettings(duration=60.0, renew_every=0.2, renew_deadline=40.0, retry_every=0.1, stop_grace=2.0)


@dataclass
class FakeWriter:
    """Stands in for the status writer: records when it runs and that it is told to stop."""

    running: bool = False
    runs: int = 0
    stopped_cleanly: int = 0
    namespaces: list[str] = field(default_factory=list)

    async def __call__(self, *, bus: Bus, clients: KubeClients, namespace: str, stopping: asyncio.Event,
                       sightings: Sightings) -> None:
        self.running, self.runs = True, self.runs + 1
        self.namespaces.append(namespace)
        try:
            await stopping.wait()
            self.stopped_cleanly += 1
        finally:
            self.running = False


@dataclass
class Replica:
    ctx: ServiceContext
    writer: FakeWriter
    task: asyncio.Task[None]

    @property
    def ready(self) -> bool:
        return self.ctx.health.readiness()[0]


#: A Lease short enough to expire within a test, for a leader that dies without releasing it.
SHORT = LeaseSettings(duration=3.0, renew_every=0.2, renew_deadline=2.0, retry_every=0.1, stop_grace=2.0)


@contextlib.asynccontextmanager
async def replicas(
    nats_server: EmbeddedNats, kubeconfig: Path, *names: str, lease: LeaseSettings = LEASE
) -> AsyncIterator[list[Replica]]:
    running: list[Replica] = []
    try:
        for name in names:
            bus = await Bus.connect(BusSettings(url=nats_server.url), producer=f"watcher/{name}")
            ctx = ServiceContext("watcher", name, bus, Health(), asyncio.Event(), RuntimeOptions(nats_server.url))
            writer = FakeWriter()
            main = watcher_main(kubeconfig=str(kubeconfig), namespace=NAMESPACE, lease=lease, reflectors=FAST,
                                status_writer=writer)
            running.append(Replica(ctx, writer, asyncio.create_task(main(ctx))))
        yield running
    finally:
        for replica in running:
            replica.ctx.stopping.set()
        await asyncio.gather(*(r.task for r in running), return_exceptions=True)
        for replica in running:
            await replica.ctx.bus.close()


async def test_two_replicas_one_leads_and_a_stop_hands_over(
    bus: Bus, kube_api: KubeApi, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    kube_api.put_object(service("before"))
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig")
    async with replicas(nats_server, kubeconfig, "w1", "w2") as (w1, w2):
        await async_wait_until(lambda: w1.writer.running or w2.writer.running, what="a leader")
        leader, standby = (w1, w2) if w1.writer.running else (w2, w1)
        await async_wait_until(lambda: leader.ready and standby.ready, what="both replicas ready")
        first = await bus.last_value(StreamName.K8S, k8s_subject(ObjectKind.SERVICE, "default", "before"))
        assert first is not None and first.envelope.producer == leader.ctx.producer
        assert not standby.writer.running and standby.writer.runs == 0
        assert leader.writer.namespaces == [NAMESPACE]

        leader.ctx.stopping.set()
        await leader.task
        assert leader.writer.stopped_cleanly == 1, "the status writer was not told to stop"
        await async_wait_until(lambda: standby.writer.running, timeout=5, what="the standby taking over")
        kube_api.put_object(service("after"))
        after = await wait_stored(bus, ObjectKind.SERVICE, "default", "after", lambda e: True,
                                  "a service observed by the new leader")
        assert after is not None
        value = await bus.last_value(StreamName.K8S, k8s_subject(ObjectKind.SERVICE, "default", "after"))
        assert value is not None and value.envelope.producer == standby.ctx.producer
        before = await bus.last_value(StreamName.K8S, k8s_subject(ObjectKind.SERVICE, "default", "before"))
        assert before is not None and before.sequence == first.sequence, "the new leader republished"


async def test_when_the_leader_dies_the_standby_takes_over_once_the_lease_expires(
    bus: Bus, kube_api: KubeApi, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig")
    async with replicas(nats_server, kubeconfig, "w1", "w2", lease=SHORT) as (w1, w2):
        await async_wait_until(lambda: w1.writer.running or w2.writer.running, what="a leader")
        leader, standby = (w1, w2) if w1.writer.running else (w2, w1)
        leader.task.cancel()  # gone without a graceful stop: the Lease stays taken until it expires
        await asyncio.gather(leader.task, return_exceptions=True)
        kube_api.put_object(service("while-nobody-leads"))
        await async_wait_until(lambda: standby.writer.running, timeout=15, what="the standby taking over")
        value = await wait_stored(bus, ObjectKind.SERVICE, "default", "while-nobody-leads", lambda e: True,
                                  "the change made while nobody led")
        assert value is not None
        stored_value = await bus.last_value(
            StreamName.K8S, k8s_subject(ObjectKind.SERVICE, "default", "while-nobody-leads"))
        assert stored_value is not None and stored_value.envelope.producer == standby.ctx.producer


async def test_the_real_status_writer_is_found() -> None:
    writer = chosen_status_writer(True)
    assert writer is not None and callable(writer)
    assert chosen_status_writer(False) is None


async def test_with_the_real_status_writer_it_becomes_ready_and_stops_cleanly(
    bus: Bus, kube_api: KubeApi, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig")
    ctx = ServiceContext("watcher", "solo", bus, Health(), asyncio.Event(), RuntimeOptions(nats_server.url))
    main = watcher_main(kubeconfig=str(kubeconfig), namespace=NAMESPACE, lease=LEASE, reflectors=FAST)
    task = asyncio.create_task(main(ctx))
    try:
        await async_wait_until(lambda: kube_api.get_object("leases", "metalbus-watcher", NAMESPACE) is not None,
                               what="the Lease taken")
        await async_wait_until(lambda: ctx.health.readiness()[0], what="ready after the initial lists")
        assert not task.done()
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)
    lease = kube_api.get_object("leases", "metalbus-watcher", NAMESPACE)
    assert lease is not None and not lease["spec"].get("holderIdentity"), "the Lease was not released"


async def test_the_leader_puts_back_a_status_someone_else_wrote(
    bus: Bus, kube_api: KubeApi, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    """The observe side tells the status writer of its term what it reads (the wiring of a leadership term)."""
    web = put_service(kube_api, "web")
    await bus.publish(ipam_allocation_subject("default", "web"), IPAllocated(
        service=web, ips=("192.168.10.5",), pool="lan", reason="r"))
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig")
    ctx = ServiceContext("watcher", "solo", bus, Health(), asyncio.Event(), RuntimeOptions(nats_server.url))
    task = asyncio.create_task(watcher_main(kubeconfig=str(kubeconfig), namespace=NAMESPACE, lease=LEASE,
                                            reflectors=FAST)(ctx))
    try:
        shown = [{"ip": "192.168.10.5", "ipMode": "VIP"}]
        await async_wait_until(lambda: ingress(kube_api, "web") == shown, what="the allocation shown")
        current = kube_api.get_object("services", "web", "default") or {}
        current["status"] = {"loadBalancer": {"ingress": [{"hostname": "elsewhere.example"}]}}
        kube_api.put_object(current)
        await async_wait_until(lambda: ingress(kube_api, "web") == shown, what="put back by the leader")
    finally:
        ctx.stopping.set()
        await asyncio.wait_for(task, 10)
