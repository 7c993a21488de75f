"""A rolling upgrade from the previous release, component by component in the documented order
(``docs/operations.md``): provisioning, the announcers one node at a time, the two ipam replicas one after the
other, the two watchers one after the other. The previous release runs from its tag's tree in a venv of its own
(``tests/releases.py``), side by side with this one, on the L2 lab (three nodes, a client, NATS on the
management network) and the Kubernetes API stand-in.

Over the whole upgrade: no Service's address changes (every allocation on ``IPAM`` and every status), nothing
is dead-lettered, and each IPv4 VIP, probed every 50 ms, is answered throughout but for failovers of at most
1 s. NATS runs this release's accounts from the start (they only add to the previous release's).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas.events import IPAllocated, IPReleased, KindListed
from services.common.permissions import BusUser
from services.common.subjects import IPAM_PREFIX, K8S_LISTED_PREFIX, StreamName
from tests.integration.test_cli import Process
from tests.integration.watcher.helpers import http_ready
from tests.integration.watcher.status.harness import ingress
from tests.kubeapi import KubeApi
from tests.kubeapi.fixtures import BOOKMARK_INTERVAL
from tests.kubeapi.shipped import WATCHER, running_as
from tests.netlab import skip_reason, wait_for
from tests.network.l2.tools import arping, ndisc6
from tests.network.l2_cluster.harness import NODES, Cluster, IpamProcess, NeighborWatch, cluster
from tests.network.l2_cluster.kube_objects import CONFIG_NAMESPACE, Obj, ServiceSpec, configuration, service_objects
from tests.releases import CURRENT, Release, built_release, unavailable

_SKIP = skip_reason("arping", "ndisc6", "ping") or unavailable()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

SERVICES = (
    ServiceSpec("web"),
    ServiceSpec("api", nodes=("node2", "node3"), local=True),
    ServiceSpec("web6", family="IPv6"),
)
#: The longest a VIP may go unanswered: a failover.
FAILOVER = 1.0


def objects() -> list[Obj]:
    """The cluster: three Nodes, a pool over the lab's VIPs, an L2Advertisement on eth0, the Services and their
    endpoints."""
    found = configuration("lab", "10.0.0.100-10.0.0.103", "fd00::100-fd00::103")
    for index, spec in enumerate(SERVICES):
        found += service_objects(spec, index)
    return found


def shown(api: KubeApi) -> dict[str, list[str]]:
    """What each Service's status shows."""
    return {spec.name: [entry.get("ip", "") for entry in ingress(api, spec.name)] for spec in SERVICES}


def every_address_shown(api: KubeApi) -> dict[str, list[str]] | None:
    now = shown(api)
    return now if all(len(ips) == 1 for ips in now.values()) else None


def addresses_ever(lab: Cluster) -> dict[str, set[tuple[str, ...]]]:
    """Every address set each Service was ever allocated on ``IPAM`` (a release counts as the empty one)."""

    async def read() -> dict[str, set[tuple[str, ...]]]:
        found: dict[str, set[tuple[str, ...]]] = {}
        async for received in lab.bus.bus.read(StreamName.IPAM, subjects=[f"{IPAM_PREFIX}.allocation.>"]):
            event = received.event
            if isinstance(event, IPAllocated):
                found.setdefault(event.service.name, set()).add(tuple(event.ips))
            elif isinstance(event, IPReleased):
                found.setdefault(event.service.name, set()).add(())
        return found

    return lab.bus.call(read())


def list_marks(lab: Cluster) -> list[KindListed]:
    async def read() -> list[KindListed]:
        return [r.event async for r in lab.bus.bus.read(StreamName.K8S, subjects=[f"{K8S_LISTED_PREFIX}.*"])
                if isinstance(r.event, KindListed)]

    return lab.bus.call(read())


def dead_letters(lab: Cluster) -> int:
    async def count() -> int:
        info = await lab.bus.bus.js.stream_info(StreamName.DEAD_LETTER.value)
        return int(info.state.messages)

    return lab.bus.call(count())


def ready(process: Process | IpamProcess) -> Callable[[], bool]:
    """Whether the process answers /readyz with 200 (its port from its log)."""

    def check() -> bool:
        lines = process.lines if isinstance(process, Process) else process.log
        match = next((m for line in list(lines) if (m := re.search(r"http_port=(\d+)", line))), None)
        return match is not None and http_ready(int(match.group(1)))

    return check


class Components:
    """The control plane's processes (the announcers are the lab's), each of some release; all ended on close."""

    def __init__(self, lab: Cluster, kubeconfig: Path) -> None:
        self.lab = lab
        self.kubeconfig = kubeconfig
        self.ipams: dict[str, IpamProcess] = {}
        self.watchers: dict[str, Process] = {}

    def ipam(self, name: str, release: Release) -> IpamProcess:
        self.ipams[name] = IpamProcess(self.lab.server.url_for(BusUser.IPAM), release=release, name=name)
        return self.ipams[name]

    def watcher(self, name: str, release: Release) -> Process:
        self.watchers[name] = Process(
            release.command("watcher", "--nats", self.lab.server.url_for(BusUser.WATCHER), "--kubeconfig",
                            str(self.kubeconfig), "--namespace", CONFIG_NAMESPACE, "--http-port", "0",
                            "--http-host", "127.0.0.1"),
            env=release.env({**os.environ, "POD_NAME": name}), cwd=release.root)
        return self.watchers[name]

    def close(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
        for ipam in self.ipams.values():
            ipam.stop()


def provision(lab: Cluster, release: Release) -> None:
    """``metalbus bus provision`` of ``release``, as the admin."""
    done = Process(release.command("bus", "provision", "--nats", lab.server.url), env=release.env(dict(os.environ)),
                   cwd=release.root)
    assert done.popen.wait(60) == 0, "".join(done.lines)


@pytest.fixture
def previous(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return built_release(tmp_path_factory.mktemp("releases"))


@pytest.fixture
def api() -> Iterator[KubeApi]:
    with running_as(WATCHER, bookmark_interval=BOOKMARK_INTERVAL) as running:
        yield running


def test_a_rolling_upgrade_from_the_previous_release_changes_no_address_and_keeps_the_vips_answered(
    tmp_path: Path, previous: Release, api: KubeApi
) -> None:
    with cluster(tmp_path, prefix="mbupg", provision=False) as lab:
        components = Components(lab, api.kubeconfig(tmp_path / "kubeconfig", service_account=WATCHER))
        try:
            # --- the previous release runs the cluster ---------------------------------------------------
            provision(lab, previous)
            for obj in objects():
                api.put_object(obj)
            lab.start_all(release=previous)
            for name in ("ipam-a", "ipam-b"):
                components.ipam(name, previous)
            for name in ("watcher-a", "watcher-b"):
                components.watcher(name, previous)
            before = wait_for(lambda: every_address_shown(api), timeout=60, message="every Service showing its address")
            vips4 = [ips[0] for ips in before.values() if ":" not in ips[0]]
            assert not list_marks(lab), "the previous release's watcher marks no lists"
            for vip in vips4:
                wait_for(lambda vip=vip: bool(arping(lab.lab, lab.client, vip, count=1)), timeout=10,
                         message=f"{vip} answered")
            watches = {vip: NeighborWatch(lab.lab, lab.client, vip, interval=0.05) for vip in vips4}
            started = time.monotonic()
            try:
                # --- 1. provisioning ----------------------------------------------------------------------
                provision(lab, CURRENT)
                # --- 2. the announcers, one node at a time (the DaemonSet's rolling update) -----------------
                for name in NODES:
                    old = lab.nodes[name].announcer
                    assert old is not None and not old.logged("data plane reported")  # the previous release's
                    assert lab.terminate(name) == 0
                    announcer = lab.start(name, release=CURRENT)
                    announcer.wait_logged(r'msg="data plane reported" .* ready=True', timeout=15)
                # --- 3. ipam, one replica after the other ---------------------------------------------------
                for name in ("ipam-a", "ipam-b"):
                    components.ipams[name].stop()
                    wait_for(ready(components.ipam(name, CURRENT)), timeout=60, message=f"{name} ready")
                # --- 4. the watchers, one after the other ---------------------------------------------------
                for name in ("watcher-a", "watcher-b"):
                    assert components.watchers[name].stop() == 0
                    wait_for(ready(components.watcher(name, CURRENT)), timeout=60, message=f"{name} ready")
                wait_for(lambda: any(w.find(r"msg=leading\b") for w in components.watchers.values()),
                         timeout=30, message="an upgraded watcher leading")
                ended = time.monotonic()
            finally:
                for watch in watches.values():
                    watch.stop()

            # --- nothing moved, nothing lost, nothing unanswered for long --------------------------------------
            assert list_marks(lab), "this release's watcher leads: it marks its lists"
            assert shown(api) == before
            assert addresses_ever(lab) == {name: {tuple(ips)} for name, ips in before.items()}
            assert dead_letters(lab) == 0
            for vip, watch in watches.items():
                gap = watch.longest_gap_between(started, ended)
                print(f"rolling upgrade: {vip} longest unanswered {gap * 1000:.0f} ms over {ended - started:.1f} s")
                assert gap <= FAILOVER
            (vip6,) = before["web6"]
            assert ndisc6(lab.lab, lab.client, vip6) is not None
        finally:
            components.close()
