"""One Kubernetes change is one trace: the real watcher, ipam and announcer export over OTLP/HTTP to a receiver
run by the test, and the spans of a new LoadBalancer Service form one chain across the three services.

    this namespace: Kubernetes API stand-in (127.0.0.1), nats-server and the OTLP receiver on 10.252.X.1,
                    `metalbus watcher --kubeconfig`, `metalbus ipam`
        ══ veth ══ namespace node1: mgmt0 10.252.X.11, `metalbus announcer --node node1 --exclude-interfaces mgmt*`
                                    eth0 10.77.0.11 ══ veth ══ namespace wire (nothing else on that segment)

The announcer answers ARP and sends gratuitous ARP on its interfaces, so it runs in a namespace of its own: no
frame reaches the machine's network. NATS runs the least-privilege accounts: each service connects with its own
credential (the announcer as its node), as deployed.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from services.common.permissions import BusUser
from tests.integration.tracing.receiver import OtlpReceiver, SeenSpan
from tests.kubeapi import KubeApi
from tests.netlab import REPO, Lab, skip_reason
from tests.secured_nats import secured_nats
from tests.waiting import wait_until

NODE = "node1"
NAMESPACE = "tracing"
POOL = "traced"
POOL_RANGE = "10.77.0.100-10.77.0.110"
SERVICE = "web"
WATCHER, IPAM, ANNOUNCER = "metalbus-watcher", "metalbus-ipam", "metalbus-announcer"

_SKIP = skip_reason()
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(_SKIP is not None, reason=f"the announcer must run in a network namespace: {_SKIP}"),
]


class Child:
    """A service process (possibly inside a namespace), its output kept line by line."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=REPO, env=env,
        )  # fmt: skip
        assert self.popen.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def logged(self, pattern: str) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"exited {self.popen.returncode}:\n{self.tail()}")
        return any(re.search(pattern, line) for line in list(self.lines))

    def tail(self, count: int = 40) -> str:
        return "".join(self.lines[-count:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._reader.join(5)


@dataclass
class Pipeline:
    kube: KubeApi
    receiver: OtlpReceiver
    children: dict[str, Child]

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Wait with a deadline; on timeout say which spans arrived and what the services logged."""
        try:
            wait_until(condition, timeout=timeout, what=what)
        except AssertionError as error:
            names = sorted({(s.service, s.name) for s in self.receiver.spans()})
            logs = "\n".join(f"--- {name}\n{child.tail()}" for name, child in self.children.items())
            raise AssertionError(f"{error}\nspans received: {names}\n{logs}") from None


def _environment(receiver: OtlpReceiver, service_name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update({
        "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "NO_PROXY": "*",
        "OTEL_SERVICE_NAME": service_name, "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100",
    })  # fmt: skip
    return env


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    subnet = f"10.252.{secrets.randbelow(250) + 1}"
    root_port = f"mbt{secrets.token_hex(4)}"
    children: dict[str, Child] = {}
    with Lab("mbtrace") as lab:
        node_ns, wire_ns = lab.namespace(NODE), lab.namespace("wire")
        lab.veth(node_ns, wire_ns, addresses_a=["10.77.0.11/24"], addresses_b=["10.77.0.9/24"])
        subprocess.run(
            ["ip", "link", "add", root_port, "type", "veth", "peer", "name", "mgmt0", "netns", node_ns],
            check=True, capture_output=True,
        )  # fmt: skip
        try:
            subprocess.run(["ip", "addr", "add", f"{subnet}.1/24", "dev", root_port], check=True)
            subprocess.run(["ip", "link", "set", root_port, "up"], check=True)
            lab.run(node_ns, "ip", "addr", "add", f"{subnet}.11/24", "dev", "mgmt0")
            lab.run(node_ns, "ip", "link", "set", "mgmt0", "up")
            with (
                KubeApi(bookmark_interval=0.2) as kube,
                secured_nats(tmp_path / "nats", host=f"{subnet}.1") as nats,
                OtlpReceiver(f"{subnet}.1") as receiver,
            ):
                try:
                    _seed(kube)
                    run = [sys.executable, "-m", "services.cli"]
                    children[ANNOUNCER] = Child(
                        ["ip", "netns", "exec", node_ns, *run, "announcer", "--node", NODE,
                         "--nats", nats.node_url(NODE), "--http-port", "0", "--http-host", f"{subnet}.11",
                         "--exclude-interfaces", "mgmt*"],
                        _environment(receiver, ANNOUNCER),
                    )  # fmt: skip
                    wait_until(lambda: children[ANNOUNCER].logged('msg="l2 agent started"'), timeout=30,
                               what="the announcer to read the placements")  # fmt: skip
                    children[IPAM] = Child(
                        [*run, "ipam", "--nats", nats.url_for(BusUser.IPAM), "--http-port", "0",
                         "--http-host", "127.0.0.1"],
                        _environment(receiver, IPAM),
                    )
                    # active only after a whole liveness window: the announcer's node is live by then
                    wait_until(lambda: children[IPAM].logged(r"\bactive ipam_sequence="), timeout=30,
                               what="the ipam to become active")  # fmt: skip
                    kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
                    children[WATCHER] = Child(
                        [*run, "watcher", "--nats", nats.url_for(BusUser.WATCHER), "--kubeconfig", str(kubeconfig),
                         "--namespace", "metallb-system", "--http-port", "0", "--http-host", "127.0.0.1"],
                        _environment(receiver, WATCHER),
                    )  # fmt: skip
                    # its consumers follow IPAM and ANNOUNCE from here on: what lands later is traced
                    wait_until(lambda: children[WATCHER].logged("status writer running"), timeout=30,
                               what="the watcher's status writer to run")  # fmt: skip
                    # and every list in: what the test makes next comes by the watches
                    wait_until(lambda: children[WATCHER].logged('msg="initial lists published"'), timeout=30,
                               what="the watcher's initial lists")  # fmt: skip
                    yield Pipeline(kube, receiver, children)
                finally:
                    for name in (WATCHER, IPAM, ANNOUNCER):  # the announcer last: it withdraws while the bus is up
                        if name in children:
                            children[name].stop()
        finally:
            subprocess.run(["ip", "link", "del", root_port], capture_output=True, check=False)


def _seed(kube: KubeApi) -> None:
    """What exists before the services start: namespaces, the announcer's Node, a pool and its L2Advertisement."""
    for name in (NAMESPACE, "metallb-system"):
        kube.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kube.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": {}}})
    kube.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                     "metadata": {"name": POOL, "namespace": "metallb-system"},
                     "spec": {"addresses": [POOL_RANGE]}})  # fmt: skip
    kube.put_object({"apiVersion": "metallb.io/v1beta1", "kind": "L2Advertisement",
                     "metadata": {"name": "traced", "namespace": "metallb-system"},
                     "spec": {"ipAddressPools": [POOL]}})  # fmt: skip


def _endpoint_slice() -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": f"{SERVICE}-1", "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": SERVICE}},
        "endpoints": [{"addresses": ["10.1.0.5"], "nodeName": NODE,
                       "conditions": {"ready": True, "serving": True, "terminating": False}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }  # fmt: skip


def _service() -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                 "selector": {"app": SERVICE}},
    }  # fmt: skip


def _ingress_ip(kube: KubeApi) -> str | None:
    service = kube.get_object("services", SERVICE, NAMESPACE) or {}
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    return str(ingress[0]["ip"]) if ingress and ingress[0].get("ip") else None


def _chain(spans: dict[str, SeenSpan], leaf: SeenSpan) -> list[SeenSpan]:
    """``leaf`` and its ancestors up to the root; fails on a parent that never arrived."""
    chain = [leaf]
    while chain[-1].parent_id:
        parent = spans.get(chain[-1].parent_id)
        assert parent is not None, f"span {chain[-1].name!r} names a parent that is not in the trace"
        chain.append(parent)
    return chain


def _full_trace(receiver: OtlpReceiver) -> tuple[list[SeenSpan], list[SeenSpan]] | None:
    """The Service's trace once it holds the L2 status write whose chain reaches the root: (trace, chain)."""
    seen = receiver.spans()
    roots = [s for s in seen if s.service == WATCHER and s.name == f"observe Service {NAMESPACE}/{SERVICE}"]
    for root in roots:
        trace = [s for s in seen if s.trace_id == root.trace_id]
        by_id = {s.span_id: s for s in trace}
        for write in (s for s in trace if s.service == WATCHER and s.name == "write ServiceL2Status"):
            try:
                return trace, _chain(by_id, write)
            except AssertionError:
                continue  # a parent is still on its way
    return None


def test_a_new_service_is_one_trace_across_watcher_ipam_and_announcer(pipeline: Pipeline) -> None:
    kube, receiver = pipeline.kube, pipeline.receiver
    slice_span = f"observe EndpointSlice {NAMESPACE}/{SERVICE}"
    # the endpoints first, so the Service's own decision holds the allocation and the placement together
    kube.put_object(_endpoint_slice())
    pipeline.wait(lambda: any(s.name == slice_span for s in receiver.spans()),
                  f"the watcher's {slice_span!r} span (the watcher listed and published)")  # fmt: skip
    kube.put_object(_service())
    pipeline.wait(lambda: _ingress_ip(kube) is not None, "the Service's status to show an IP")
    ip = _ingress_ip(kube)
    assert ip is not None

    found: list[tuple[list[SeenSpan], list[SeenSpan]]] = []

    def complete() -> bool:
        result = _full_trace(receiver)
        if result is not None:
            found.append(result)
        return result is not None

    pipeline.wait(complete, "one trace from the Service's observation to its L2 status write")
    trace, chain = found[-1]

    # one trace id holds spans of all three services
    assert {s.service for s in trace} == {WATCHER, IPAM, ANNOUNCER}
    assert len({s.trace_id for s in trace}) == 1

    # the chain, leaf to root: write ← consume ← announce ← decide ← observe
    names = [(s.service, s.name) for s in chain]
    write, consumed, announce, decide, observe = chain[0], chain[1], chain[2], chain[3], chain[-1]
    assert (write.service, write.name) == (WATCHER, "write ServiceL2Status"), names
    assert (consumed.service, consumed.name) == (WATCHER, "consume AnnouncementReported"), names
    assert (announce.service, announce.name) == (ANNOUNCER, f"announce {ip}"), names
    assert (decide.service, decide.name) == (IPAM, "decide ServiceObserved"), names
    assert (observe.service, observe.name) == (WATCHER, f"observe Service {NAMESPACE}/{SERVICE}"), names
    assert observe.parent_id == "" and len(chain) == 5, names

    # the Service's own status write is in the same trace, under the ipam's decision
    service_writes = [s for s in trace if s.service == WATCHER and s.name == "write Service"]
    by_id = {s.span_id: s for s in trace}
    assert any(decide in _chain(by_id, s) for s in service_writes), sorted(n for _, n in names)

    # attributes: service, IP, pool, node
    service_key = f"{NAMESPACE}/{SERVICE}"
    assert observe.attributes["k8s.kind"] == "Service"
    assert observe.attributes["k8s.namespace.name"] == NAMESPACE
    assert observe.attributes["k8s.object.name"] == SERVICE
    assert observe.attributes["metalbus.service"] == service_key
    assert observe.attributes["k8s.resource_version"]
    assert decide.attributes["metalbus.service"] == service_key
    assert decide.attributes["metalbus.ip"] == ip
    assert decide.attributes["metalbus.pool"] == POOL
    assert decide.attributes["metalbus.node"] == NODE
    assert announce.attributes["metalbus.ip"] == ip
    assert announce.attributes["metalbus.node"] == NODE
    assert announce.attributes["metalbus.protocol"] == "layer2"
    assert announce.attributes["metalbus.interfaces"] == "eth0"
    assert announce.attributes["metalbus.service"] == service_key
