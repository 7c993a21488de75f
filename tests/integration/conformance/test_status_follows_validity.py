"""A Service's status shows exactly what it may hold: when its allocation stops being valid, the
address leaves ``status.loadBalancer.ingress`` at once, and a new one is given where one can be
(MetalLB's ``clearServiceState`` then ``allocateIPs``)."""

from __future__ import annotations

from typing import Any

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.integration.conformance.harness import pool, running_metalbus, service
from tests.integration.watcher.status.harness import NAMESPACE
from tests.kubeapi import KubeApi

SHARED = "metallb.io/allow-shared-ip"
REQUESTED = "metallb.io/loadBalancerIPs"


def lan() -> dict[str, Any]:
    return pool("lan", "192.168.10.0/24")


def annotate(**annotations: str) -> Any:
    def change(obj: dict[str, Any]) -> None:
        obj["metadata"].setdefault("annotations", {}).update(annotations)
    return change


async def test_a_deleted_pool_takes_its_address_off_the_status(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, pool("lan", "192.168.10.0/30"),
                                service("web")) as cluster:
        await cluster.shows("web", ["192.168.10.0"], "allocated")
        kube_api.delete_object("ipaddresspools", "lan", NAMESPACE)
        await cluster.shows("web", [], "cleared with its pool")
        kube_api.put_object(pool("other", "192.168.20.0/30"))
        await cluster.shows("web", ["192.168.20.0"], "allocated anew from the new pool")


async def test_a_shrunk_pool_or_avoid_buggy_ips_moves_the_service(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, lan(), service("web")) as cluster:
        await cluster.shows("web", ["192.168.10.0"], "allocated")
        cluster.edit("ipaddresspools", "lan", NAMESPACE, lambda p: p["spec"].update(avoidBuggyIPs=True))
        await cluster.shows("web", ["192.168.10.1"], "moved off the .0 address")
        cluster.edit("ipaddresspools", "lan", NAMESPACE,
                     lambda p: p["spec"].update(addresses=["192.168.10.8-192.168.10.9"]))
        await cluster.shows("web", ["192.168.10.8"], "moved into what is left of the pool")
        cluster.edit("ipaddresspools", "lan", NAMESPACE,
                     lambda p: p["spec"].update(addresses=["192.168.10.200/32"], serviceAllocation={
                         "namespaces": ["elsewhere"]}))
        await cluster.shows("web", [], "cleared: the only pool no longer admits it")


async def test_a_service_that_may_no_longer_share_its_address_loses_it(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(
        bus, nats_server, kube_api, lan(), service("web", annotations={SHARED: "k"}),
        service("api", port=443, annotations={SHARED: "k", REQUESTED: "192.168.10.0"}),
    ) as cluster:
        await cluster.shows("web", ["192.168.10.0"], "allocated")
        await cluster.shows("api", ["192.168.10.0"], "sharing web's address")
        cluster.edit("services", "api", "default", annotate(**{SHARED: "other"}))
        await cluster.shows("api", [], "cleared: another sharing key")
        cluster.edit("services", "api", "default", annotate(**{SHARED: "k"}))
        await cluster.shows("api", ["192.168.10.0"], "shared again")
        cluster.edit("services", "api", "default", lambda s: s["spec"]["ports"][0].update(port=80))
        await cluster.shows("api", [], "cleared: the same port as web")
        cluster.edit("services", "api", "default", lambda s: s["spec"]["ports"][0].update(port=443))
        await cluster.shows("api", ["192.168.10.0"], "shared again")
        cluster.edit("services", "api", "default", lambda s: s["spec"].update(externalTrafficPolicy="Local"))
        await cluster.shows("api", [], "cleared: Local with another selector than web's")
        await cluster.shows("web", ["192.168.10.0"], "web keeps its address throughout")


async def test_a_family_policy_that_cannot_be_met_clears_the_status(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, lan(), service("web")) as cluster:
        await cluster.shows("web", ["192.168.10.0"], "allocated")
        cluster.edit("services", "web", "default", lambda s: s["spec"].update(
            ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"], clusterIPs=["10.96.0.10", "fd00::10"]))
        await cluster.shows("web", [], "cleared: no IPv6 address to pair with it")
        cluster.edit("ipaddresspools", "lan", NAMESPACE,
                     lambda p: p["spec"].update(addresses=["192.168.10.0/24", "fd00:10::/120"]))
        await cluster.shows("web", ["192.168.10.0", "fd00:10::"], "dual stack once the pool can")


async def test_a_requested_address_that_cannot_be_given_clears_the_status(
    bus: Bus, nats_server: EmbeddedNats, kube_api: KubeApi
) -> None:
    async with running_metalbus(bus, nats_server, kube_api, lan(),
                                service("web", annotations={REQUESTED: "192.168.10.5"})) as cluster:
        await cluster.shows("web", ["192.168.10.5"], "the requested address")
        cluster.edit("services", "web", "default", annotate(**{REQUESTED: "10.99.0.1"}))
        await cluster.shows("web", [], "cleared: the new address is in no pool")
        cluster.edit("services", "web", "default", annotate(**{REQUESTED: "192.168.10.6"}))
        await cluster.shows("web", ["192.168.10.6"], "the address requested next")
