"""Lose what NATS keeps, and no Service's address changes.

Each story runs metalbus on a cluster until every Service shows its address, stops it, loses NATS state while
the cluster moves on (a Service is made, one deleted), and starts metalbus again on what is left: the
``K8S`` stream alone (a lost volume, a stream made anew), or every stream (the whole NATS store), or restores an
older backup into a new NATS. The Service
made meanwhile sorts first, so that deciding on a world listed in part, or deciding it in the wrong order,
would hand it an address another Service shows."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from schemas.events import IPReleased
from services.common.backup import back_up, restore
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


async def _delete_every_stream(bus: Bus) -> None:
    for info in await bus.js.streams_info():
        await bus.js.delete_stream(info.config.name)


async def _lose_everything(bus: Bus) -> None:
    await _delete_every_stream(bus)
    await provision(bus)


@contextlib.asynccontextmanager
async def started_again(bus: Bus, nats_server: EmbeddedNats, api: KubeApi) -> AsyncIterator[Cluster]:
    """metalbus started again on what is left, ipam first and active before the watcher lists anything (it must
    wait for the lists rather than decide); entered once the Service made meanwhile, aaa-new, shows an address."""
    async with replica(nats_server.url, "again") as ipam:
        await async_wait_until(ipam.replica.activated.is_set, what="ipam active on what is left")
        sightings = Sightings()
        async with observing(bus, api, sightings=sightings), running_writer(bus, api, sightings=sightings):
            cluster = Cluster(api, writer=None)  # type: ignore[arg-type]
            await async_wait_until(lambda: len(cluster.ips("aaa-new")) == 1, timeout=20,
                                   what="the new Service shown")
            yield cluster


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
    async with started_again(bus, nats_server, api) as cluster:
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


async def test_restoring_an_older_backup_into_a_new_nats_changes_no_address(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi, tmp_path: Path
) -> None:
    """The backup predates a Service that got an address since: restored, the log does not know it, and the
    restored lists are marked begun, so that Service keeps what its status shows rather than a Service made
    after the restore (listed before it) taking it."""
    objects = (pool("lan", "192.168.10.0/29"), *(service(name, port=80 + i) for i, name in enumerate(SERVICES)))
    async with running_metalbus(bus, nats_server, kube_api, *objects) as cluster:
        for name in SERVICES:
            await async_wait_until(lambda n=name: len(cluster.ips(n)) == 1, timeout=15, what=f"{name} shown")
        held = await back_up(bus, tmp_path / "backup")
        assert held[StreamName.IPAM.value] > 0 and held[StreamName.K8S.value] > 0
        kube_api.put_object(service("late", port=95))  # after the backup: its decision is not in it
        await async_wait_until(lambda: len(cluster.ips("late")) == 1, timeout=15, what="late shown")
        shown = {name: cluster.ips(name) for name in (*SERVICES, "late")}
    await _delete_every_stream(bus)  # a new NATS
    restored = await restore(bus, tmp_path / "backup")
    assert restored[StreamName.IPAM.value] == held[StreamName.IPAM.value]  # every decision, none since
    kube_api.put_object(service("aaa-new", port=90))
    async with started_again(bus, nats_server, kube_api) as cluster:
        assert {name: cluster.ips(name) for name in shown} == shown, "an address changed"
        assert cluster.ips("aaa-new")[0] not in {ip for ips in shown.values() for ip in ips}
