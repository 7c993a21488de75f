"""The L2 cluster lab: three nodes running the real announcer, a client, NATS on a separate management network.

    namespace br:  br0 ── node1 eth0 10.0.0.11 fd00::11, eth1 (no address)
                       ── node2 eth0 10.0.0.12 fd00::12
                       ── node3 eth0 10.0.0.13 fd00::13
                       ── client eth0 10.0.0.9 fd00::9
    namespace mg:  mg0 ── nodeN mgmt0 10.254.X.1N      (the bus path: cut it to partition a node)
                       ── up0 ══ veth ══ this namespace 10.254.X.1: nats-server, ipam, the test's bus client

Each announcer is `python -m services.cli announcer --node nodeN --nats URL --exclude-interfaces mgmt*` inside
its namespace, with /metrics on its management address. NATS runs metalbus's least-privilege accounts
(`tests.secured_nats`): each announcer connects as its node, the ipam as `ipam`, the test as the admin.
Cutting a link sets the node's bridge port down: the cable is pulled at the switch, the node's own interface
stays up.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.events import (
    AnnouncementReported,
    Event,
    L2PlacementCleared,
    L2PlacementDecided,
    ServiceId,
    ServiceObserved,
)
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from services.common.subjects import (
    ANNOUNCE_PREFIX,
    IPAM_PLACEMENTS,
    StreamName,
    encode_token,
    ipam_placement_subject,
    observed_subject,
)
from tests.builders import pool, service
from tests.builders_l2 import endpoints, l2, node
from tests.bus_thread import BusThread
from tests.netlab import Lab, management_network, wait_for
from tests.releases import CURRENT, Release
from tests.secured_nats import secured_nats

NODES = ("node1", "node2", "node3")
CLIENT4, CLIENT6 = "10.0.0.9", "fd00::9"
WEB = ServiceId(namespace="default", name="web", uid="uid-web")
METRICS_PORT = 7472


class AnnouncerProcess:
    """One real announcer: its process and the last lines of its log."""

    def __init__(self, lab: Lab, node: Node, url: str, *extra: str, release: Release = CURRENT) -> None:
        self.node = node
        self.release = release
        self.proc = lab.popen(
            node.ns, *release.command(
                "announcer", "--node", node.name, "--nats", url, "--http-port", str(METRICS_PORT), "--http-host",
                node.mgmt_ip, "--exclude-interfaces", "mgmt*", "--log-level", "INFO", *extra),
            stdin=subprocess.DEVNULL, root=release.root,
        )  # fmt: skip
        self.log: list[str] = []  # every line of stdout and stderr (a lab run is short)
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line)

    def mark(self) -> int:
        """A position in the log: `logged(..., since=mark)` looks only at later lines."""
        return len(self.log)

    def logged(self, pattern: str, *, since: int = 0) -> bool:
        regex = re.compile(pattern)
        return any(regex.search(line) for line in self.log[since:])

    def wait_logged(self, pattern: str, *, since: int = 0, timeout: float = 10.0) -> None:
        wait_for(lambda: self.logged(pattern, since=since), timeout=timeout,
                 message=f"{pattern!r} in the log of {self.node.name}")

    def tail(self, lines: int = 30) -> str:
        return "".join(list(self.log)[-lines:])

    def wait_started(self, timeout: float = 45.0) -> None:
        def started() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"announcer on {self.node.name} exited {self.proc.returncode}:\n{self.tail()}")
            return self.logged('msg="l2 agent started"')

        wait_for(started, timeout=timeout, message=f"the announcer on {self.node.name} to start")


class IpamProcess:
    """`metalbus ipam` as a child process, its log kept for failure messages."""

    def __init__(self, url: str, *, release: Release = CURRENT, name: str | None = None) -> None:
        self.release = release
        self.proc = subprocess.Popen(
            release.command("ipam", "--nats", url, "--http-port", "0", "--http-host", "127.0.0.1"),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            cwd=release.root, env=release.env({**os.environ, **({"POD_NAME": name} if name else {})}),
        )  # fmt: skip
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def l2_world(*services: ServiceObserved, interfaces: tuple[str, ...] = ("eth0",)) -> list[Event]:
    """A pool over the lab's VIPs, one L2Advertisement (answering on `interfaces`), the three nodes, and
    `services` with a serving endpoint on every node."""
    spec: dict[str, Any] = {"ipAddressPools": ["lab"], **({"interfaces": list(interfaces)} if interfaces else {})}
    world: list[Event] = [
        pool("lab", "10.0.0.100-10.0.0.139", "fd00::100-fd00::13f"),
        l2("lab", **spec),
        *(node(name) for name in NODES),
    ]
    for svc in services:
        world += [svc, endpoints(svc.ref.name, *NODES)]
    return world


def lb_service(name: str, ip: str, **fields: Any) -> ServiceObserved:
    """A LoadBalancer Service asking for `ip` (IPv4 or IPv6) through `metallb.io/loadBalancerIPs`."""
    family: dict[str, Any] = {"ip_families": ("IPv6",), "cluster_ips": ("fd00:96::10",)} if ":" in ip else {}
    return service(name, annotations={"metallb.io/loadBalancerIPs": ip}, **{**family, **fields})


@dataclass
class Node:
    name: str
    ns: str
    data_port: str
    mgmt_port: str
    mgmt_ip: str
    announcer: AnnouncerProcess | None = None


@dataclass
class Cluster:
    lab: Lab
    bridge: str
    mgmt: str
    client: str
    bus: BusThread  # the admin: provisions and reads
    server: EmbeddedNats
    as_watcher: Bus  # the test publishes observed state with the watcher's credential
    as_ipam: Bus  # and decisions with the ipam's
    nodes: dict[str, Node] = field(default_factory=dict)
    ipam: IpamProcess | None = None

    # --- announcers ---------------------------------------------------------------------------------

    def start(self, name: str, *extra: str, wait: bool = True, release: Release = CURRENT) -> AnnouncerProcess:
        node = self.nodes[name]
        node.announcer = AnnouncerProcess(self.lab, node, self.server.node_url(name), *extra, release=release)
        if wait:
            node.announcer.wait_started()
        return node.announcer

    def start_all(self, release: Release = CURRENT) -> None:
        for name in NODES:
            self.start(name, wait=False, release=release)
        for name in NODES:
            announcer = self.nodes[name].announcer
            assert announcer is not None
            announcer.wait_started()

    def kill(self, name: str) -> None:
        """kill -9 the node's announcer."""
        announcer = self.nodes[name].announcer
        assert announcer is not None
        announcer.proc.kill()
        announcer.proc.wait(5)

    def terminate(self, name: str, timeout: float = 15.0) -> int:
        announcer = self.nodes[name].announcer
        assert announcer is not None
        announcer.proc.terminate()
        return announcer.proc.wait(timeout)

    # --- links --------------------------------------------------------------------------------------

    def set_data_link(self, name: str, *, up: bool) -> None:
        self.lab.run(self.bridge, "ip", "link", "set", self.nodes[name].data_port, "up" if up else "down")

    def set_mgmt_link(self, name: str, *, up: bool) -> None:
        self.lab.run(self.mgmt, "ip", "link", "set", self.nodes[name].mgmt_port, "up" if up else "down")

    def mac(self, name: str, ifname: str = "eth0") -> str:
        return self.lab.mac(self.nodes[name].ns, ifname)

    # --- the ipam -------------------------------------------------------------------------------------

    def start_ipam(self) -> None:
        """The real `metalbus ipam` (in this namespace, on the management network): it places the IPs."""
        self.ipam = IpamProcess(self.server.url_for(BusUser.IPAM))

    def observe(self, *events: Event) -> None:
        """Publish observed Kubernetes state on the K8S stream, as the watcher would."""
        self.bus.call(self.as_watcher.publish_many((observed_subject(e), e, None) for e in events))

    def _newest_placements(self) -> dict[str, tuple[L2PlacementDecided | L2PlacementCleared, int]]:
        """IP → its newest placement event and that event's sequence (its epoch)."""

        async def read() -> dict[str, tuple[L2PlacementDecided | L2PlacementCleared, int]]:
            placed: dict[str, tuple[L2PlacementDecided | L2PlacementCleared, int]] = {}
            async for received in self.bus.bus.read(StreamName.IPAM, subjects=[IPAM_PLACEMENTS], last_per_subject=True):
                if isinstance(received.event, L2PlacementDecided | L2PlacementCleared):
                    placed[received.event.ip] = (received.event, received.sequence)
            return placed

        return self.bus.call(read())

    def placements(self) -> dict[str, tuple[str | None, int]]:
        """IP → (node or None when cleared, epoch) of the newest placement per IP."""
        return {ip: (event.node if isinstance(event, L2PlacementDecided) else None, sequence)
                for ip, (event, sequence) in self._newest_placements().items()}

    def placement_events(self) -> dict[str, L2PlacementDecided | L2PlacementCleared]:
        """IP → its newest placement event (with its reason)."""
        return {ip: event for ip, (event, _) in self._newest_placements().items()}

    def wait_owner(self, ip: str, match: Callable[[str], bool] = lambda _: True, timeout: float = 10.0) -> str:
        """The node the newest placement of `ip` names, once `match` holds for it."""

        def owner() -> str | None:
            node, _epoch = self.placements().get(ip, (None, 0))
            return node if node is not None and match(node) else None

        try:
            return wait_for(owner, timeout=timeout, message=f"a placement of {ip}")
        except TimeoutError as error:
            log = "".join(self.ipam.log[-15:]) if self.ipam is not None else "(no ipam running)"
            raise TimeoutError(f"{error}; placements {self.placements()}; ipam log:\n{log}") from None

    # --- the bus --------------------------------------------------------------------------------------

    def place(self, ip: str, node: str, *interfaces: str) -> int:
        """Publish a placement as the ipam would; returns its epoch."""
        event = L2PlacementDecided(ip=ip, node=node, services=(WEB,), interfaces=interfaces, reason="test")
        return self.bus.call(self.as_ipam.publish(ipam_placement_subject(ip), event)).sequence

    def clear(self, ip: str) -> int:
        return self.bus.call(self.as_ipam.publish(ipam_placement_subject(ip), L2PlacementCleared(ip=ip))).sequence

    def reports(self, node: str) -> dict[str, AnnouncementReported]:
        """The newest AnnouncementReported per IP of `node`."""

        async def read() -> dict[str, AnnouncementReported]:
            found: dict[str, AnnouncementReported] = {}
            subject = f"{ANNOUNCE_PREFIX}.{encode_token(node)}.ip.>"
            async for received in self.bus.bus.read(StreamName.ANNOUNCE, subjects=[subject], last_per_subject=True):
                if isinstance(received.event, AnnouncementReported):
                    found[received.event.ip] = received.event
            return found

        return self.bus.call(read())

    def wait_report(
        self, node: str, ip: str, match: Callable[[AnnouncementReported], bool] = lambda _: True, timeout: float = 5.0
    ) -> AnnouncementReported:
        def found() -> AnnouncementReported | None:
            report = self.reports(node).get(ip)
            return report if report is not None and match(report) else None

        return wait_for(found, timeout=timeout, message=f"a matching report of {ip} from {node}")

    def wait_metric(self, node: str, sample: str, at_least: float = 1.0, timeout: float = 5.0) -> dict[str, float]:
        """The node's metrics once `sample` reaches `at_least`."""

        def reached() -> dict[str, float] | None:
            metrics = self.metrics(node)
            return metrics if metrics.get(sample, 0.0) >= at_least else None

        return wait_for(reached, timeout=timeout, message=f"{sample} >= {at_least} on {node}")

    def metrics(self, name: str) -> dict[str, float]:
        """`name{labels}` → value from the node's /metrics (over the management network)."""
        url = f"http://{self.nodes[name].mgmt_ip}:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples


def topology(lab: Lab, mgmt: str, subnet: str) -> tuple[str, dict[str, Node], str]:
    """The data network (a bridge, the three nodes, node1's spare eth1, the client) and each node's port on the
    management network ``mgmt``: the bridge's namespace, the nodes, the client's namespace."""
    bridge = lab.namespace("br")
    lab.bridge(bridge)
    nodes: dict[str, Node] = {}
    for index, name in enumerate(NODES, start=1):
        ns = lab.namespace(name)
        data_port = lab.link(ns, bridge_ns=bridge, addresses=[f"10.0.0.1{index}/24", f"fd00::1{index}/64"])
        mgmt_ip = f"{subnet}.1{index}"
        mgmt_port = lab.link(ns, bridge_ns=mgmt, bridge="mg0", ifname="mgmt0", addresses=[f"{mgmt_ip}/24"])
        nodes[name] = Node(name, ns, data_port, mgmt_port, mgmt_ip)
    lab.link(nodes["node1"].ns, bridge_ns=bridge, ifname="eth1")
    client = lab.namespace("client")
    lab.link(client, bridge_ns=bridge, addresses=[f"{CLIENT4}/24", f"{CLIENT6}/64"])
    return bridge, nodes, client


@contextmanager
def cluster(directory: Path, prefix: str = "mbl2c", *, provision: bool = True) -> Iterator[Cluster]:
    """Build the lab, start NATS (its credentials, store and log under `directory`; the streams provisioned
    unless not `provision`); announcers are started by the test (`start_all`). Everything is torn down."""
    with Lab(prefix) as lab, management_network(lab) as (mgmt, subnet):
        bridge, nodes, client = topology(lab, mgmt, subnet)
        with secured_nats(directory / "nats", host=f"{subnet}.1", provision=provision) as server:
            bus = BusThread(server.url, name="l2-lab")
            built: Cluster | None = None
            try:
                built = Cluster(lab, bridge, mgmt, client, bus, server,
                                bus.connect(server.url_for(BusUser.WATCHER), name="l2-lab-as-watcher"),
                                bus.connect(server.url_for(BusUser.IPAM), name="l2-lab-as-ipam"), nodes)
                yield built
            finally:
                if built is not None and built.ipam is not None:
                    built.ipam.stop()
                bus.close()
                lab.close()  # announcers go before their bus


class NeighborWatch:
    """The neighbor prober on the client (ARP or NDP), read in a thread: (monotonic time, MAC) of every reply for
    one VIP.
    Times are CLOCK_MONOTONIC, the same in every process and namespace of the machine."""

    def __init__(self, lab: Lab, ns: str, vip: str, *, interval: float = 0.01) -> None:
        self.proc = popen_prober(lab, ns, vip, interval=interval)
        self.replies: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            reply = json.loads(line)
            self.replies.append((reply["t"], reply["mac"]))

    def first_after(self, since: float, *, mac: str | None = None, not_mac: str | None = None,
                    timeout: float = 10.0) -> float:
        """Time of the first reply after `since` (from `mac`, or from anyone but `not_mac`)."""

        def found() -> float | None:
            for t, m in list(self.replies):
                if t > since and (mac is None or m == mac) and (not_mac is None or m != not_mac):
                    return t
            return None

        return wait_for(found, timeout=timeout, message="an ARP answer", interval=0.005)

    def macs_since(self, since: float) -> set[str]:
        """The MACs that answered after `since`."""
        return {m for t, m in list(self.replies) if t > since}

    def last_before(self, until: float) -> float | None:
        earlier = [t for t, _ in list(self.replies) if t < until]
        return earlier[-1] if earlier else None

    def longest_gap(self) -> float:
        times = [t for t, _ in list(self.replies)]
        return max((b - a for a, b in itertools.pairwise(times)), default=float("inf"))

    def longest_gap_between(self, start: float, end: float) -> float:
        """The longest time without an answer from ``start`` to ``end`` (their edges count as answers only
        if one came)."""
        times = [start, *(t for t, _ in list(self.replies) if start < t < end), end]
        return max(b - a for a, b in itertools.pairwise(times))

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(5)


def popen_prober(lab: Lab, ns: str, ip: str, *, interval: float = 0.01) -> subprocess.Popen[str]:
    """The neighbor prober in `ns` (see `prober`); its first line is `{"ready": true}`."""
    proc = lab.popen(
        ns, sys.executable, "-m", "tests.network.l2_cluster.prober", "--ip", ip, "--interval", str(interval)
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if '"ready"' not in first:
        raise RuntimeError(f"prober did not start: {first!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def other_than(name: str) -> Callable[[str], bool]:
    """A `wait_owner` match: any node but `name`."""
    return lambda node: node != name
