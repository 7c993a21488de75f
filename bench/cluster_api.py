"""The Kubernetes API stand-in of ``bench/scale.py``, in a process of its own, holding a cluster's worth of
objects and changing endpoints at a steady rate.

Driven by JSON lines on stdin, answering JSON lines on stdout (one answer per command):

    {"do": "start", "nodes": N, "services": S, "kubeconfig": PATH}   → {"url": ...}
    {"do": "statuses"}                    → {"written": count of Services whose status holds an ingress IP}
    {"do": "wait_statuses", "count": C, "timeout": T} → {"written": ..., "at": wall time C were written,
                                                         "half_at": ..., "in_a_minute": count}
    {"do": "churn", "rate": R, "seconds": T}  → {"changes": done, "seconds": elapsed}   (after it ends)
    {"do": "add_service", "index": I}     → {"name": ..., "at": wall time of the write}
    {"do": "stop"}

Workload: Nodes ``node-00000``…; Services ``svc-<i>`` in namespace ``scale`` (labelled with its name, as every
namespace of a real cluster is): a third
``externalTrafficPolicy: Local``, a quarter dual-stack, two in three on the L2 pool and the rest on the BGP pool;
each with one EndpointSlice holding a ready endpoint on two nodes. An endpoint change moves the second of them to
another node (a pod rescheduled): a pod IP changing on the same node would not do, the watcher folds endpoints
per node and publishes nothing for it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

NAMESPACE = "scale"
CONFIG_NAMESPACE = "metallb-system"
L2_POOL, BGP_POOL = "l2", "bgp"
#: The first nodes run real announcers; the rest are simulated.
REAL_NODES = 3


def node_name(index: int) -> str:
    return f"node-{index:05d}"


def service_name(index: int) -> str:
    return f"svc-{index}"


def node_object(index: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name(index), "labels": {"kubernetes.io/hostname": node_name(index)}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def namespace_object(name: str) -> dict[str, Any]:
    """A Namespace as a real API server shows it: labelled with its name (``kubernetes.io/metadata.name``, set on
    every namespace since Kubernetes 1.21), so each Service's namespace has a label, as in a real cluster."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}}


def config_objects() -> list[dict[str, Any]]:
    meta = {"namespace": CONFIG_NAMESPACE}
    return [
        namespace_object(CONFIG_NAMESPACE),
        namespace_object(NAMESPACE),
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": L2_POOL, **meta},
         "spec": {"addresses": ["10.128.0.0/14", "fd00:10::/104"]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": BGP_POOL, **meta},
         "spec": {"addresses": ["10.200.0.0/14", "fd00:20::/104"]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement", "metadata": {"name": "l2", **meta},
         "spec": {"ipAddressPools": [L2_POOL]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "BGPAdvertisement", "metadata": {"name": "bgp", **meta},
         "spec": {"ipAddressPools": [BGP_POOL], "aggregationLength": 32, "communities": ["64512:100"],
                  "localPref": 100}},
        {"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer", "metadata": {"name": "router", **meta},
         "spec": {"myASN": 64512, "peerASN": 64513, "peerAddress": "192.0.2.1"}},
    ]


def service_object(index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "selector": {"app": service_name(index)},
        "externalTrafficPolicy": "Local" if index % 3 == 0 else "Cluster",
    }
    if index % 4 == 1:
        spec.update(ipFamilyPolicy="RequireDualStack", ipFamilies=["IPv4", "IPv6"])
    pool = BGP_POOL if index % 3 == 2 else L2_POOL
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": service_name(index), "namespace": NAMESPACE,
                         "annotations": {"metallb.io/address-pool": pool}},
            "spec": spec}


def _pod_ip(index: int, which: int) -> str:
    serial = index * 2 + which
    return f"172.{16 + serial // 65536 % 16}.{serial // 256 % 256}.{serial % 256}"


def endpoint_slice(index: int, nodes: int, generation: int = 0) -> dict[str, Any]:
    """The Service's endpoints: one pod on node ``index``, one on node ``index + 7 + generation`` (each
    change reschedules that pod onto the next node: the per-node endpoints the watcher publishes change)."""
    hosts = (node_name(index % nodes), node_name((index + 7 + generation) % nodes))
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": f"{service_name(index)}-1", "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": service_name(index)}},
        "endpoints": [{"addresses": [_pod_ip(index, which)], "nodeName": host,
                       "conditions": {"ready": True, "serving": True, "terminating": False}}
                      for which, host in enumerate(hosts)],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def _shows_address(service: dict[str, Any]) -> bool:
    return bool(((service.get("status") or {}).get("loadBalancer") or {}).get("ingress"))


class Cluster:
    def __init__(self) -> None:
        from tests.kubeapi import KubeApi

        self.api = KubeApi(bookmark_interval=1.0, history_limit=200_000)
        self.nodes = 0
        self.services = 0
        self.generation: dict[int, int] = {}
        #: the Services showing an address, as of the store's change ``_counted_to``: each count reads only
        #: the changes since the one before (scanning every object under the store's lock took a third of the
        #: stand-in's CPU during a cold start, CPU the API server under test then lacked)
        self._shown: set[tuple[str, str]] = set()
        self._counted_to = 0

    def start(self, *, nodes: int, services: int, kubeconfig: Path) -> str:
        self.api.start()
        self.nodes, self.services = nodes, services
        for obj in config_objects():
            self.api.put_object(obj)
        for index in range(nodes):
            self.api.put_object(node_object(index))
        for index in range(services):
            self.api.put_object(endpoint_slice(index, nodes))
            self.api.put_object(service_object(index))
        self.api.kubeconfig(kubeconfig, namespace=CONFIG_NAMESPACE)
        return self.api.url

    def statuses(self) -> int:
        """How many Services show an address now."""
        store = self.api.store
        with store.cond:
            if self._counted_to < store.floor:  # the kept history no longer reaches the last count: count all
                self._shown = {(key[1], key[2]) for key, obj in store._objects.items()
                               if key[0] == "services" and _shows_address(obj)}
                self._counted_to = store.rv
            changes = store.changes_after(self._counted_to)
            self._counted_to = store.rv
        for change in changes:
            if change.key[0] != "services":
                continue
            where = (change.key[1], change.key[2])
            if change.type.value != "DELETED" and _shows_address(change.obj):
                self._shown.add(where)
            else:
                self._shown.discard(where)
        return len(self._shown)

    def wait_statuses(self, count: int, timeout: float) -> dict[str, Any]:
        """Until ``count`` Services show an address or ``timeout``: how many do, when they did, when half of
        ``count`` did, and how many did a minute after the call (None: not reached)."""
        started = time.time()
        deadline = time.monotonic() + timeout
        half_at: float | None = None
        in_a_minute: int | None = None
        while True:
            written = self.statuses()
            now = time.time()
            if half_at is None and written >= count / 2:
                half_at = now
            if in_a_minute is None and now - started >= 60.0:
                in_a_minute = written
            if written >= count or time.monotonic() >= deadline:
                if in_a_minute is None and written >= count:
                    in_a_minute = written  # all of them within the first minute
                return {"written": written, "at": now, "half_at": half_at, "in_a_minute": in_a_minute}
            time.sleep(0.1)  # the figure's resolution: the stand-in has no event to wait on for a count

    def churn(self, rate: float, seconds: float) -> dict[str, Any]:
        """Endpoint changes at ``rate`` a second for ``seconds``, round robin over the Services."""
        started = time.monotonic()
        done = 0
        while (elapsed := time.monotonic() - started) < seconds:
            ahead = started + done / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing the writes, not waiting for a condition
            index = done % self.services
            generation = self.generation[index] = self.generation.get(index, 0) + 1
            self.api.put_object(endpoint_slice(index, self.nodes, generation))
            done += 1
        return {"changes": done, "seconds": elapsed}

    def add_service(self, index: int) -> dict[str, Any]:
        self.api.put_object(endpoint_slice(index, self.nodes))
        self.api.put_object(service_object(index))
        return {"name": service_name(index), "at": time.time()}


def main() -> None:
    cluster = Cluster()
    for line in sys.stdin:
        command = json.loads(line)
        action = command.pop("do")
        if action == "stop":
            break
        try:
            if action == "start":
                answer: dict[str, Any] = {"url": cluster.start(
                    nodes=command["nodes"], services=command["services"], kubeconfig=Path(command["kubeconfig"]))}
            elif action == "statuses":
                answer = {"written": cluster.statuses()}
            elif action == "wait_statuses":
                answer = cluster.wait_statuses(command["count"], command["timeout"])
            elif action == "churn":
                answer = cluster.churn(command["rate"], command["seconds"])
            elif action == "add_service":
                answer = cluster.add_service(command["index"])
            else:
                answer = {"error": f"unknown command {action!r}"}
        except Exception as error:
            answer = {"error": repr(error)}
        print(json.dumps(answer), flush=True)
    threading.Thread(target=cluster.api.stop, daemon=True).start()


if __name__ == "__main__":
    main()
