"""Configuration verdicts as MetalLB's, seen where the user looks (the ConfigurationState and the
Services): an advertisement naming what does not exist is accepted; two advertisements giving one update
different localPrefs are refused."""

from __future__ import annotations

from typing import Any

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.integration.conformance.harness import Cluster, node, pool, running_metalbus, service
from tests.integration.watcher.status.harness import NAMESPACE
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until


def bgp_advertisement(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


def configuration_state(cluster: Cluster) -> dict[str, Any]:
    return dict((cluster.api.get_object("configurationstates", "metalbus", NAMESPACE) or {}).get("status") or {})


async def test_advertisements_naming_missing_peers_or_pools_are_accepted(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, service("web"),
                                bgp_advertisement("bgp", ipAddressPools=["lan"], peers=["not-yet"])) as cluster:
        await async_wait_until(lambda: configuration_state(cluster).get("result") == "Valid", what="Valid")
        cluster.put(pool("lan", "192.168.10.0/24"))
        await cluster.shows("web", ["192.168.10.0"], "the pool made after its advertisement applies")
        assert configuration_state(cluster).get("result") == "Valid"


async def test_different_local_prefs_for_one_update_are_refused_with_metallbs_reason(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, node("node-a"), pool("lan", "192.168.10.0/24"),
                                bgp_advertisement("one", localPref=100), service("web")) as cluster:
        await async_wait_until(lambda: configuration_state(cluster).get("result") == "Valid", what="Valid")
        cluster.put(bgp_advertisement("two", localPref=200))
        cluster.put(pool("wan", "198.51.100.0/24"))
        await async_wait_until(lambda: configuration_state(cluster).get("result") == "Invalid", what="Invalid")
        summary = configuration_state(cluster).get("errorSummary", "")
        assert "BGPAdvertisement metallb-system/two" in summary
        assert ("invalid local preference 200: local preference 100 was already set for the same type of BGP "
                "update") in summary
        # the last valid configuration stays in force: the new pool is not used
        cluster.put(service("api", annotations={"metallb.io/address-pool": "wan"}))
        await cluster.shows("api", [], "no address from a pool of the refused set")
        cluster.put(bgp_advertisement("two", localPref=200, aggregationLength=24))
        await async_wait_until(lambda: configuration_state(cluster).get("result") == "Valid",
                               what="Valid again once their prefixes differ")
        await cluster.shows("api", ["198.51.100.0"], "the new pool in force")
