"""What the lab is: names, addresses, the YAML it applies and the router's configuration. Pure.

    namespace <p>-br:    br0 ── <p>-router  eth0 172.30.0.1    fd30::1     BIRD 2, AS 64512, forwards
                             ── <p>-node1   eth0 172.30.0.11   fd30::11    announcer, web server
                             ── <p>-node2   eth0 172.30.0.12   fd30::12    announcer, web server
                             ── <p>-node3   eth0 172.30.0.13   fd30::13    announcer, web server
                             ── <p>-client  eth0 172.30.0.100  fd30::100   arping, ndisc6, HTTP client
    namespace <p>-mgmt:  mg0 ── nodeN mgmt0 10.254.77.1N
                             ── up0 ══ veth <p>-up ══ this host 10.254.77.1: nats-server, watcher, ipam

Pools: ``lab-l2`` 172.30.0.200-219 and fd30::200-21f in layer 2 mode; ``lab-bgp`` 203.0.113.10-19
announced over BGP to the router, which the client uses as its gateway for 203.0.113.0/24. Nodes
take every pool address as local (``ip route add local``) so the web server answers on whichever
VIP reaches it, with ``arp_ignore=1`` so the kernel itself never answers ARP for them: the owner seen
from the client is the announcer's doing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from services.common.credentials import BusCredentials
from services.common.permissions import BusUser

CONFIG_NAMESPACE = "metallb-system"
SERVICE_NAMESPACE = "demo"
ROUTER_AS, NODE_AS = 64512, 64513
ROUTER4, ROUTER6 = "172.30.0.1", "fd30::1"
CLIENT4, CLIENT6 = "172.30.0.100", "fd30::100"
LAN4, LAN6 = "172.30.0.0/24", "fd30::/64"
NODES: dict[str, tuple[str, str]] = {
    "node1": ("172.30.0.11", "fd30::11"),
    "node2": ("172.30.0.12", "fd30::12"),
    "node3": ("172.30.0.13", "fd30::13"),
}
L2_POOL, BGP_POOL = "lab-l2", "lab-bgp"
L2_RANGES = ("172.30.0.200-172.30.0.219", "fd30::200-fd30::21f")
BGP_RANGE = "203.0.113.10-203.0.113.19"
#: Routes of type ``local`` on every node covering the pools (the server answers on any VIP).
LOCAL_ROUTES = ("172.30.0.192/27", "fd30::200/120", "203.0.113.0/27")
CLIENT_ROUTE = ("203.0.113.0/24", ROUTER4)
HTTP_PORT = 80
#: Where a lab keeps its state file, credentials, logs and objects, unless told otherwise.
DEFAULT_STATE_DIR = Path("/run/metalbus-lab")
#: Points `metalbus lab up` / `down` and the operator commands at another lab's state directory.
STATE_DIR_VARIABLE = "METALBUS_LAB_STATE_DIR"


def state_file_in(state_dir: Path) -> Path:
    return state_dir / "state.json"


def credentials_in(state_dir: Path) -> Path:
    """The lab bus's passwords, issuer seed and node tokens (root only)."""
    return state_dir / "credentials"


def operator_url_in(state_dir: Path, nats_url: str) -> str:
    """The lab's bus (``nats_url``) as the read-only operator user (``metalbus status``, ``explain``,
    ``history``); reading the password needs root."""
    return BusCredentials(credentials_in(state_dir)).url(nats_url, BusUser.OPERATOR)


@dataclass(frozen=True, slots=True)
class SampleService:
    """A Service the lab applies, with endpoints on ``nodes``."""

    name: str
    pool: str
    family: str
    nodes: tuple[str, ...]


SERVICES = (
    SampleService("web", L2_POOL, "IPv4", ("node1", "node2")),
    SampleService("web-v6", L2_POOL, "IPv6", ("node2", "node3")),
    SampleService("api", BGP_POOL, "IPv4", ("node2", "node3")),
)


@dataclass(frozen=True, slots=True)
class LabPlan:
    """Where one lab lives. Two labs differ in all of ``prefix``, ``state_dir``, ``mgmt_subnet`` and
    ``nats_port``."""

    prefix: str = "mbuslab"
    state_dir: Path = DEFAULT_STATE_DIR
    objects_dir: Path | None = None
    mgmt_subnet: str = "10.254.77"
    nats_port: int = 4322

    def __post_init__(self) -> None:
        if len(self.uplink) > 15:
            raise ValueError(f"prefix {self.prefix!r} is too long for an interface name")

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def uplink(self) -> str:
        """The veth end on this host that reaches the management network."""
        return f"{self.prefix}-up"

    @property
    def objects(self) -> Path:
        """The directory of YAML the watcher reads (edit it: the lab follows)."""
        return self.objects_dir or self.state_dir / "objects"

    @property
    def state_file(self) -> Path:
        return state_file_in(self.state_dir)

    @property
    def host_ip(self) -> str:
        return f"{self.mgmt_subnet}.1"

    def node_mgmt_ip(self, index: int) -> str:
        return f"{self.mgmt_subnet}.{10 + index}"

    @property
    def nats_url(self) -> str:
        return f"nats://{self.host_ip}:{self.nats_port}"

    @property
    def credentials_dir(self) -> Path:
        return credentials_in(self.state_dir)

    @property
    def operator_url(self) -> str:
        return operator_url_in(self.state_dir, self.nats_url)


# --- the YAML the lab applies ---------------------------------------------------------------------


def _cluster_objects() -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in (CONFIG_NAMESPACE, SERVICE_NAMESPACE)
    ]
    for name, (v4, v6) in NODES.items():
        objects.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"addresses": [{"type": "InternalIP", "address": v4}, {"type": "InternalIP", "address": v6},
                                     {"type": "Hostname", "address": name}]},
        })
    objects.append({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "mode: ipvs\nipvs:\n  strictARP: true\n"},
    })
    return objects


def _l2_objects() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": L2_POOL, "namespace": CONFIG_NAMESPACE},
         "spec": {"addresses": list(L2_RANGES)}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
         "metadata": {"name": L2_POOL, "namespace": CONFIG_NAMESPACE},
         "spec": {"ipAddressPools": [L2_POOL], "interfaces": ["eth0"]}},
    ]


def _bgp_objects() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": BGP_POOL, "namespace": CONFIG_NAMESPACE},
         "spec": {"addresses": [BGP_RANGE]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement",
         "metadata": {"name": BGP_POOL, "namespace": CONFIG_NAMESPACE},
         "spec": {"ipAddressPools": [BGP_POOL]}},
        {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
         "metadata": {"name": "router", "namespace": CONFIG_NAMESPACE},
         "spec": {"myASN": NODE_AS, "peerASN": ROUTER_AS, "peerAddress": ROUTER4, "holdTime": "9s"}},
    ]


def service_objects(service: SampleService, *, annotations: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The Service and the EndpointSlice that puts its endpoints on ``service.nodes``."""
    def pod_address(node: str) -> str:
        index = 10 + list(NODES).index(node)
        return f"10.244.0.{index}" if service.family == "IPv4" else f"fd44::{index}"

    endpoints = [{"addresses": [pod_address(node)], "conditions": {"ready": True, "serving": True},
                  "nodeName": node} for node in service.nodes]
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": service.name, "namespace": SERVICE_NAMESPACE,
                      "annotations": {"metallb.io/address-pool": service.pool, **(annotations or {})}},
         "spec": {"type": "LoadBalancer", "ipFamilies": [service.family], "ipFamilyPolicy": "SingleStack",
                  "selector": {"app": service.name},
                  "ports": [{"name": "http", "port": HTTP_PORT, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{service.name}-1", "namespace": SERVICE_NAMESPACE,
                      "labels": {"kubernetes.io/service-name": service.name}},
         "addressType": service.family, "endpoints": endpoints,
         "ports": [{"name": "http", "port": HTTP_PORT, "protocol": "TCP"}]},
    ]


def _yaml(objects: list[dict[str, Any]], comment: str) -> str:
    body = "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objects)
    return f"# {comment}\n{body}"


def manifests() -> dict[str, str]:
    """File name → YAML text, as the lab writes them into its objects directory."""
    files = {
        "00-cluster.yaml": _yaml(_cluster_objects(), "the cluster: namespaces, nodes, kube-proxy in IPVS mode"
                                                     " with strictARP"),
        "10-layer2.yaml": _yaml(_l2_objects(), f"pool {L2_POOL}: announced in layer 2 mode on eth0"),
        "20-bgp.yaml": _yaml(_bgp_objects(), f"pool {BGP_POOL}: announced over BGP to the router"),
    }
    for service in SERVICES:
        files[f"{service.name}.yaml"] = _yaml(
            service_objects(service),
            f"Service {SERVICE_NAMESPACE}/{service.name} with endpoints on {', '.join(service.nodes)}: edit me",
        )
    return files


# --- the router -----------------------------------------------------------------------------------


def bird_config(*, log_file: Path) -> str:
    """BIRD 2: one passive session per node (the announcers dial), routes into the kernel table."""
    sessions = "".join(
        f"""
protocol bgp {name} {{
    local {ROUTER4} as {ROUTER_AS};
    neighbor {v4} as {NODE_AS};
    passive on; hold time 9; error wait time 1, 2;
    ipv4 {{ import all; export none; }};
}}
"""
        for name, (v4, _) in NODES.items()
    )
    return (
        f'router id {ROUTER4};\nlog "{log_file}" all;\nprotocol device {{ scan time 2; }}\n'
        "protocol kernel { ipv4 { export all; }; merge paths on; }\n"
        f"{sessions}"
    )
