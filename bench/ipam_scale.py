"""ipam at cluster scale: two real replicas against a K8S stream of 50 000 Services and 5 000 Nodes.

The world is written straight into the ``K8S`` stream (no watcher): one pool and one L2Advertisement,
``nodes`` Nodes, ``services`` LoadBalancer Services (a third ``Local``, a quarter dual-stack) each with
endpoints on two nodes, and heartbeats from the first ``announcers`` nodes (so L2 placements are decided
too). Two ipam processes run; figures:

- time from the first observation published to a decision for every Service, and the same from the last
  observation published (what ipam still had to do once the world was all there); the CPU seconds each
  replica spent by then (the figure the machine's other load changes least);
- peak RSS (VmHWM) of each replica, and its largest event-loop lag (``/metrics``);
- takeover: kill -9 of the active replica → the standby appends its first decision for a new Service,
  split into the standby taking the lease (at once when the server reports the dead replica's connection
  closed: ``takeover_lease_by`` says ``closed connection``; else when the entry expires, a TTL) and the
  standby's own work once it holds the lease;
- SIGTERM while busy: a burst of new Services is being decided when the active replica gets SIGTERM → it
  has exited;
- whether nats-server reported any slow consumer;
- the machine's load average (1 minute) before and after the run.

``python bench/ipam_scale.py [--quick] [--services N] [--nodes N] [--announcers N] [--logs DIR]``
(--quick: 10 000 Services over 1 000 Nodes). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.ipam import publish_encoded
from bench.l2_placement import Heartbeats
from schemas.events import Event, ServiceObserved
from schemas.events.codec import encode, wrap
from services.common.bus import Bus, BusSettings
from services.common.lease import BusLease
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import StreamName, ipam_allocation_subject, observed_subject
from services.ipam.replica import LEASE_NAME
from tests.builders import pool, service
from tests.builders_l2 import endpoints, l2, node

TARGETS = {"decided_all_s": ("<=", 60.0), "rss_peak_mb_max": ("<=", 400.0), "loop_lag_max_s": ("<=", 0.1),
           "takeover_s": ("<=", 1.0), "takeover_work_s": ("<=", 1.0), "sigterm_exit_s": ("<=", 1.0)}


def node_name(i: int) -> str:
    return f"node-{i:05d}"


def services(count: int, nodes: int, *, prefix: str = "svc") -> list[Event]:
    """Each Service and its endpoints (on two nodes): every third ``Local``, every fourth dual-stack."""
    made: list[Event] = []
    for i in range(count):
        name = f"{prefix}-{i}"
        dual = i % 4 == 0
        made.append(service(
            name, namespace=f"ns-{i % 50}",
            external_traffic_policy="Local" if i % 3 == 0 else "Cluster",
            ip_families=("IPv4", "IPv6") if dual else ("IPv4",),
            ip_family_policy="RequireDualStack" if dual else "SingleStack",
            selector={"app": name},
        ))
        made.append(endpoints(name, node_name(i % nodes), node_name((i * 7 + 1) % nodes), namespace=f"ns-{i % 50}"))
    return made


def encoded(events: list[Event]) -> list[tuple[str, bytes]]:
    return [(observed_subject(e), encode(wrap(e, producer="bench/watcher"))) for e in events]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Ipam:
    """One ipam process, its metrics port, its memory."""

    def __init__(self, url: str, *, log_file: Path | None) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "ipam", "--nats", url, "--http-port", str(self.port),
             "--http-address", "127.0.0.1", "--log-level", "INFO" if log_file else "WARNING"],
            stdout=subprocess.DEVNULL, stderr=log_file.open("w") if log_file else subprocess.DEVNULL,
        )
        self.rss_peak_mb = 0.0
        self.loop_lag_max_s = 0.0
        self.loop_work_max_s = 0.0  # the loop thread's longest turn in CPU: the lag without the machine's load
        self.cpu_s = 0.0  # user + system, what the machine's other load does not change

    def holds(self, holder: str | None) -> bool:
        return holder is not None and holder.endswith(f"-{self.process.pid}")

    def sample(self) -> None:
        """Keep the peak RSS and the largest loop lag seen so far (while the process lives)."""
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.rss_peak_mb = max(self.rss_peak_mb, int(line.split()[1]) / 1024)
            stat = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            self.cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("metalbus_event_loop_lag_max_seconds"):
                self.loop_lag_max_s = max(self.loop_lag_max_s, float(line.split()[-1]))
            elif line.startswith("metalbus_event_loop_work_max_seconds"):
                self.loop_work_max_s = max(self.loop_work_max_s, float(line.split()[-1]))

    def lease_takeovers(self) -> float:
        """How many times this replica took the lease from a closed connection (``/metrics``)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=2) as answer:
                text = answer.read().decode()
        except OSError:
            return 0.0
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("metalbus_lease_takeovers_total{"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


async def decided(bus: Bus, namespace: str, name: str) -> bool:
    stored = await bus.last_value(StreamName.IPAM, ipam_allocation_subject(namespace, name))
    return stored is not None


async def count_decided(bus: Bus, prefix: str) -> int:
    info = await bus.js.stream_info(StreamName.IPAM.value, subjects_filter=f"ipam.allocation.*.{prefix}-*")
    return len(info.state.subjects or {})


async def until_decided(bus: Bus, workload: list[ServiceObserved], *, prefix: str, timeout: float,
                        replicas: list[Ipam]) -> float:
    """When every Service of ``workload`` had its decision (sampling the replicas meanwhile)."""
    last = workload[-1]
    async with asyncio.timeout(timeout):
        while not await decided(bus, last.ref.namespace, last.ref.name):
            for replica in replicas:
                replica.sample()
            await asyncio.sleep(0.2)
        done = time.perf_counter()
        while await count_decided(bus, prefix) < len(workload):
            for replica in replicas:
                replica.sample()
            await asyncio.sleep(0.2)
            done = time.perf_counter()
    return done


async def holder_of(lease: BusLease, replicas: list[Ipam], timeout: float) -> Ipam:
    async with asyncio.timeout(timeout):
        while True:
            holder = await lease.holder()
            for replica in replicas:
                if replica.holds(holder):
                    return replica
            await asyncio.sleep(0.01)


async def run(count: int, nodes: int, announcers: int, logs: Path | None) -> dict[str, object]:
    figures: dict[str, object] = {"services": count, "nodes": nodes, "announcers": announcers}
    # Everything is encoded before any connection is made: the harness's loop must not stall while
    # connected (the server closes a client whose pings go unanswered), and its work is not measured.
    world = services(count, nodes)
    workload = [e for e in world if isinstance(e, ServiceObserved)]
    messages = encoded(world)
    del world
    node_messages = encoded([node(node_name(i)) for i in range(nodes)])
    probe = services(1, nodes, prefix="probe")
    probe_service = probe[0]
    assert isinstance(probe_service, ServiceObserved)
    probe_messages = encoded(probe)
    burst = services(max(count // 5, 1000), nodes, prefix="burst")
    first = burst[0]
    assert isinstance(first, ServiceObserved)
    burst_messages = encoded(burst)
    with tempfile.TemporaryDirectory(prefix="ipam-scale-") as directory, \
            EmbeddedNats(log_file=(logs or Path(directory)) / "nats.log") as server:
        bus = await Bus.connect(BusSettings(url=server.url), producer="bench/ipam-scale")
        heartbeats = Heartbeats(server.url, [node_name(i) for i in range(announcers)])
        replicas: list[Ipam] = []
        async with bus:
            await provision(bus)
            await bus.publish_many((observed_subject(e), e, None)
                                   for e in [pool("lan", "10.0.0.0/12", "fd00:1::/64"), l2()])
            await publish_encoded(bus, node_messages)
            await heartbeats.start()
            try:
                replicas = [Ipam(server.url, log_file=logs / f"ipam-{i}.log" if logs else None) for i in (1, 2)]
                lease = BusLease(bus, name=LEASE_NAME, holder="bench")
                active = await holder_of(lease, replicas, timeout=60)
                start = time.perf_counter()
                await publish_encoded(bus, messages)
                published = time.perf_counter()
                done = await until_decided(bus, workload, prefix="svc", timeout=600, replicas=replicas)
                figures["publish_s"] = published - start
                figures["decided_all_s"] = done - start
                figures["decided_after_last_published_s"] = done - published
                figures["active_cpu_s"] = active.cpu_s
                figures["standby_cpu_s"] = next(r for r in replicas if r is not active).cpu_s
                figures["active_rss_peak_mb"] = active.rss_peak_mb
                figures["active_loop_lag_max_s"] = active.loop_lag_max_s
                figures["active_loop_work_max_s"] = active.loop_work_max_s

                # Takeover: the standby has followed the burst; kill -9 the active one, then a new Service.
                await asyncio.sleep(3.0)  # the standby finishes following the burst (steady state)
                active = await holder_of(lease, replicas, timeout=30)  # it may have changed (a step-down)
                standby = next(r for r in replicas if r is not active)
                standby.sample()
                active.sample()
                figures["standby_loop_lag_following_s"] = standby.loop_lag_max_s  # before it takes over
                takeovers_before = standby.lease_takeovers()
                active.process.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                await publish_encoded(bus, probe_messages)
                await holder_of(lease, [standby], timeout=30)
                acquired = time.perf_counter()
                async with asyncio.timeout(60):
                    while not await decided(bus, probe_service.ref.namespace, probe_service.ref.name):
                        await asyncio.sleep(0.005)
                figures["takeover_s"] = time.perf_counter() - killed
                figures["takeover_lease_s"] = acquired - killed
                figures["takeover_lease_by"] = "closed connection" \
                    if standby.lease_takeovers() > takeovers_before else "expiry"
                figures["takeover_work_s"] = time.perf_counter() - acquired

                # SIGTERM while busy: a burst of new Services, SIGTERM once the first of them is decided.
                await publish_encoded(bus, burst_messages)
                async with asyncio.timeout(120):
                    while not await decided(bus, first.ref.namespace, first.ref.name):
                        await asyncio.sleep(0.01)
                standby.sample()
                standby.process.send_signal(signal.SIGTERM)
                signalled = time.perf_counter()
                while standby.process.poll() is None and time.perf_counter() - signalled < 60:
                    await asyncio.sleep(0.01)
                figures["sigterm_exit_s"] = time.perf_counter() - signalled
                figures["sigterm_exit_code"] = standby.process.poll()
                figures["standby_rss_peak_mb"] = standby.rss_peak_mb
                figures["standby_loop_lag_max_s"] = standby.loop_lag_max_s
                figures["standby_loop_work_max_s"] = standby.loop_work_max_s
                figures["rss_peak_mb_max"] = max(r.rss_peak_mb for r in replicas)
                figures["loop_lag_max_s"] = max(r.loop_lag_max_s for r in replicas)
                figures["slow_consumers"] = slow_consumers((logs or Path(directory)) / "nats.log")
                if logs is not None:  # what the replicas said of themselves
                    said = "".join((logs / f"ipam-{i}.log").read_text() for i in (1, 2))
                    figures["step_downs"] = said.count("stepping down")
                    figures["disconnections"] = said.count("bus disconnected")
            finally:  # also when the run fails: no replica outlives the bench
                for replica in replicas:
                    replica.stop()
                await heartbeats.close()
    return figures


def slow_consumers(log_file: Path) -> int:
    """How many times the server cut a connection as a slow consumer (its log says so)."""
    return sum("slow consumer" in line.lower() for line in log_file.read_text().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--services", type=int)
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--announcers", type=int, default=20)
    parser.add_argument("--logs", type=Path, help="a directory for the replicas' logs (INFO)")
    args = parser.parse_args()
    count = args.services or (10_000 if args.quick else 50_000)
    nodes = args.nodes or (1_000 if args.quick else 5_000)
    load_before = os.getloadavg()[0]
    figures = asyncio.run(run(count, nodes, args.announcers, args.logs))
    # the machine's load beside the figures: wall-clock figures (the loop's lag above all) stretch with it
    figures["load_average_before"] = load_before
    figures["load_average_after"] = os.getloadavg()[0]
    for name, value in figures.items():
        target = TARGETS.get(name)
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value}"
        print(f"{name:>32}: {shown}" + (f"   (target {target[0]} {target[1]:,})" if target else ""))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
