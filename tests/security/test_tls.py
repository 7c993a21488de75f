"""The production overlay's NATS: three servers from the rendered ConfigMap, TLS on client and route
connections, replicated streams; clients get in only trusting the servers' CA, each as its own user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.events import NodeObserved, ObjectRef
from services.common.bus import Bus, BusSettings
from services.common.permissions import BusUser
from services.common.subjects import StreamName, observed_subject
from tests.security.probe import probe, refused_connection
from tests.security.shipped import ShippedCluster, shipped_cluster
from tests.waiting import async_wait_until


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShippedCluster]:
    with shipped_cluster("prod", tmp_path_factory.mktemp("production"), startup_timeout=60) as cluster:
        yield cluster


async def test_three_servers_with_tls_carry_replicated_streams(production: ShippedCluster) -> None:
    assert len(production.servers) == 3
    for index in range(3):
        assert "TLS required for client connections" in production.log(index)
    first, last = production.servers[0], production.servers[2]
    watcher = Bus.connect(BusSettings(url=production.credentials.url(first.url, BusUser.WATCHER),
                                      tls_ca_file=production.ca_file, initial_attempts=3), producer="watcher/t")
    async with await watcher as bus:
        event = NodeObserved(ref=ObjectRef(name="node-a", uid="u1", resource_version="1"))
        await bus.publish(observed_subject(event), event)
    reader = Bus.connect(BusSettings(url=production.credentials.url(last.url, BusUser.IPAM),
                                     tls_ca_file=production.ca_file, initial_attempts=3), producer="ipam/t")
    async with await reader as bus:
        info = await bus.js.stream_info(StreamName.K8S.value)
        assert info.config.num_replicas == 3

        async def replicated() -> bool:  # the publish is acknowledged by a quorum; the third server may lag
            return [received.subject async for received in bus.read(StreamName.K8S)] == ["k8s.node._.node-a"]

        await async_wait_until(replicated, timeout=10, what="the event read through the third server")


async def test_a_client_that_does_not_trust_the_servers_ca_is_not_let_in(production: ShippedCluster) -> None:
    url = production.url_for(BusUser.OPERATOR)
    assert await refused_connection(url) is not None  # the system's trust store: the certificate is refused
    assert await refused_connection(url, ca_file=production.ca_file) is None  # control


async def test_an_announcer_authenticates_as_its_node_over_tls(production: ShippedCluster) -> None:
    async with probe(production.node_url("node-1"), ca_file=production.ca_file) as node:
        assert await node.publish_refused("heartbeat.announcer.node-2")
        assert not await node.publish_refused("heartbeat.announcer.node-1")
