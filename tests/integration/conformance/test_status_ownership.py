"""metalbus owns the status it writes: whatever anyone else writes on a Service it serves or on an
IPAddressPool's status is put back to what metalbus decided, on that object's next change (as
MetalLB's controller does on every reconcile)."""

from __future__ import annotations

import pytest

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.integration.conformance.harness import Cluster, pool, pool_status, running_metalbus, service
from tests.integration.watcher.status.harness import NAMESPACE
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

FOREIGN_INGRESS = {
    "another address": [{"ip": "192.168.10.77"}],
    "a hostname": [{"hostname": "lb.example.com"}],
    "several addresses": [{"ip": "192.168.10.0", "ipMode": "VIP"}, {"ip": "192.168.10.9"}],
    "the wrong family": [{"ip": "fd00::1"}],
    "another ipMode": [{"ip": "192.168.10.0", "ipMode": "Proxy"}],
}


def write_ingress(cluster: Cluster, name: str, ingress: list[dict[str, str]]) -> None:
    cluster.edit("services", name, "default", lambda s: s.update(status={"loadBalancer": {"ingress": ingress}}))


@pytest.mark.parametrize("written", FOREIGN_INGRESS.values(), ids=FOREIGN_INGRESS.keys())
async def test_a_service_status_written_by_someone_else_is_put_back(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi, written: list[dict[str, str]]
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, pool("lan", "192.168.10.0/24"), service("web"),
                                service("lost", annotations={"metallb.io/address-pool": "none"})) as cluster:
        await cluster.shows("web", ["192.168.10.0"], "allocated")
        write_ingress(cluster, "web", written)
        await async_wait_until(lambda: cluster.api.get_object("services", "web", "default")["status"] == {
            "loadBalancer": {"ingress": [{"ip": "192.168.10.0", "ipMode": "VIP"}]}}, timeout=10,
            what="web's status put back")
        write_ingress(cluster, "lost", written)
        await cluster.shows("lost", [], "a Service that got no address shows none")


async def test_a_pool_status_written_by_someone_else_is_put_back(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    reported = {"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 3, "availableIPv6": 0}
    async with running_metalbus(bus, nats_server, kube_api, pool("lan", "192.168.10.0/30"),
                                service("web")) as cluster:
        await async_wait_until(lambda: pool_status(kube_api, "lan") == reported, what="pool status")
        cluster.edit("ipaddresspools", "lan", NAMESPACE, lambda p: p.update(status={"assignedIPv4": 40}))
        await async_wait_until(lambda: pool_status(kube_api, "lan") == reported, what="pool status put back")
