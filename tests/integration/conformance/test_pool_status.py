"""A pool's status is reported per object, not per name: a pool deleted and made again under its name gets
its status even when its counts are those reported before under that name."""

from __future__ import annotations

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.subjects import IPAM_CONFIG_SUBJECT, StreamName, ipam_pool_subject
from tests.integration.conformance.harness import pool, pool_status, running_metalbus, service
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


async def test_writing_pool_status_is_no_configuration_change(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    """The counts written back bump the pool's resourceVersion; the configuration stays the one recorded
    (it used to be recorded anew, parts and all, at every allocation that changed a count)."""
    async with running_metalbus(bus, nats_server, kube_api, pool("lan", "192.168.10.0/24"), service("web")) as c:
        await async_wait_until(lambda: pool_status(kube_api, "lan").get("assignedIPv4") == 1, what="counts")
        c.put(service("api", port=81))
        await async_wait_until(lambda: pool_status(kube_api, "lan").get("assignedIPv4") == 2, what="counts again")
        # a configuration change after those writes: once ipam has it, it has had whatever they caused
        c.put(pool("wan", "198.51.100.0/24"))
        await async_wait_until(lambda: _reported(bus, "wan"), what="the new pool's usage")
        recorded = [r.event async for r in bus.read(StreamName.IPAM, subjects=[IPAM_CONFIG_SUBJECT])]
        assert len(recorded) == 2, recorded  # the first configuration, and the one with wan


async def _reported(bus: Bus, pool_name: str) -> bool:
    return await bus.last_value(StreamName.IPAM, ipam_pool_subject(pool_name)) is not None
