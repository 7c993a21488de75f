"""Losing a server of the production overlay's NATS cluster (three TLS servers, streams at three replicas):
a component carries on through the others, with its own credential, whether it was given one server (as
the manifests give the Service's name: the others are learned from the cluster) or all of them; a stream
followed live goes on from where it was, whichever server held its consumer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import NodeObserved, ObjectRef
from services.common.bus import Bus, BusSettings
from services.common.errors import RetryableError
from services.common.follower import Follower
from services.common.health import Health
from services.common.permissions import BusUser
from services.common.subjects import StreamName, observed_subject
from tests.security.shipped import ShippedCluster, shipped_cluster
from tests.waiting import async_wait_until


@pytest.fixture
def production(tmp_path: Path) -> Iterator[ShippedCluster]:
    with shipped_cluster("prod", tmp_path / "nats", startup_timeout=60) as cluster:
        yield cluster


async def connect(cluster: ShippedCluster, user: BusUser, *servers: int) -> Bus:
    url = ",".join(cluster.credentials.url(cluster.servers[index].url, user) for index in servers)
    return await Bus.connect(BusSettings(url=url, tls_ca_file=cluster.ca_file, initial_attempts=3),
                             producer=f"{user.value}/test")


async def observed(bus: Bus, node: str) -> bool:
    """Publish ``node``'s observation; False while the cluster cannot take it (a leader being elected)."""
    event = NodeObserved(ref=ObjectRef(name=node, uid=node, resource_version="1"))
    try:
        await bus.publish(observed_subject(event), event)
    except RetryableError:
        return False
    return True


async def k8s_nodes(cluster: ShippedCluster, server: int) -> list[str]:
    async with await connect(cluster, BusUser.IPAM, server) as reader:
        return [received.subject async for received in reader.read(StreamName.K8S)]


async def reads(cluster: ShippedCluster, server: int, expected: list[str]) -> bool:
    """Whether a read through ``server`` gives ``expected``; False while the stream cannot answer yet (its
    leader lost with the killed server, a new one being elected)."""
    try:
        return await k8s_nodes(cluster, server) == expected
    except RetryableError:
        return False


async def test_a_component_given_one_server_carries_on_through_those_it_learned(production: ShippedCluster) -> None:
    async with await connect(production, BusUser.WATCHER, 0) as watcher:
        assert await observed(watcher, "node-a")
        production.kill(production.servers[0])
        await async_wait_until(lambda: observed(watcher, "node-b"), timeout=20,
                               what="a publish through a server learned from the cluster")
    await async_wait_until(lambda: reads(production, 1, ["k8s.node._.node-a", "k8s.node._.node-b"]), timeout=20,
                           what="both observations read back through another server")


async def test_a_component_given_every_server_starts_while_one_is_down_and_it_comes_back(
    production: ShippedCluster,
) -> None:
    production.kill(production.servers[0])
    async with await connect(production, BusUser.WATCHER, 0, 1, 2) as watcher:
        await async_wait_until(lambda: observed(watcher, "node-a"), timeout=20, what="a publish with a server down")
    production.restart(production.servers[0])
    await async_wait_until(lambda: reads(production, 0, ["k8s.node._.node-a"]), timeout=20,
                           what="the observation read back through the restarted server")


async def test_a_follower_whose_consumer_was_on_the_killed_server_follows_on_through_another(
    production: ShippedCluster,
) -> None:
    """The ipam's way of following ``K8S``: its consumer lives on one server (often not the one it is
    connected to), so losing that server may leave the connection untouched and the consumer gone."""
    health = Health()
    health.set_ready("starting", True)
    async with await connect(production, BusUser.WATCHER, 0, 1, 2) as watcher, \
            await connect(production, BusUser.IPAM, 0, 1, 2) as ipam:
        assert await observed(watcher, "node-a")
        follower = Follower(ipam, StreamName.K8S, start_sequence=1, health=health)
        seen: list[str] = []

        async def follows(count: int) -> bool:
            seen.extend(received.subject for received in await follower.fetch(wait=0.1))
            return len(seen) >= count

        try:
            await async_wait_until(lambda: follows(1), timeout=10, what="the first observation")
            assert follower.consumer is not None
            info = await ipam.js.consumer_info(StreamName.K8S.value, follower.consumer)
            assert info.cluster is not None and info.cluster.leader
            production.kill(production.server_named(info.cluster.leader))
            await async_wait_until(lambda: observed(watcher, "node-b"), timeout=20, what="a publish after the loss")
            await async_wait_until(lambda: follows(2), timeout=15, what="the observation made after the loss")
            assert seen == ["k8s.node._.node-a", "k8s.node._.node-b"]
            assert follower.following and health.readiness() == (True, [])
        finally:
            await follower.close()
