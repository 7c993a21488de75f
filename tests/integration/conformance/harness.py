"""metalbus as a cluster runs it, minus the announcers: the watcher's observe side and status writer on the
Kubernetes API stand-in, and an ipam replica, all on a real nats-server. The user edits objects through the
stand-in and looks at what Kubernetes shows, as MetalLB's own end-to-end tests do."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.watcher.sightings import Sightings
from tests.integration.ipam.test_ipam_service import replica
from tests.integration.watcher.helpers import observing
from tests.integration.watcher.status.harness import NAMESPACE, Harness, ingress, running_writer
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

Obj = dict[str, Any]


@dataclass
class Cluster:
    api: KubeApi
    writer: Harness

    def ips(self, name: str, namespace: str = "default") -> list[str]:
        """What the Service's status shows (``status.loadBalancer.ingress[].ip``)."""
        return [entry.get("ip", "") for entry in ingress(self.api, name, namespace)]

    async def shows(self, name: str, ips: list[str], what: str, namespace: str = "default") -> None:
        await async_wait_until(lambda: self.ips(name, namespace) == ips, timeout=10,
                               what=f"{what}: {namespace}/{name} showing {ips}")

    def put(self, obj: Obj) -> Obj:
        return self.api.put_object(obj)

    def edit(self, resource: str, name: str, namespace: str, change: Any) -> Obj:
        """Read the object, let ``change`` mutate it, write it back (as ``kubectl edit``)."""
        obj = self.api.get_object(resource, name, namespace)
        assert obj is not None, f"{resource} {namespace}/{name} missing"
        change(obj)
        return self.api.put_object(obj)


@contextlib.asynccontextmanager
async def running_metalbus(bus: Bus, nats_server: EmbeddedNats, api: KubeApi, *objects: Obj
                           ) -> AsyncIterator[Cluster]:
    """metalbus running on a cluster that holds ``objects`` already."""
    for obj in objects:
        api.put_object(obj)
    sightings = Sightings()
    async with (observing(bus, api, sightings=sightings), replica(nats_server.url, "a") as ipam,
                running_writer(bus, api, sightings=sightings) as writer):
        await async_wait_until(ipam.replica.activated.is_set, what="ipam active")
        yield Cluster(api, writer)


def node(name: str, **labels: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def pool_status(api: KubeApi, name: str) -> Obj:
    """What the IPAddressPool's status shows."""
    return dict((api.get_object("ipaddresspools", name, NAMESPACE) or {}).get("status") or {})


def pool(name: str, *addresses: str, **spec: Any) -> Obj:
    return {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": {"addresses": list(addresses), **spec}}


def service(name: str, *, namespace: str = "default", annotations: dict[str, str] | None = None,
            port: int = 80, cluster_ips: tuple[str, ...] = ("10.96.0.10",), **spec: Any) -> Obj:
    """A LoadBalancer Service on TCP ``port``, single-stack IPv4 unless ``spec`` says otherwise."""
    families = ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}], "selector": {"app": name},
                 "clusterIP": cluster_ips[0], "clusterIPs": list(cluster_ips), "ipFamilies": families,
                 "ipFamilyPolicy": "SingleStack" if len(cluster_ips) == 1 else "RequireDualStack", **spec},
    }
