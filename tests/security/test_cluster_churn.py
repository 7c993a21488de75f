"""Services churn while a server of the production overlay's NATS cluster is lost and comes back.

    the prod overlay's three NATS servers (TLS, streams at three replicas, provisioned by the admin step)
    `metalbus watcher --kubeconfig` (as its ServiceAccount, the shipped RBAC enforced by the API stand-in)
    `metalbus ipam` x 2 (one active, one standby), each component with its own credential, all given the
    one server that leads the K8S stream (they learn the others from the cluster, as behind a Service name)

Services are created, updated and deleted through the official client without a pause while a server — that
one, or another — is killed (SIGKILL), stays down until the two others serve a Service made meanwhile, and is
started again.
Afterwards every Service converges: each one that exists shows in its status the address the ipam decided
for it, each deleted one has released its own, no address is shown by two Services that do not share it, no
Service ever showed, nor was given, a second address, and every component is ready again. How long after
the restart every Service was decided, and shown, is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest

from schemas.events import AllocationFailed, IPAllocated, IPReleased
from services.common.bus import Bus, BusSettings
from services.common.errors import RetryableError
from services.common.permissions import BusUser
from services.common.subjects import IPAM_ALLOCATIONS, StreamName
from tests.integration.test_cli import METALBUS, Process
from tests.kubeapi import KubeApi
from tests.kubeapi.shipped import WATCHER, running_as
from tests.secured_nats import permission_violations
from tests.security.shipped import ShippedCluster, ShippedServer, shipped_cluster
from tests.waiting import async_wait_until, wait_until

CONFIG_NAMESPACE = "metallb-system"
NAMESPACE = "shop"
POOL_RANGE = "10.96.0.10-10.96.0.250"
#: Services at most at once: the pool (241 addresses) never runs out.
MOST_SERVICES = 150
SHARING = "metallb.io/allow-shared-ip"
#: After the server is back, every Service shows its address within this (a figure is printed too).
CONVERGENCE_DEADLINE = 30.0
#: Changes made while the server is down, and after it is back.
CHANGES_WHILE_DOWN = 60
CHANGES_AFTER = 40


@dataclass
class Churn:
    """Services created, updated and deleted one change after another, in an order a seed decides.

    Names are never reused, so everything recorded about a name is about one Service. A Service made in
    a pair shares a key (``allow-shared-ip``) with its twin, on other ports."""

    core: kubernetes.client.CoreV1Api
    rng: random.Random = field(default_factory=lambda: random.Random(16))
    existing: dict[str, str | None] = field(default_factory=dict)  # name -> sharing key
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Every ingress list a Service was seen showing in its status.
    shown: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    #: An address two Services showed at once without sharing it, each time it was seen.
    doubles: list[str] = field(default_factory=list)
    changes: int = 0
    made: int = 0
    failure: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.change()
                if self.changes % 5 == 0:
                    self.look()
        except BaseException as error:  # surfaced by the test
            self.failure = error

    def change(self) -> None:
        roll = self.rng.random()
        if len(self.existing) >= MOST_SERVICES:  # the pool must not run out
            self.delete(self.rng.choice(sorted(self.existing)))
        elif roll < 0.5 or len(self.existing) < 6:
            self.create()
        elif roll < 0.8:
            self.update(self.rng.choice(sorted(self.existing)))
        else:
            self.delete(self.rng.choice(sorted(self.existing)))
        self.changes += 1

    def create(self) -> None:
        self.made += 1
        if self.made % 4 == 0:
            key = f"pair-{self.made}"
            self._create(f"svc-{self.made}-a", key, port=80)
            self._create(f"svc-{self.made}-b", key, port=443)
        else:
            self._create(f"svc-{self.made}", None, port=80)

    def _create(self, name: str, key: str | None, *, port: int) -> None:
        annotations = {SHARING: key} if key else {}
        self.core.create_namespaced_service(NAMESPACE, body={
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE, "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}],
                     "selector": {"app": key or name}},
        })  # fmt: skip
        self.existing[name] = key
        self.created.append(name)

    def update(self, name: str) -> None:
        """A change that must not move the address: labels, and the ports of a Service that shares none."""
        patch: dict[str, Any] = {"metadata": {"labels": {"revision": str(self.changes)}}}
        if self.existing[name] is None:
            patch["spec"] = {"ports": [{"port": 8000 + self.changes % 100, "protocol": "TCP"}]}
        self.core.patch_namespaced_service(name, NAMESPACE, patch)

    def delete(self, name: str) -> None:
        self.core.delete_namespaced_service(name, NAMESPACE)
        del self.existing[name]
        self.deleted.append(name)

    def look(self) -> dict[str, tuple[str, ...]]:
        """What each Service shows now (one list: a consistent view), recorded."""
        showing: dict[str, tuple[str, ...]] = {}
        holders: dict[str, set[str]] = {}
        for item in self.core.list_namespaced_service(NAMESPACE).items:
            name = str(item.metadata.name) if item.metadata else ""
            ingress = (item.status.load_balancer.ingress or []) if item.status and item.status.load_balancer else []
            ips = tuple(sorted(str(entry.ip) for entry in ingress if entry.ip))
            showing[name] = ips
            if ips:
                self.shown.setdefault(name, set()).add(ips)
            for ip in ips:
                holders.setdefault(ip, set()).add(name)
        for ip, names in holders.items():
            keys = {self.existing.get(name) for name in names}
            if len(names) > 1 and (len(keys) > 1 or None in keys):
                self.doubles.append(f"{ip} shown by {sorted(names)}")
        return showing


@dataclass
class Deployment:
    nats: ShippedCluster
    kube: KubeApi
    leader: ShippedServer
    """The server that led the K8S stream when the components started, the only one they were given."""
    processes: dict[str, Process]

    def unready(self) -> dict[str, str]:
        """The components whose ``/readyz`` does not answer 200, with what it says."""
        unready: dict[str, str] = {}
        for name, process in self.processes.items():
            port = process.find(r"http_port=(\d+)")
            assert port is not None, f"{name} did not say where its probes are"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/readyz", timeout=2):
                    pass
            except urllib.error.HTTPError as refusal:
                unready[name] = refusal.read().decode(errors="replace")
            except OSError as error:
                unready[name] = repr(error)
        return unready

    def logs(self) -> str:
        """The components' last lines, then what each NATS server last said of its cluster (leaders, quorum,
        warnings; not its attempts to reach the lost server)."""
        parts = [f"--- {name}\n{''.join(process.lines[-40:])}" for name, process in self.processes.items()]
        for server in self.nats.servers:
            said = [line for line in self.nats.log(server.index).splitlines()
                    if ("[WRN]" in line or "leader" in line or "quorum" in line.lower())
                    and "connect to route" not in line]
            parts.append(f"--- {server.name}\n" + "\n".join(said[-25:]))
        return "\n".join(parts)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    with (
        shipped_cluster("prod", tmp_path / "nats", startup_timeout=60) as nats,
        running_as(WATCHER, bookmark_interval=0.2) as kube,
    ):
        kube.put_object({
            "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
            "metadata": {"name": "shop", "namespace": CONFIG_NAMESPACE}, "spec": {"addresses": [POOL_RANGE]},
        })  # fmt: skip
        leader = nats.server_named(_stream_leader(nats, StreamName.K8S))
        kubeconfig = kube.kubeconfig(tmp_path / "kubeconfig")
        common = ["--nats-ca-file", str(nats.ca_file), "--http-port", "0", "--http-host", "127.0.0.1"]
        processes: dict[str, Process] = {}
        try:
            processes["watcher"] = Process([
                *METALBUS, "watcher", "--nats", nats.credentials.url(leader.url, BusUser.WATCHER), *common,
                "--kubeconfig", str(kubeconfig), "--namespace", CONFIG_NAMESPACE])  # fmt: skip
            for name in ("ipam-1", "ipam-2"):
                processes[name] = Process([*METALBUS, "ipam", "--nats", nats.credentials.url(leader.url, BusUser.IPAM),
                                           *common])  # fmt: skip
            deployment = Deployment(nats, kube, leader, processes)
            try:
                wait_until(lambda: any(p.find(r"msg=\"?active\b") for n, p in processes.items() if n != "watcher"),
                           timeout=40, what="an active ipam")  # fmt: skip
            except BaseException:
                print(deployment.logs())
                raise
            yield deployment
        finally:
            for process in processes.values():
                process.stop()


def _stream_leader(nats: ShippedCluster, stream: StreamName) -> str:
    async def leader() -> str:
        async with await _admin(nats) as bus:
            info = await bus.js.stream_info(stream.value)
            assert info.cluster is not None and info.cluster.leader
            return str(info.cluster.leader)

    return asyncio.run(leader())


async def _admin(nats: ShippedCluster) -> Bus:
    url = ",".join(nats.credentials.url(server.url, BusUser.ADMIN) for server in nats.servers)
    return await Bus.connect(BusSettings(url=url, tls_ca_file=nats.ca_file, initial_attempts=3), producer="admin/test")


@dataclass(frozen=True)
class Decisions:
    """The ipam's decisions on Services, as the IPAM stream holds them."""

    latest: dict[str, IPAllocated | IPReleased | AllocationFailed]
    given: dict[str, set[tuple[str, ...]]]
    """Every address set the ipam ever allocated to a Service."""


async def _decisions(bus: Bus) -> Decisions:
    latest: dict[str, IPAllocated | IPReleased | AllocationFailed] = {}
    given: dict[str, set[tuple[str, ...]]] = {}
    async for received in bus.read(StreamName.IPAM, subjects=[IPAM_ALLOCATIONS]):
        event = received.event
        if isinstance(event, IPAllocated | IPReleased | AllocationFailed) and event.service.namespace == NAMESPACE:
            latest[event.service.name] = event
            if isinstance(event, IPAllocated):
                given.setdefault(event.service.name, set()).add(tuple(sorted(event.ips)))
    return Decisions(latest, given)


def _undecided(churn: Churn, decisions: Decisions) -> list[str]:
    """What the ipam has not decided yet: a Service without an address, a deleted one still holding its own."""
    behind = [f"{name} has no address ({decisions.latest.get(name)})" for name in churn.existing
              if not isinstance(decisions.latest.get(name), IPAllocated)]  # fmt: skip
    behind += [f"{name} deleted, still holds its address" for name in churn.deleted
               if isinstance(decisions.latest.get(name), IPAllocated)]  # fmt: skip
    return behind


def _unshown(churn: Churn, showing: dict[str, tuple[str, ...]], decisions: Decisions) -> list[str]:
    """The Services whose status does not show the address the ipam decided for them."""
    behind = []
    for name in churn.existing:
        decided = decisions.latest.get(name)
        if isinstance(decided, IPAllocated) and showing.get(name) != tuple(sorted(decided.ips)):
            behind.append(f"{name} shows {showing.get(name)}, decided {decided.ips}")
    return behind


@contextlib.contextmanager
def churning(churn: Churn) -> Iterator[None]:
    """``churn`` making changes on a thread of its own until the block ends."""
    stop = threading.Event()
    worker = threading.Thread(target=churn.run, args=(stop,), name="churn", daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join(10)
    assert churn.failure is None, f"a change was refused: {churn.failure!r}"


async def changes(churn: Churn, count: int, what: str) -> None:
    """Until ``churn`` made ``count`` more changes."""
    until = churn.changes + count
    await async_wait_until(lambda: churn.changes >= until or churn.failure is not None, timeout=30, what=what)


async def converged(churn: Churn, bus: Bus, *, since: float) -> Decisions:
    """Wait until every Service is decided and shows its decision; print how long each took after ``since``."""
    behind: list[str] = []
    decided_after: list[float] = []

    async def settled() -> bool:
        try:
            decisions = await _decisions(bus)
        except RetryableError:  # the cluster still settling: its streams may not answer yet
            return False
        behind[:] = _undecided(churn, decisions)
        if not behind and not decided_after:
            decided_after.append(time.monotonic() - since)
        behind.extend(_unshown(churn, churn.look(), decisions))
        return not behind

    try:
        await async_wait_until(settled, timeout=CONVERGENCE_DEADLINE, interval=0.2, what="every Service converged")
    except AssertionError as error:
        raise AssertionError(f"{error}; still behind:\n" + "\n".join(behind[:20])) from None
    print(f"after the server was back: every Service decided in {decided_after[0]:.1f} s, shown in "
          f"{time.monotonic() - since:.1f} s ({len(churn.existing)} Services, {len(churn.deleted)} deleted, "
          f"{churn.changes} changes)")  # fmt: skip
    return await _decisions(bus)


async def all_ready(deployment: Deployment) -> None:
    unready: dict[str, str] = {}

    def ready() -> bool:
        unready.clear()
        unready.update(deployment.unready())
        return not unready

    try:
        await async_wait_until(ready, timeout=10, interval=0.2, what="every component ready")
    except AssertionError as error:
        raise AssertionError(f"{error}; not ready: {unready}") from None


@pytest.mark.parametrize("lost", ["given", "other"])
async def test_services_churning_through_a_server_loss_all_converge(deployment: Deployment, lost: str) -> None:
    """``given``: the server every component was given (leading K8S) is lost, so every connection moves;
    ``other``: one no component was given, so the connections stay while the consumers and stream leaders
    it held are lost under them."""
    nats = deployment.nats
    leader = deployment.leader if lost == "given" else next(s for s in nats.servers if s is not deployment.leader)
    try:
        with deployment.kube.api_client(admin=True) as client:
            churn = Churn(kubernetes.client.CoreV1Api(client))
            with churning(churn):
                await async_wait_until(lambda: len(churn.shown) >= 5 or churn.failure is not None, timeout=30,
                                       what="the first Services showing their addresses")
                nats.kill(leader)
                killed = time.monotonic()
                made_before = len(churn.created)
                await changes(churn, CHANGES_WHILE_DOWN, "Services changing while the server is down")
                await async_wait_until(lambda: any(name in churn.shown for name in churn.created[made_before:]),
                                       timeout=40, what="a Service made while the server is down shown")
                print(f"a Service made after the server was killed shown {time.monotonic() - killed:.1f} s after")
                nats.restart(leader)
                restarted = time.monotonic()
                print(f"the server was down {restarted - killed:.1f} s")
                await changes(churn, CHANGES_AFTER, "Services changing after the server is back")
            async with await _admin(nats) as bus:
                decisions = await converged(churn, bus, since=restarted)
            await all_ready(deployment)
            churn.look()
    except BaseException:
        print(deployment.logs())
        raise
    assert not churn.doubles, f"addresses shown by two Services that do not share: {churn.doubles[:10]}"
    moved = {name: shown for name, shown in churn.shown.items() if len(shown) > 1}
    assert not moved, f"Services that showed more than one address: {moved}"
    regiven = {name: given for name, given in decisions.given.items() if len(given) > 1}
    assert not regiven, f"Services given more than one address: {regiven}"
    refused = [line for server in nats.servers for line in permission_violations(nats.log_file(server.index))]
    assert not refused, "a component was refused by its NATS permissions:\n" + "\n".join(refused[:10])
