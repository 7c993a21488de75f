"""The Kubernetes objects of the L2 lab's cluster, as the API stand-in holds them: its three Nodes, a pool over the
lab's VIPs with an L2Advertisement answering on eth0, and LoadBalancer Services with their endpoints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.network.l2_cluster.harness import NODES

CONFIG_NAMESPACE = "metallb-system"
Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    name: str
    family: str = "IPv4"
    nodes: tuple[str, ...] = NODES  # where its serving endpoints run
    local: bool = False  # externalTrafficPolicy: Local
    port: int = 80
    sharing: str | None = None  # allow-shared-ip key
    address: str | None = None  # the address asked for (metallb.io/loadBalancerIPs)


def configuration(pool: str, *addresses: str) -> list[Obj]:
    """The Nodes, the pool over ``addresses`` and an L2Advertisement of it on eth0."""
    found: list[Obj] = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}} for name in NODES]
    found.append({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                  "metadata": {"name": pool, "namespace": CONFIG_NAMESPACE}, "spec": {"addresses": list(addresses)}})
    found.append({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                  "metadata": {"name": pool, "namespace": CONFIG_NAMESPACE},
                  "spec": {"ipAddressPools": [pool], "interfaces": ["eth0"]}})
    return found


def service_objects(spec: ServiceSpec, index: int) -> list[Obj]:
    """The Service (its cluster IP from ``index``) and an EndpointSlice serving it on ``spec.nodes``."""
    cluster_ip = f"fd00:96::{index + 10}" if spec.family == "IPv6" else f"10.96.{index // 200}.{index % 200 + 10}"
    annotations = {
        **({"metallb.io/allow-shared-ip": spec.sharing} if spec.sharing else {}),
        **({"metallb.io/loadBalancerIPs": spec.address} if spec.address else {}),
    }
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": spec.name, "namespace": "default", "annotations": annotations},
         "spec": {"type": "LoadBalancer", "ports": [{"port": spec.port, "protocol": "TCP"}],
                  "selector": {"app": spec.name}, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                  "ipFamilies": [spec.family], "ipFamilyPolicy": "SingleStack",
                  "externalTrafficPolicy": "Local" if spec.local else "Cluster"}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": spec.family,
         "metadata": {"name": f"{spec.name}-1", "namespace": "default",
                      "labels": {"kubernetes.io/service-name": spec.name}},
         "endpoints": [{"addresses": [f"fd00:1::{i}" if spec.family == "IPv6" else f"10.1.{index % 200}.{i}"],
                        "nodeName": node, "conditions": {"ready": True, "serving": True, "terminating": False}}
                       for i, node in enumerate(spec.nodes, start=1)],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]},
    ]  # fmt: skip
