"""The announcer from the image, run as its DaemonSet says, in a node's network: it answers ARP and NDP for
the address a real ipam (from the image too) placed on its node, and holds a TCP MD5 signed BGP session
with BIRD, which learns the route.

Each node is a pod sandbox as Kubernetes makes one: a container with ``--network none`` holding the
network namespace (``hostNetwork: true``: the node's own), wired into the lab by moving veths into it (data
port on the lab's bridge, management port towards NATS). The announcer container joins that namespace and
runs with the ``securityContext``, capabilities, volumes and environment of the dev overlay's DaemonSet,
translated by :mod:`tests.containers.pods` (anything it does not know is refused). NATS listens where the
cluster's ``metalbus-nats`` Service would send it (the manifest's ``NATS_URL``, the name resolved in the
pod's ``/etc/hosts``); the announcer's password is its node's token, mounted where the projected token
volume would be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.common.permissions import BusUser
from tests.containers.engine import Engine
from tests.containers.pods import container_run, probe_passes
from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.routers import Bird
from tests.network.bgp_agent.harness import BirdNeighbor, Fabric, fabric, start_bird
from tests.network.bgp_agent.test_capabilities import ASN, IP4, IP6, PASSWORD, dual_stack_md5_world
from tests.unit.deploy.manifests import find, rendered

_SKIP = skip_reason("arping", "ndisc6") or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.containers, pytest.mark.timeout(900),
              pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

#: The engine turns IPv6 off in a container without an IPv6 network; a node's namespace has it.
IPV6_ON = ("--sysctl", "net.ipv6.conf.all.disable_ipv6=0", "--sysctl", "net.ipv6.conf.default.disable_ipv6=0")
NATS_SERVICE = "metalbus-nats"
NATS_PORT = 4222  # the port of the manifests' NATS_URL
#: The Linux capability bits a container here may hold (include/uapi/linux/capability.h).
CAPABILITY_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7,
                   "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "SYS_ADMIN": 21}


def daemonset() -> dict[str, object]:
    return find(rendered("dev"), "DaemonSet", "metalbus-announcer")


def ipam_deployment() -> dict[str, object]:
    return find(rendered("dev"), "Deployment", "metalbus-ipam")


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def held_capabilities(pid: int) -> set[str]:
    mask = int(_status(pid)["CapEff"], 16)
    held = {name for name, bit in CAPABILITY_BITS.items() if mask >> bit & 1}
    assert mask & ~sum(1 << bit for bit in CAPABILITY_BITS.values()) == 0, f"more capabilities: {mask:x}"
    return held


def root_is_read_only(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return "ro" in fields[5].split(",")
    raise AssertionError("no root mount")


def sandbox_of(engine: Engine, image: str, sandboxes: dict[str, str]) -> Callable[[Lab, str], str]:
    """A node's network namespace as a pod sandbox: a container of its own with ``--network none`` (its
    process only sleeps), adopted into the lab under the node's name."""

    def node_namespace(lab: Lab, name: str) -> str:
        container = engine.start("--network", "none", *IPV6_ON, "--entrypoint", "python", image, "-c",
                                 "import signal; signal.pause()", name=f"{lab.prefix}-{name}-sandbox")
        sandboxes[name] = container
        return lab.adopt(name, engine.pid_of(container))

    return node_namespace


def resolve_in_pod(engine: Engine, sandbox: str, name: str, address: str) -> None:
    """``name`` resolves to ``address`` in every container of the pod (they share the sandbox's hosts
    file), as the cluster's DNS would resolve a Service name."""
    hosts = Path(engine.docker("inspect", "--format", "{{.HostsPath}}", sandbox).stdout.strip())
    with hosts.open("a") as handle:
        handle.write(f"{address}\t{name}\n")


@pytest.fixture
def lab(container_engine: Engine, metalbus_image: str, tmp_path: Path) -> Iterator[tuple[Fabric, dict[str, str]]]:
    engine = container_engine
    sandboxes: dict[str, str] = {}
    try:
        with fabric(tmp_path, prefix="mbimg", node_namespace=sandbox_of(engine, metalbus_image, sandboxes),
                    nats_port=NATS_PORT) as fab:
            yield fab, sandboxes
    finally:
        for container in sandboxes.values():
            engine.remove(container)


def test_the_announcer_from_the_image_answers_arp_ndp_and_bgp_as_the_daemonset_runs_it(
    lab: tuple[Fabric, dict[str, str]], container_engine: Engine, metalbus_image: str, tmp_path: Path
) -> None:
    fab, sandboxes = lab
    engine = container_engine
    nats_address = fab.server.host
    bird: dict[str, BirdNeighbor] = start_bird(fab, router_as=ASN, node_as=ASN, password=PASSWORD)
    fab.observe(*dual_stack_md5_world())

    credentials = fab.server.credentials
    assert credentials is not None
    ipam = container_run(ipam_deployment(), "ipam", downward={"metadata.name": "metalbus-ipam-0"},
                         secrets={("metalbus-nats-ipam", "password"): credentials.password(BusUser.IPAM)})
    with engine.container(*ipam.options, "--network", "host", "--add-host", f"{NATS_SERVICE}:{nats_address}",
                          "--env", f"METALBUS_HTTP_ADDRESS={nats_address}",
                          metalbus_image, *ipam.arguments, name=f"{fab.lab.prefix}-ipam"):
        wait_for(lambda: fab.allocations().get("default/web") == (IP4, IP6), timeout=60, message="allocation")

        announcers: dict[str, str] = {}
        granted: frozenset[str] = frozenset()
        for name, node in fab.nodes.items():
            token = tmp_path / f"token-{name}"
            token.mkdir()
            (token / "token").write_text(credentials.node_token(name))
            run = container_run(daemonset(), "announcer", volumes={"nats-token": token}, downward={
                "spec.nodeName": name, "metadata.name": f"metalbus-announcer-{name}", "status.hostIP": node.mgmt_ip})
            assert run.host_network
            granted = run.capabilities
            resolve_in_pod(engine, sandboxes[name], NATS_SERVICE, nats_address)
            announcers[name] = engine.start(*run.options, "--network", f"container:{sandboxes[name]}",
                                            metalbus_image, *run.arguments, name=f"{fab.lab.prefix}-{name}")
        try:
            for name, node in fab.nodes.items():
                wait_for(lambda node=node: probe_passes(daemonset(), "announcer", "readinessProbe", node.mgmt_ip),
                         timeout=60, message=f"{name} ready")
                pid = engine.pid_of(announcers[name])
                assert held_capabilities(pid) == granted
                status = _status(pid)
                assert status["Uid"].split()[0] == "0" and status["NoNewPrivs"] == "1"
                assert root_is_read_only(pid)

            wait_for(lambda: all(b.established() for b in bird.values()), timeout=30, message="both BGP sessions")
            wait_for(lambda: bool(bird["node1"].route(f"{IP4}/32")), timeout=20, message="the route at BIRD")

            def answered(*command: str) -> bool:
                return fab.lab.run(fab.router, *command, check=False).returncode == 0

            wait_for(lambda: answered("arping", "-c", "1", "-w", "1", "-I", "eth0", IP4), timeout=20,
                     message="an ARP answer")
            wait_for(lambda: answered("ndisc6", "-1", "-r", "1", "-w", "500", IP6, "eth0"), timeout=20,
                     message="an NDP answer")
            for container in announcers.values():
                logs = engine.logs(container)
                assert not re.search(r"Operation not permitted|PermissionError|Read-only file system", logs), logs
        except BaseException:
            for name, container in announcers.items():
                print(f"--- announcer on {name}\n{engine.logs(container)[-4000:]}")
            print(*(b.diagnostics()[-3000:] for b in bird.values()), sep="\n")
            raise
        finally:
            for container in announcers.values():
                engine.remove(container)
