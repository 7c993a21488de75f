"""A pool's status is reported per object, not per name: a pool deleted and made again under its name gets
its status even when its counts are those reported before under that name."""

from __future__ import annotations

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.integration.conformance.harness import pool, pool_status, running_metalbus
from tests.integration.watcher.status.harness import NAMESPACE
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until


async def test_a_pool_made_again_under_its_name_gets_its_status(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    reported = {"assignedIPv4": 0, "assignedIPv6": 0, "availableIPv4": 4, "availableIPv6": 0}
    async with running_metalbus(bus, nats_server, kube_api, pool("lan", "192.168.10.0/30")):
        await async_wait_until(lambda: pool_status(kube_api, "lan") == reported, what="pool status")
        first = kube_api.get_object("ipaddresspools", "lan", NAMESPACE) or {}
        kube_api.delete_object("ipaddresspools", "lan", NAMESPACE)
        kube_api.put_object(pool("lan", "192.168.10.0/30"))
        again = kube_api.get_object("ipaddresspools", "lan", NAMESPACE) or {}
        assert again["metadata"]["uid"] != first["metadata"]["uid"]
        await async_wait_until(lambda: pool_status(kube_api, "lan") == reported, what="the new pool's status")
