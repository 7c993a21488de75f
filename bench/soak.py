"""Soak: the whole system under random faults, its invariants checked from the outside (needs root).

    python bench/soak.py [--minutes N] [--seed S]        (default 20 minutes; CI runs 2: tests/network/soak)

Setup, in network namespaces (``tests/network/l2_cluster/harness.py``'s lab: three nodes, a client, the bus on a
management network): a 3-server NATS cluster with every stream replicated three times, 2 watchers on the
Kubernetes API stand-in, 2 ipam replicas, 3 announcers. Services: four IPv4 and one IPv6 with endpoints on every
node, one IPv4 ``Local`` Service served on two nodes, two Services sharing one address, and Services created and
deleted as the soak goes.

Faults, one at a time, each held for a moment and healed, in rounds that take every kind once in a random order:
kill -9 of an announcer, an ipam replica or a watcher (started again a moment later); a NATS server restarted;
a node's data link flapped; a node cut from the bus (its management link down); Service churn.

Invariants, checked all along from the outside (the API stand-in, the wire):
- each VIP (ARP or neighbor solicitation, probed every 50 ms) is answered by exactly one MAC, but for failovers of
  at most 1 s: ``unanswered`` (a longer silence), ``two_answering`` (several MACs for longer);
- no Service's address changes once shown (``address_changed``) or goes (``address_withdrawn``);
- no address is shown by two Services that do not share it (``shown_twice``);
- once the faults stop, every Service shows its address and every VIP is answered by the node it is placed on,
  within 30 s (``not_converged``).
Also printed: the longest silence and multi-MAC answer per VIP, and the standby watcher's takeover after each kill
-9 of the leading one (target 2 s).
Prints the faults by kind and the violations by kind (with details); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from schemas.events import L2PlacementDecided
from services.common.credentials import BusCredentials
from services.common.nats_server import ClusterRoutes, EmbeddedNats, provision_command
from services.common.permissions import BusUser
from services.common.subjects import IPAM_PLACEMENTS, STREAMS, StreamName
from services.watcher.leader import LEASE_NAME
from tests.bus_thread import BusThread
from tests.integration.test_cli import Process
from tests.integration.watcher.helpers import http_ready
from tests.kubeapi import KubeApi
from tests.kubeapi.fixtures import BOOKMARK_INTERVAL
from tests.kubeapi.shipped import WATCHER, running_as
from tests.netlab import Lab, management_network, wait_for
from tests.network.l2_cluster.harness import (
    NODES,
    AnnouncerProcess,
    IpamProcess,
    NeighborWatch,
    Node,
    topology,
)
from tests.network.l2_cluster.kube_objects import CONFIG_NAMESPACE, ServiceSpec, configuration, service_objects
from tests.releases import CURRENT

SERVERS = 3
#: The longest a VIP may go unanswered, or answered by several MACs: a failover.
FAILOVER = 1.0
PROBE_INTERVAL = 0.05
STATUS_INTERVAL = 0.25
CONVERGE_WITHIN = 30.0
SHARED_IP = "10.0.0.140"


class Fault(enum.StrEnum):
    KILL_ANNOUNCER = "kill_announcer"
    KILL_IPAM = "kill_ipam"
    KILL_WATCHER = "kill_watcher"
    NATS_RESTART = "nats_restart"
    LINK_FLAP = "link_flap"
    PARTITION = "partition"
    CHURN = "churn"


class Violation(enum.StrEnum):
    UNANSWERED = "unanswered"
    TWO_ANSWERING = "two_answering"
    ADDRESS_CHANGED = "address_changed"
    ADDRESS_WITHDRAWN = "address_withdrawn"
    SHOWN_TWICE = "shown_twice"
    NOT_CONVERGED = "not_converged"


@dataclass
class Report:
    minutes: float
    seed: int
    faults: Counter[Fault] = field(default_factory=Counter)
    violations: Counter[Violation] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)
    #: per VIP: the longest silence and the longest time several MACs answered (seconds)
    longest_gap: dict[str, float] = field(default_factory=dict)
    longest_conflict: dict[str, float] = field(default_factory=dict)
    #: seconds from kill -9 of the leading watcher to the other holding its Lease
    watcher_takeovers: list[float] = field(default_factory=list)

    def violated(self, kind: Violation, detail: str) -> None:
        self.violations[kind] += 1
        self.details.append(f"{kind.value}: {detail}")

    def as_dict(self) -> dict[str, Any]:
        return {"minutes": self.minutes, "seed": self.seed, "faults": {k.value: n for k, n in self.faults.items()},
                "violations": {k.value: n for k, n in self.violations.items()}, "details": self.details,
                "longest_gap_s": self.longest_gap, "longest_conflict_s": self.longest_conflict,
                "watcher_takeovers_s": [round(t, 3) for t in self.watcher_takeovers]}


# --- the cluster's objects --------------------------------------------------------------------------------


STABLE = (
    *(ServiceSpec(f"web-{i}") for i in range(4)),
    ServiceSpec("web-6", family="IPv6"),
    ServiceSpec("local", nodes=("node2", "node3"), local=True),
    ServiceSpec("share-a", sharing="pair", address=SHARED_IP),
    ServiceSpec("share-b", port=81, sharing="pair", address=SHARED_IP),
)


# --- the system -------------------------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class System:
    """The lab, the NATS cluster, the API stand-in and every metalbus process; each process can be killed and
    started again."""

    def __init__(self, lab: Lab, api: KubeApi, directory: Path, *, mgmt: str, subnet: str) -> None:
        self.lab, self.api, self.directory, self.mgmt = lab, api, directory, mgmt
        self.bridge, self.nodes, self.client = topology(lab, mgmt, subnet)
        host = f"{subnet}.1"
        self.credentials = BusCredentials.create(directory / "credentials")
        ports = [_free_port(host) for _ in range(2 * SERVERS)]
        routes = tuple(f"nats://{host}:{port}" for port in ports[SERVERS:])
        self.servers = [
            EmbeddedNats(host=host, port=ports[i], store_dir=directory / f"nats-{i}",
                         log_file=directory / f"nats-{i}.log", credentials=self.credentials, provision=False,
                         cluster=ClusterRoutes(f"n{i}", ports[SERVERS + i], routes), startup_timeout=30)
            for i in range(SERVERS)
        ]  # fmt: skip
        self.kubeconfig = api.kubeconfig(directory / "kubeconfig", service_account=WATCHER)
        self.announcers: dict[str, AnnouncerProcess] = {}
        self.ipams: dict[str, IpamProcess] = {}
        self.watchers: dict[str, Process] = {}
        self.retired: list[tuple[str, Callable[[], str]]] = []  # (file name, log) of every incarnation replaced
        self.bus: BusThread | None = None

    def url_for(self, user: BusUser) -> str:
        return ",".join(self.credentials.url(server.plain_url, user) for server in self.servers)

    def node_url(self, node: str) -> str:
        return ",".join(self.credentials.node_url(server.plain_url, node) for server in self.servers)

    def start(self) -> None:
        for server in self.servers:
            server.start()
        admin = self.url_for(BusUser.ADMIN)

        def provisioned() -> bool:  # until the cluster has elected its JetStream meta leader
            done = subprocess.run([*provision_command(admin), "--stream-replicas", str(SERVERS)],
                                  capture_output=True, text=True, check=False, timeout=60)
            return done.returncode == 0

        wait_for(provisioned, timeout=90, message="the streams provisioned on the NATS cluster", interval=1.0)
        self.bus = BusThread(admin, name="soak", replicas=SERVERS)
        bus = self.bus.bus

        async def replicas() -> dict[str, int]:
            return {spec.name.value: (await bus.js.stream_info(spec.name.value)).config.num_replicas or 1
                    for spec in STREAMS}

        unreplicated = {name: n for name, n in self.bus.call(replicas()).items() if n != SERVERS}
        if unreplicated:
            raise RuntimeError(f"streams not replicated on every server: {unreplicated}")
        for obj in configuration("soak", "10.0.0.100-10.0.0.140", "fd00::100-fd00::140"):
            self.api.put_object(obj)
        for name in NODES:
            self.start_announcer(name, wait=False)
        for name in ("ipam-a", "ipam-b"):
            self.start_ipam(name)
        for name in ("watcher-a", "watcher-b"):
            self.start_watcher(name)
        for announcer in self.announcers.values():
            announcer.wait_started()

    def _retire(self, file_name: str, log: Callable[[], str]) -> None:
        self.retired.append((f"{file_name}.{len(self.retired)}.log", log))

    def start_announcer(self, name: str, *, wait: bool = True) -> None:
        if (old := self.announcers.get(name)) is not None:
            self._retire(f"announcer-{name}", partial("".join, old.log))
        self.announcers[name] = AnnouncerProcess(self.lab, self.nodes[name], self.node_url(name))
        if wait:
            self.announcers[name].wait_started()

    def start_ipam(self, name: str) -> None:
        if (old := self.ipams.get(name)) is not None:
            self._retire(name, partial("".join, old.log))
        self.ipams[name] = IpamProcess(self.url_for(BusUser.IPAM), name=name)

    def start_watcher(self, name: str) -> None:
        if (old := self.watchers.get(name)) is not None:
            self._retire(name, partial("".join, old.lines))
        self.watchers[name] = Process(
            CURRENT.command("watcher", "--nats", self.url_for(BusUser.WATCHER), "--kubeconfig", str(self.kubeconfig),
                            "--namespace", CONFIG_NAMESPACE, "--http-port", "0", "--http-host", "127.0.0.1"),
            env=CURRENT.env({**os.environ, "POD_NAME": name}), cwd=CURRENT.root)

    def keep_logs(self, directory: Path) -> None:
        """Every process's log (as far as it was kept), of every incarnation, into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, log in self.retired:
            (directory / file_name).write_text(log())
        for name, announcer in self.announcers.items():
            (directory / f"announcer-{name}.log").write_text("".join(announcer.log))
        for name, ipam in self.ipams.items():
            (directory / f"{name}.log").write_text("".join(ipam.log))
        for name, watcher in self.watchers.items():
            (directory / f"{name}.log").write_text("".join(watcher.lines))

    def close(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
        for ipam in self.ipams.values():
            ipam.stop()
        if self.bus is not None:
            self.bus.close()
        for server in self.servers:
            server.stop()

    def placements(self) -> dict[str, str]:
        """IP → the node its newest placement names."""
        assert self.bus is not None
        bus = self.bus.bus

        async def read() -> dict[str, str]:
            return {r.event.ip: r.event.node
                    async for r in bus.read(StreamName.IPAM, subjects=[IPAM_PLACEMENTS], last_per_subject=True)
                    if isinstance(r.event, L2PlacementDecided)}

        return self.bus.call(read())

    def lease_holder(self) -> str:
        """The watcher holding the Lease ('' when none)."""
        lease = self.api.get_object("leases", LEASE_NAME, CONFIG_NAMESPACE) or {}
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def mac(self, node: str) -> str:
        return self.lab.mac(self.nodes[node].ns, "eth0")

    def set_link(self, node: Node, *, data: bool, up: bool) -> None:
        namespace, port = (self.bridge, node.data_port) if data else (self.mgmt, node.mgmt_port)
        self.lab.run(namespace, "ip", "link", "set", port, "up" if up else "down")


def _ready(lines: Callable[[], list[str]]) -> Callable[[], bool]:
    """Whether a process whose log names its HTTP port answers /readyz with 200."""

    def check() -> bool:
        for line in lines():
            if "http_port=" in line:
                port = line.split("http_port=", 1)[1].split()[0]
                return port.isdigit() and http_ready(int(port))
        return False

    return check


# --- the invariants ---------------------------------------------------------------------------------------


class StatusWatch:
    """Polls every Service's status from the API stand-in; records address changes, withdrawals and addresses
    shown by two Services that do not share them."""

    def __init__(self, api: KubeApi, report: Report, sharing: dict[str, str]) -> None:
        self.api, self.report, self.sharing = api, report, sharing
        self.names: set[str] = set()
        self.shown: dict[str, tuple[str, ...]] = {}  # the first address set each Service showed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-watch", daemon=True)
        self._twice: set[frozenset[str]] = set()

    def follow(self, name: str) -> None:
        with self._lock:
            self.names.add(name)

    def forget(self, name: str) -> None:
        with self._lock:
            self.names.discard(name)
            self.shown.pop(name, None)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(STATUS_INTERVAL):
            self.check()

    def now(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            names = sorted(self.names)
        found: dict[str, tuple[str, ...]] = {}
        for name in names:
            obj = self.api.get_object("services", name, "default") or {}
            entries = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            found[name] = tuple(sorted(entry.get("ip", "") for entry in entries))
        return found

    def check(self) -> None:
        now = self.now()
        by_ip: dict[str, set[str]] = {}
        with self._lock:
            for name, ips in now.items():
                if name not in self.names:
                    continue  # deleted meanwhile
                first = self.shown.get(name)
                if first is None:
                    if ips:
                        self.shown[name] = ips
                elif ips != first:
                    kind = Violation.ADDRESS_WITHDRAWN if not ips else Violation.ADDRESS_CHANGED
                    self.report.violated(kind, f"{name} showed {first}, now {ips}")
                    self.shown[name] = ips or first
                for ip in ips:
                    by_ip.setdefault(ip, set()).add(name)
        for ip, names in by_ip.items():
            keys = {self.sharing.get(name) for name in names}
            if len(names) > 1 and (None in keys or len(keys) > 1) and frozenset(names) not in self._twice:
                self._twice.add(frozenset(names))
                self.report.violated(Violation.SHOWN_TWICE, f"{ip} shown by {sorted(names)}")


def wire_violations(report: Report, vip: str, replies: list[tuple[float, str]], start: float, end: float) -> None:
    """Silences and multi-MAC answers longer than a failover, from one VIP's probe replies."""
    heard = [(start, "-"), *((t, mac) for t, mac in replies if start < t < end), (end, "-")]
    report.longest_gap[vip] = round(max(b - a for (a, _), (b, _) in itertools.pairwise(heard)), 3)
    for (a, before), (b, after) in itertools.pairwise(heard):
        if b - a > FAILOVER:
            report.violated(Violation.UNANSWERED, f"{vip} unanswered for {b - a:.2f} s from t={a - start:.2f} "
                                                  f"(answered by {before}, then by {after})")
    # replies to one probe come within a probe interval: several MACs within one is two stations answering
    conflicts = [t for (t, mac), (u, other) in itertools.pairwise(sorted(replies))
                 if start < t < end and other != mac and u - t < PROBE_INTERVAL / 2]
    longest = 0.0
    episode: list[float] = []
    for t in [*conflicts, float("inf")]:
        if episode and t - episode[-1] > FAILOVER:
            longest = max(longest, episode[-1] - episode[0])
            if episode[-1] - episode[0] > FAILOVER:
                report.violated(Violation.TWO_ANSWERING,
                                f"{vip} answered by several MACs for {episode[-1] - episode[0]:.2f} s")
            episode = []
        episode.append(t)
    report.longest_conflict[vip] = round(longest, 3)


# --- the soak ---------------------------------------------------------------------------------------------


class Soak:
    def __init__(self, system: System, report: Report, rng: random.Random) -> None:
        self.system, self.report, self.rng = system, report, rng
        self.sharing = {spec.name: spec.sharing for spec in STABLE if spec.sharing}
        self.status = StatusWatch(system.api, report, self.sharing)
        self.churned: list[str] = []
        self._churn_index = itertools.count(len(STABLE))
        self.log: list[str] = []
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        line = f"t={time.monotonic() - self.started:.2f} {text}"
        self.log.append(line)
        print(line, flush=True)

    def deploy(self) -> dict[str, str]:
        """The stable Services, until each shows its address; Service → address."""
        for index, spec in enumerate(STABLE):
            for obj in service_objects(spec, index):
                self.system.api.put_object(obj)
            self.status.follow(spec.name)

        def shown() -> dict[str, str] | None:
            now = self.status.now()
            return {n: ips[0] for n, ips in now.items()} if all(len(ips) == 1 for ips in now.values()) else None

        return wait_for(shown, timeout=90, message="every Service showing its address")

    def run(self, minutes: float) -> None:
        end = time.monotonic() + minutes * 60
        kinds = list(Fault)
        while time.monotonic() < end:
            self.rng.shuffle(kinds)
            for kind in kinds:
                if time.monotonic() >= end:
                    break
                self.report.faults[kind] += 1
                self.inject(kind)
                self._pause(self.rng.uniform(1.0, 2.0))  # the pace of the faults, not a wait for anything

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    def inject(self, kind: Fault) -> None:
        system, rng = self.system, self.rng
        if kind is Fault.KILL_ANNOUNCER:
            name = rng.choice(NODES)
            self.say(f"kill -9 announcer {name}")
            system.announcers[name].proc.kill()
            system.announcers[name].proc.wait(5)
            self._pause(rng.uniform(0.5, 2.0))
            system.start_announcer(name)
        elif kind is Fault.KILL_IPAM:
            name = rng.choice(sorted(system.ipams))
            self.say(f"kill -9 {name}")
            system.ipams[name].proc.kill()
            system.ipams[name].proc.wait(5)
            self._pause(rng.uniform(0.5, 2.0))
            system.start_ipam(name)
            ipam = system.ipams[name]
            wait_for(_ready(lambda: list(ipam.log)), timeout=60, message=f"{name} ready")
        elif kind is Fault.KILL_WATCHER:
            name = rng.choice(sorted(system.watchers))
            leading = system.lease_holder() == name
            self.say(f"kill -9 {name}{' (leading)' if leading else ''}")
            killed = time.monotonic()
            system.watchers[name].popen.kill()
            system.watchers[name].stop()
            if leading:
                wait_for(lambda: system.lease_holder() not in ("", name), timeout=30, message="a new leader",
                         interval=0.01)
                self.report.watcher_takeovers.append(time.monotonic() - killed)
            self._pause(rng.uniform(0.5, 2.0))
            system.start_watcher(name)
            watcher = system.watchers[name]
            wait_for(_ready(lambda: list(watcher.lines)), timeout=60, message=f"{name} ready")
        elif kind is Fault.NATS_RESTART:
            index = rng.randrange(SERVERS)
            self.say(f"restart nats server n{index}")
            system.servers[index].stop()
            self._pause(rng.uniform(0.5, 2.0))
            system.servers[index].start()
            self._pause(3.0)  # the restarted server catches its streams up before the next fault
        elif kind is Fault.LINK_FLAP:
            node = system.nodes[rng.choice(NODES)]
            self.say(f"data link of {node.name} down")
            system.set_link(node, data=True, up=False)
            self._pause(rng.uniform(1.0, 3.0))
            system.set_link(node, data=True, up=True)
        elif kind is Fault.PARTITION:
            node = system.nodes[rng.choice(NODES)]
            self.say(f"{node.name} cut from the bus")
            announcer = system.announcers[node.name]
            system.set_link(node, data=False, up=False)
            announcer.wait_logged("msg=partitioned", timeout=5)
            self._pause(rng.uniform(2.0, 4.0))
            mark = announcer.mark()
            system.set_link(node, data=False, up=True)
            announcer.wait_logged('msg="placements read"', since=mark, timeout=30)
        elif kind is Fault.CHURN:
            if len(self.churned) < 3 or rng.random() < 0.5:
                index = next(self._churn_index)
                name = f"churn-{index}"
                self.say(f"create Service {name}")
                for obj in service_objects(ServiceSpec(name), index):
                    system.api.put_object(obj)
                self.churned.append(name)
                self.status.follow(name)
            else:
                name = self.churned.pop(0)
                self.say(f"delete Service {name}")
                self.status.forget(name)
                system.api.delete_object("services", name, "default")
                system.api.delete_object("endpointslices", f"{name}-1", "default")
        self.say(f"healed {kind.value}")

    def converged(self, vips: dict[str, str], watches: dict[str, NeighborWatch]) -> None:
        """After the faults: every Service shows an address, every VIP answered by its placed node alone."""
        deadline = time.monotonic() + CONVERGE_WITHIN
        system = self.system

        def settled() -> list[str]:
            missing = [f"{name} shows {ips}" for name, ips in self.status.now().items() if len(ips) != 1]
            placed = system.placements()
            recently = time.monotonic() - 4 * PROBE_INTERVAL
            for name, vip in vips.items():
                node = placed.get(vip)
                macs = watches[vip].macs_since(recently)
                if node is None or macs != {system.mac(node)}:
                    missing.append(f"{name}'s {vip} placed on {node}, answered by {macs}")
            return missing

        left = settled()
        while left and time.monotonic() < deadline:
            time.sleep(0.5)  # polling the outcome until its deadline
            left = settled()
        for detail in left:
            self.report.violated(Violation.NOT_CONVERGED, detail)


def run(*, minutes: float, directory: Path, seed: int, log: Callable[[str], None] = print) -> Report:
    """One soak of ``minutes`` in ``directory``; its report."""
    report = Report(minutes=minutes, seed=seed)
    previous_replicas = os.environ.get("METALBUS_STREAM_REPLICAS")
    os.environ["METALBUS_STREAM_REPLICAS"] = str(SERVERS)
    try:
        with (running_as(WATCHER, bookmark_interval=BOOKMARK_INTERVAL) as api, Lab("mbsoak") as lab,
              management_network(lab) as (mgmt, subnet)):
            system = System(lab, api, directory, mgmt=mgmt, subnet=subnet)
            soak: Soak | None = None
            try:
                system.start()
                soak = Soak(system, report, random.Random(seed))
                vips = soak.deploy()
                log(f"deployed: {vips}")
                soak.status.start()
                watches = {vip: NeighborWatch(lab, system.client, vip, interval=PROBE_INTERVAL)
                           for vip in sorted(set(vips.values()))}
                started = soak.started = time.monotonic()
                try:
                    soak.run(minutes)
                    ended = time.monotonic()
                    soak.converged(vips, watches)
                finally:
                    for watch in watches.values():
                        watch.stop()
                    soak.status.stop()
                for vip, watch in watches.items():
                    wire_violations(report, vip, list(watch.replies), started, ended)
            finally:
                system.keep_logs(directory / "logs")
                (directory / "logs" / "soak.log").write_text("\n".join(soak.log) if soak is not None else "")
                system.close()
    finally:
        if previous_replicas is None:
            os.environ.pop("METALBUS_STREAM_REPLICAS", None)
        else:
            os.environ["METALBUS_STREAM_REPLICAS"] = previous_replicas
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None,
                        help="keep the NATS stores and every process's log here (default: a temporary directory)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    # stopped from outside (a timeout, a background job, which ignores SIGINT): undo the lab on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with contextlib.ExitStack() as stack:
        directory = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="metalbus-soak-")))
        report = run(minutes=args.minutes, directory=directory, seed=seed)
    print(f"soak of {report.minutes} min, seed {report.seed}")
    print("faults injected:", ", ".join(f"{k.value}={n}" for k, n in sorted(report.faults.items())))
    print("violations:", ", ".join(f"{k.value}={n}" for k, n in sorted(report.violations.items())) or "none")
    for detail in report.details:
        print(f"  {detail}")
    print("longest unanswered (s):", report.longest_gap)
    print("longest answered by several MACs (s):", report.longest_conflict)
    print("watcher takeovers after kill -9 of the leader (s):", [round(t, 3) for t in report.watcher_takeovers],
          "(target <= 2)")
    print(json.dumps(report.as_dict()))
    return 0 if not report.violations else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
