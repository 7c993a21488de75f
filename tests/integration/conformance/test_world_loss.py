"""Lose what NATS keeps, and no Service's address changes.

Each story runs metalbus on a cluster until every Service shows its address, stops it, loses NATS state while
the cluster moves on (a Service is made, one deleted), and starts metalbus again on what is left: the
``K8S`` stream alone (a lost volume, a stream made anew), or every stream (the whole NATS store). The Service
made meanwhile sorts first, so that deciding on a world listed in part, or deciding it in the wrong order,
would hand it an address another Service shows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from schemas.events import IPReleased
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import StreamName
from services.watcher.sightings import Sightings
from tests.integration.conformance.harness import Cluster, pool, running_metalbus, service
from tests.integration.ipam.test_ipam_service import replica
from tests.integration.watcher.helpers import observing
from tests.integration.watcher.status.harness import running_writer
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

SERVICES = ("web", "db", "cache", "queue")


async def _lose_k8s(bus: Bus) -> None:
    await bus.js.delete_stream(StreamName.K8S.value)
    await provision(bus)


async def _lose_everything(bus: Bus) -> None:
    for info in await bus.js.streams_info():
        await bus.js.delete_stream(info.config.name)
    await provision(bus)


async def _released_after(bus: Bus, sequence: int) -> list[str]:
    decisions = bus.read(StreamName.IPAM, start_sequence=sequence + 1)
    return [f"{r.event.service.name} {r.event.reason}" async for r in decisions if isinstance(r.event, IPReleased)]


async def _story(bus: Bus, nats_server: EmbeddedNats, api: KubeApi, lose: Callable[[Bus], Awaitable[None]]) -> None:
    objects = (pool("lan", "192.168.10.0/29"), *(service(name, port=80 + i) for i, name in enumerate(SERVICES)))
    async with running_metalbus(bus, nats_server, api, *objects) as cluster:
        for name in SERVICES:
            await async_wait_until(lambda n=name: len(cluster.ips(n)) == 1, timeout=15, what=f"{name} shown")
        shown = {name: cluster.ips(name) for name in SERVICES}
    await lose(bus)
    api.delete_object("services", "queue", "default")  # deleted while NATS had lost it
    api.put_object(service("aaa-new", port=90))  # made meanwhile: decided after every shown address is kept
    before = await bus.last_sequence(StreamName.IPAM)
    # ipam first, active before the watcher lists anything: it must wait for the lists rather than decide
    async with replica(nats_server.url, "again") as ipam:
        await async_wait_until(ipam.replica.activated.is_set, what="ipam active on what is left")
        sightings = Sightings()
        async with observing(bus, api, sightings=sightings), running_writer(bus, api, sightings=sightings):
            cluster = Cluster(api, writer=None)  # type: ignore[arg-type]
            await async_wait_until(lambda: len(cluster.ips("aaa-new")) == 1, timeout=20,
                                   what="the new Service shown")
            kept = {name: cluster.ips(name) for name in SERVICES if name != "queue"}
            assert kept == {name: ips for name, ips in shown.items() if name != "queue"}, "an address changed"
            assert cluster.ips("aaa-new") == shown["queue"]  # the only one freed
    assert [line for line in await _released_after(bus, before) if not line.startswith("queue ")] == []


async def test_losing_the_k8s_stream_changes_no_address(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    await _story(bus, nats_server, kube_api, _lose_k8s)


async def test_losing_the_whole_nats_store_changes_no_address(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    await _story(bus, nats_server, kube_api, _lose_everything)
