"""The BGP agent lab: real `metalbus announcer` processes on two nodes peering with a router, a real
`metalbus ipam`, NATS on a management network, the world published on the bus as the watcher would.

    namespace br:  br0 ── node1  eth0 10.77.0.2 fd77::2    (announcer)
                       ── node2  eth0 10.77.0.3 fd77::3    (announcer)
                       ── router eth0 10.77.0.1 fd77::1    (BIRD / FRR / GoBGP, passive)
    namespace mg:  mg0 ── nodeN mgmt0 10.254.X.1N
                       ── up0 ══ veth ══ this namespace 10.254.X.1: nats-server, ipam, the test's bus client

NATS runs metalbus's least-privilege accounts (`tests.secured_nats`): each announcer connects as its node, the
ipam as `ipam`; the test publishes the world with the watcher's credential.

The announcers act on ipam's decisions, so a real ipam runs whenever one does (started with the first
announcer, or by the test). A Service that names no IPs by annotation is held back until the test allocates
it (`allocate`): then it is published asking for those IPs, and ipam allocates them — as if the test had
decided them.
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.events import Event, IPAllocated, IPReleased, ServiceObserved
from services.common.bus import Bus, Received
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from services.common.subjects import IPAM_ALLOCATIONS, StreamName
from tests.bgp_world import publish_observed
from tests.bus_thread import BusThread
from tests.netlab import REPO, Lab, management_network, wait_for
from tests.network.bgp.routers import Bird, Frr, _start, start_frr_with_zebra
from tests.secured_nats import secured_nats

NODES = {"node1": ("10.77.0.2", "fd77::2"), "node2": ("10.77.0.3", "fd77::3")}
REQUESTED = "metallb.io/loadBalancerIPs"
ROUTER4, ROUTER6 = "10.77.0.1", "fd77::1"
METRICS_PORT = 7472


class Process:
    """A metalbus process and the last lines of its log."""

    def __init__(self, proc: subprocess.Popen[str], name: str) -> None:
        self.proc, self.name = proc, name
        self.log: collections.deque[str] = collections.deque(maxlen=3000)
        for stream in (proc.stdout, proc.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.log.append(line)

    def logged(self, pattern: str) -> bool:
        regex = re.compile(pattern)
        return any(regex.search(line) for line in list(self.log))

    def tail(self, lines: int = 40) -> str:
        return "".join(list(self.log)[-lines:])

    def wait_logged(self, pattern: str, timeout: float = 20.0) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.tail()}")
            return self.logged(pattern)

        wait_for(seen, timeout=timeout, message=f"{pattern!r} from {self.name}")


@dataclass
class Node:
    name: str
    ns: str
    data_port: str
    mgmt_ip: str
    announcer: Process | None = None


@dataclass
class Fabric:
    lab: Lab
    bridge: str
    router: str
    server: EmbeddedNats
    bus: BusThread  # the admin: provisions and reads
    as_watcher: Bus  # the test publishes observed state with the watcher's credential
    as_ipam: Bus  # and allocations with the ipam's
    directory: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    ipam: Process | None = None
    #: Services held back until allocated, and the IPs each allocated one asks for, by (namespace, name)
    held: dict[tuple[str, str], ServiceObserved] = field(default_factory=dict)
    requested: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)

    def start_announcer(self, name: str, *, wait: bool = True, wrapper: tuple[str, ...] = ()) -> Process:
        """``wrapper``: a command the announcer runs under (e.g. setpriv, to grant it given capabilities)."""
        node = self.nodes[name]
        if self.ipam is None:
            self.start_ipam()  # the announcers act on its decisions
        proc = self.lab.popen(
            node.ns, *wrapper, sys.executable, "-m", "services.cli", "announcer", "--node", name,
            "--nats", self.server.node_url(name), "--http-port", str(METRICS_PORT), "--http-host", node.mgmt_ip,
            "--exclude-interfaces", "mgmt*",
            "--log-level", "INFO", stdin=subprocess.DEVNULL,
        )  # fmt: skip
        node.announcer = Process(proc, f"announcer on {name}")
        if wait:
            node.announcer.wait_logged('msg="bgp agent started"')
        return node.announcer

    def start_announcers(self, *, wrapper: tuple[str, ...] = ()) -> None:
        """An announcer on every node, started together; returns once each has its BGP agent running."""
        for name in self.nodes:
            self.start_announcer(name, wait=False, wrapper=wrapper)
        for node in self.nodes.values():
            assert node.announcer is not None
            node.announcer.wait_logged('msg="bgp agent started"')

    def terminate(self, name: str, timeout: float = 15.0) -> int:
        announcer = self.nodes[name].announcer
        assert announcer is not None
        announcer.proc.terminate()
        try:
            return announcer.proc.wait(timeout)
        except subprocess.TimeoutExpired as slow:  # say what it was doing, not only that it did not end
            raise AssertionError(f"{name} still running {timeout:.0f} s after SIGTERM:\n{announcer.tail(80)}") from slow

    def start_ipam(self) -> Process:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "ipam", "--nats", self.server.url_for(BusUser.IPAM),
             "--http-port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )  # fmt: skip
        self.lab.processes.append(proc)  # the lab stops it with the rest
        self.ipam = Process(proc, "ipam")
        return self.ipam

    def set_link(self, name: str, *, up: bool) -> None:
        self.lab.run(self.bridge, "ip", "link", "set", self.nodes[name].data_port, "up" if up else "down")

    # --- the bus ---------------------------------------------------------------------------------------

    def observe(self, *events: Event) -> None:
        self.bus.call(publish_observed(self.as_watcher, *(e for e in map(self._requesting, events) if e)))

    def _requesting(self, event: Event) -> Event | None:
        """A Service as published: asking for the IPs it was allocated, or held back until it is."""
        if not isinstance(event, ServiceObserved) or REQUESTED in event.annotations:
            return event
        key = (event.ref.namespace, event.ref.name)
        ips = self.requested.get(key)
        if ips is None:
            self.held[key] = event
            return None
        policy = "RequireDualStack" if len(ips) > 1 else event.ip_family_policy
        return event.model_copy(update={"annotations": {**event.annotations, REQUESTED: ",".join(ips)},
                                        "ip_family_policy": policy})  # fmt: skip

    def allocate(self, event: IPAllocated | IPReleased) -> None:
        """ipam allocates ``event``'s IPs (the Service published asking for them; ipam started if it is not
        running), or has released them (the Service deleted by the test)."""
        key, name = (event.service.namespace, event.service.name), f"{event.service.namespace}/{event.service.name}"
        if isinstance(event, IPReleased):
            self.requested.pop(key, None)
            wait_for(lambda: not self.allocations().get(name), timeout=20, message=f"{name} released by ipam")
            return
        self.requested[key] = tuple(event.ips)
        held = self.held.pop(key, None)
        if held is not None:
            self.observe(held)
        if self.ipam is None:
            self.start_ipam()
        wait_for(lambda: self.allocations().get(name) == tuple(event.ips), timeout=20,
                 message=f"{name} allocated {event.ips} by ipam")  # fmt: skip

    def allocations(self) -> dict[str, tuple[str, ...]]:
        """The ipam's current allocation per Service ``ns/name`` (empty tuple: released or failed)."""

        async def read() -> dict[str, tuple[str, ...]]:
            found: dict[str, tuple[str, ...]] = {}
            async for received in self.bus.bus.read(
                StreamName.IPAM, subjects=[IPAM_ALLOCATIONS], last_per_subject=True
            ):
                found[_service_of(received)] = getattr(received.event, "ips", ()) if isinstance(
                    received.event, IPAllocated) else ()  # fmt: skip
            return found

        return self.bus.call(read())

    def metrics(self, name: str) -> dict[str, float]:
        url = f"http://{self.nodes[name].mgmt_ip}:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def diagnostics(self) -> str:
        parts = [f"--- {n.name}\n{n.announcer.tail()}" for n in self.nodes.values() if n.announcer is not None]
        if self.ipam is not None:
            parts.append(f"--- ipam\n{self.ipam.tail(20)}")
        return "\n".join(parts)


def _service_of(received: Received) -> str:
    event = received.event
    service = getattr(event, "service", None)
    return f"{service.namespace}/{service.name}" if service is not None else received.subject


@contextmanager
def fabric(directory: Path, prefix: str = "mbbga", *, node_namespace: Callable[[Lab, str], str] | None = None,
           nats_port: int = 0) -> Iterator[Fabric]:
    """Build the lab and start NATS (its credentials, store and log under ``directory``; ``nats_port`` 0: a
    free port); routers, the ipam and announcers are started by the test. All torn down. ``node_namespace``
    gives each node's network namespace (by default a new one of the lab's; e.g. a container's, adopted)."""
    with Lab(prefix) as lab, management_network(lab) as (mgmt, subnet):
        bridge = lab.namespace("br")
        lab.bridge(bridge)
        router = lab.namespace("router")
        lab.link(router, bridge_ns=bridge, addresses=[f"{ROUTER4}/24", f"{ROUTER6}/64"])
        nodes: dict[str, Node] = {}
        for index, (name, (v4, v6)) in enumerate(NODES.items(), start=1):
            ns = node_namespace(lab, name) if node_namespace is not None else lab.namespace(name)
            data_port = lab.link(ns, bridge_ns=bridge, addresses=[f"{v4}/24", f"{v6}/64"])
            mgmt_ip = f"{subnet}.1{index}"
            lab.link(ns, bridge_ns=mgmt, bridge="mg0", ifname="mgmt0", addresses=[f"{mgmt_ip}/24"])
            nodes[name] = Node(name, ns, data_port, mgmt_ip)
        with secured_nats(directory / "nats", host=f"{subnet}.1", port=nats_port) as server:
            bus = BusThread(server.url, name="bgp-lab")
            try:
                yield Fabric(lab, bridge, router, server, bus,
                             bus.connect(server.url_for(BusUser.WATCHER), name="bgp-lab-as-watcher"),
                             bus.connect(server.url_for(BusUser.IPAM), name="bgp-lab-as-ipam"), directory, nodes)
            finally:
                bus.close()
                lab.close()  # announcers and the ipam go before their bus


@contextmanager
def fabric_with_frr(directory: Path, bgpd_config: str, *, neighbor: str = "",
                    diagnose: str = "show bgp summary") -> Iterator[tuple[Fabric, Frr]]:
    """The fabric with FRR (zebra and bgpd) on its router; a failure prints the lab's state and FRR's answer to
    ``diagnose``. ``neighbor`` as :func:`start_frr_with_zebra` takes it."""
    with fabric(directory) as fab, tempfile.TemporaryDirectory(prefix="mbbga-frr-") as frr_dir:
        # zebra runs as user frr, which cannot enter pytest's private tmp_path
        frr = start_frr_with_zebra(fab.lab, fab.router, Path(frr_dir), bgpd_config, neighbor=neighbor)
        try:
            yield fab, frr
        except BaseException:
            print(fab.diagnostics(), frr.vtysh(diagnose, check=False).stdout, sep="\n")
            raise
        finally:
            fab.lab.close()  # the daemons go before their directory does


# --- BIRD with one protocol per node ----------------------------------------------------------------------


@dataclass
class BirdNeighbor(Bird):
    """BIRD's view through one protocol (one node's session)."""

    only: str = ""

    def route_text(self, prefix: str) -> str | None:
        out = self.birdc(f"show route all {prefix} protocol {self.only}", check=False).stdout
        return out if prefix in out else None

    def protocol(self, name: str = "") -> str:
        return self.birdc(f"show protocols all {name or self.only}").stdout

    def graceful_restart_active(self) -> bool:
        """BIRD helps this node restart: from its session's end, with its routes kept as stale, until its
        End-of-RIB on every channel of the new session (or the restart timer)."""
        return "Neighbor graceful restart active" in self.protocol()


FLOOD_PROTOCOL = "flood"


def flood_config(routes: int) -> str:
    """A static protocol of ``routes`` /24s from 16.0.0.0/6, disabled: ``birdc enable flood`` exports them all
    to every node at once (a peer sending a full table), ``birdc disable flood`` withdraws them all."""
    if routes > 1 << 18:
        raise ValueError(f"at most {1 << 18} flood routes")
    lines = "".join(f"    route {16 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24 blackhole;\n" for i in range(routes))
    return f"protocol static {FLOOD_PROTOCOL} {{\n    disabled;\n    ipv4;\n{lines}}}\n"


def start_bird(
    fab: Fabric,
    *,
    router_as: int,
    node_as: int,
    password: str | None = None,
    bfd_ms: int | None = None,
    flood: int = 0,
) -> dict[str, BirdNeighbor]:
    """BIRD with one passive protocol per node; with ``flood``, :func:`flood_config` routes ready to export."""
    directory = fab.directory / "bird"
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "bird.conf"
    secret = f'password "{password}";' if password else ""
    bfd_protocol = ""
    if bfd_ms is not None:
        bfd_protocol = (f'protocol bfd {{ interface "*" {{ min rx interval {bfd_ms} ms; min tx interval {bfd_ms} ms;'
                        " multiplier 3; }; }")  # fmt: skip
    export = f'export where proto = "{FLOOD_PROTOCOL}";' if flood else "export none;"
    protocols = "".join(
        f"""
protocol bgp {name} {{
    local {ROUTER4} as {router_as};
    neighbor {v4} as {node_as};
    passive on; direct; hold time 9; error wait time 1, 2; graceful restart on;
    {secret} {"bfd on;" if bfd_ms is not None else ""}
    ipv4 {{ import all; {export} gateway direct; }};
    ipv6 {{ import all; export none; gateway direct; }};
}}"""
        for name, (v4, _) in NODES.items()
    )
    conf.write_text(
        f'router id {ROUTER4};\nlog "{directory / "bird.log"}" all;\nprotocol device {{ scan time 1; }}\n'
        f"{bfd_protocol}\n{protocols}\n{flood_config(flood) if flood else ''}"
    )
    socket = str(directory / "bird.ctl")
    probe = Bird(fab.lab, fab.router, directory)
    proc = _start(fab.lab, fab.router, lambda: probe.birdc("show status", check=False).returncode == 0,
                  "bird", "-f", "-c", str(conf), "-s", socket, "-P", str(directory / "bird.pid"))  # fmt: skip
    return {name: BirdNeighbor(fab.lab, fab.router, directory, proc, only=name) for name in NODES}
