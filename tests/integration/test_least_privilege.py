"""Least privilege, end to end: on a nats-server running the shipped accounts, every component holds only its
own credential — the watcher (directory source) `watcher`, the ipam `ipam`, the announcer its node's token,
`metalbus explain` `operator` — and a new Service still gets its IP, is answered on the wire by its node, and
both are told where a user looks (the status file, `explain`). The server refuses nobody anything meanwhile
(`tests.secured_nats` fails otherwise).

    this namespace: nats-server and its authenticator on 10.254.X.1, `metalbus watcher --source-dir`,
                    `metalbus ipam`, `metalbus explain`
        ══ management bridge ══ namespace node1: mgmt0 10.254.X.11, `metalbus announcer --node node1`
                                                eth0 10.77.0.11 ══ veth ══ namespace wire: 10.77.0.9 (arping)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from services.watcher.files.status import status_path
from tests.netlab import REPO, Lab, management_network, skip_reason, wait_for
from tests.network.bgp_agent.harness import Process
from tests.network.l2.tools import arping
from tests.secured_nats import secured_nats

NODE = "node1"
WORLD = f"""\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: lan, namespace: metallb-system}}
spec: {{addresses: [10.77.0.100-10.77.0.110]}}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: lan, namespace: metallb-system}}
spec: {{ipAddressPools: [lan]}}
---
apiVersion: v1
kind: Node
metadata: {{name: {NODE}}}
status: {{addresses: [{{type: InternalIP, address: 10.77.0.11}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: default, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
endpoints: [{{addresses: [10.244.0.5], conditions: {{ready: true, serving: true}}, nodeName: {NODE}}}]
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {type: LoadBalancer, ports: [{port: 80}], ipFamilies: [IPv4]}
"""

_SKIP = skip_reason("arping")
pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(_SKIP is not None, reason=f"the announcer must run in a network namespace: {_SKIP}"),
]


@dataclass
class Cluster:
    lab: Lab
    server: EmbeddedNats
    node_ns: str
    wire_ns: str
    source: Path
    processes: dict[str, Process]

    def start(self, name: str, *command: str, ns: str | None = None) -> Process:
        """``metalbus <command>`` on this host (or in ``ns``), stopped with the lab."""
        run = [sys.executable, "-m", "services.cli", *command]
        if ns is not None:
            proc = self.lab.popen(ns, *run, stdin=subprocess.DEVNULL)
        else:
            proc = subprocess.Popen(run, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            self.lab.processes.append(proc)
        self.processes[name] = Process(proc, name)
        return self.processes[name]

    def diagnostics(self) -> str:
        return "\n".join(f"--- {name}\n{process.tail(25)}" for name, process in self.processes.items())


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    source = tmp_path / "cluster"
    source.mkdir()
    (source / "world.yaml").write_text(WORLD)
    with Lab("mblp") as lab, management_network(lab) as (mgmt, subnet):
        node_ns, wire_ns = lab.namespace(NODE), lab.namespace("wire")
        lab.link(node_ns, bridge_ns=mgmt, bridge="mg0", ifname="mgmt0", addresses=[f"{subnet}.11/24"])
        lab.veth(node_ns, wire_ns, addresses_a=["10.77.0.11/24"], addresses_b=["10.77.0.9/24"])
        with secured_nats(tmp_path / "nats", host=f"{subnet}.1") as server:
            built = Cluster(lab, server, node_ns, wire_ns, source, {})
            try:
                built.start("watcher", "watcher", "--nats", server.url_for(BusUser.WATCHER), "--source-dir",
                            str(source), "--http-port", "0", "--http-host", "127.0.0.1")
                built.start("announcer", "announcer", "--node", NODE, "--nats", server.node_url(NODE),
                            "--http-port", "0", "--http-host", f"{subnet}.11", "--exclude-interfaces", "mgmt*",
                            "--log-level", "INFO", ns=node_ns).wait_logged('msg="l2 agent started"', timeout=45)
                built.start("ipam", "ipam", "--nats", server.url_for(BusUser.IPAM), "--http-port", "0",
                            "--http-host", "127.0.0.1")
                yield built
            except BaseException:
                print(built.diagnostics())
                raise
            finally:
                lab.close()  # every component goes before the server, which then checks its log


def status_document(cluster: Cluster) -> dict[str, object]:
    path = status_path(cluster.source, "default", "web")
    loaded = yaml.safe_load(path.read_text()) if path.exists() else None
    return loaded if isinstance(loaded, dict) else {}


def ingress(document: dict[str, object]) -> str | None:
    status = document.get("status")
    entries = status.get("loadBalancer", {}).get("ingress") if isinstance(status, dict) else None
    return str(entries[0]["ip"]) if entries else None


def announced_by(document: dict[str, object]) -> list[str]:
    metalbus = document.get("metalbus")
    entries = metalbus.get("announcedBy", []) if isinstance(metalbus, dict) else []
    return [str(entry["node"]) for entry in entries]


def test_each_component_with_its_own_credential_allocates_and_announces_a_new_service(cluster: Cluster) -> None:
    (cluster.source / "web.yaml").write_text(SERVICE)

    # allocated by the ipam, announced by the node, both written back by the watcher
    def announced() -> dict[str, object] | None:
        document = status_document(cluster)
        return document if ingress(document) and announced_by(document) == [NODE] else None

    document = wait_for(announced, timeout=45, message="web's status file with its IP, announced by node1")
    ip = ingress(document)
    assert ip is not None and ip.startswith("10.77.0.1")

    # on the wire: node1 answers ARP for it
    mac = cluster.lab.mac(cluster.node_ns)
    wait_for(lambda: arping(cluster.lab, cluster.wire_ns, ip) == [mac], timeout=15, message=f"{ip} answered")

    # the operator's credential is enough to be told the same
    explained = subprocess.run(
        [sys.executable, "-m", "services.cli", "explain", "default/web",
         "--nats", cluster.server.url_for(BusUser.OPERATOR)],
        capture_output=True, text=True, cwd=REPO, timeout=60, env={**os.environ, "COLUMNS": "300"}, check=False,
    )  # fmt: skip
    assert explained.returncode == 0, explained.stderr[-2000:]
    assert f"It holds {ip} from pool lan" in explained.stdout, explained.stdout
    assert f"{NODE} answers ARP on eth0" in explained.stdout, explained.stdout
