"""ipam benchmark: pure core, end to end through NATS, cold replay, memory, failover.

10 000 Services (a third dual-stack, some sharing, some in selected namespaces) over a /16 IPv4 and a
/64 IPv6 pool plus 5 pools with priorities and selectors. Prints figures; the last line is one JSON
object.  ``python bench/ipam.py [--quick]``  (--quick: 2 000 Services, 20 000-event history, one
end-to-end round instead of three)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.ipam_core import run as run_core
from schemas.events import (
    AllocationFailed,
    IPAllocated,
    IPReleased,
    NamespaceObserved,
    ObjectRef,
    ServiceId,
    ServiceObserved,
    ServicePort,
)
from schemas.events.codec import encode, wrap
from services.common.bus import Bus, BusSettings
from services.common.lease import BusLease
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import StreamName, ipam_allocation_subject, observed_subject
from services.ipam.replica import LEASE_NAME, Replica
from tests.builders import pool

NAMESPACES = {"team-a": {"env": "prod"}, "team-b": {"env": "dev"}, "team-c": {"env": "prod"}, "team-d": {},
              "team-e": {"env": "dev"}}


def configuration() -> list[object]:
    return [
        pool("main", "10.0.0.0/16", "fd00:1::/64"),
        pool("gold", "192.168.0.0/24", avoidBuggyIPs=True,
             serviceAllocation={"priority": 1, "serviceSelectors": [{"matchLabels": {"tier": "gold"}}]}),
        pool("silver", "192.168.1.0/24", "fd00:2::/120",
             serviceAllocation={"priority": 2, "namespaces": ["team-a", "team-b"]}),
        pool("prod", "192.168.2.0/25", "192.168.2.200-192.168.2.250",
             serviceAllocation={"priority": 3, "namespaceSelectors": [{"matchLabels": {"env": "prod"}}]}),
        pool("team-c", "192.168.3.0/24", serviceAllocation={"namespaces": ["team-c"]}),
        pool("manual", "192.168.4.0/24", autoAssign=False),
        *(NamespaceObserved(ref=ObjectRef(name=ns, uid=f"ns-{ns}", resource_version="1"), labels=labels)
          for ns, labels in NAMESPACES.items()),
    ]


def services(count: int, prefix: str = "svc") -> list[ServiceObserved]:
    """Every third dual-stack, every tenth sharing in groups of three, every fiftieth asking for the
    manual pool, every seventh labelled gold, a quarter with externalTrafficPolicy Local."""
    made = []
    names = list(NAMESPACES)
    for i in range(count):
        dual = i % 3 == 0
        sharing = i % 10 == 0
        annotations = {}
        if sharing:
            annotations["metallb.io/allow-shared-ip"] = f"group-{i // 30}"
        if i % 50 == 0:
            annotations["metallb.io/address-pool"] = "manual"
        made.append(ServiceObserved(
            ref=ObjectRef(namespace=names[i % 5], name=f"{prefix}-{i}", uid=f"uid-{prefix}-{i}", resource_version="1"),
            service_type="LoadBalancer",
            annotations=annotations,
            labels={"tier": "gold" if i % 7 == 0 else "std"},
            ports=(ServicePort(protocol="TCP", port=1000 + i % 30 if sharing else 80),),
            ip_families=(("IPv4", "IPv6") if i % 2 else ("IPv6", "IPv4")) if dual else ("IPv4",),
            ip_family_policy=("PreferDualStack" if i % 4 else "RequireDualStack") if dual else "SingleStack",
            cluster_ips=("10.96.0.1",),
            external_traffic_policy="Cluster",
            selector={"app": "shared" if sharing else f"app-{i}"},
        ))
    return made


async def publish_encoded(bus: Bus, messages: list[tuple[str, bytes]]) -> None:
    """Publish messages encoded beforehand into their stream, without waiting for acks (the stream
    stores what a connection sends, in order), then check that the stream took them all."""
    before = await bus.last_sequence(StreamName.K8S)
    for subject, data in messages:
        await bus.client.publish(subject, data)
    await bus.client.flush()
    async with asyncio.timeout(30):
        while (stored := await bus.last_sequence(StreamName.K8S) - before) < len(messages):
            await asyncio.sleep(0.01)  # the stream stores what the server took, a little later
    if stored != len(messages):
        raise RuntimeError(f"the K8S stream stored {stored} of {len(messages)} observations")


def start_ipam(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "ipam", "--nats", url, "--http-port", "0",
         "--http-host", "127.0.0.1", "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def decision_of(bus: Bus, service: ServiceObserved) -> IPAllocated | AllocationFailed | None:
    """The stored decision on one Service, if there is one yet."""
    stored = await bus.last_value(StreamName.IPAM, ipam_allocation_subject(service.ref.namespace, service.ref.name))
    event = stored.event if stored is not None else None
    return event if isinstance(event, IPAllocated | AllocationFailed) else None


async def services_decided(bus: Bus) -> int:
    """How many Services the IPAM stream holds a decision for (each has a subject of its own)."""
    info = await bus.js.stream_info(StreamName.IPAM.value, subjects_filter="ipam.allocation.>")
    return len(info.state.subjects or {})


async def all_decided(bus: Bus, workload: list[ServiceObserved], timeout: float) -> float:
    """When the IPAM stream held a decision for every Service of ``workload``. The ipam decides in
    the order it observes, so the last Service is watched (cheap, every few milliseconds) and then
    the whole count is checked. The harness shares the CPUs with what it measures: it reads little."""
    async with asyncio.timeout(timeout):
        while await decision_of(bus, workload[-1]) is None:
            await asyncio.sleep(0.005)
        done = time.perf_counter()
        while await services_decided(bus) < len(workload):
            await asyncio.sleep(0.05)
            done = time.perf_counter()
    return done


async def end_to_end(count: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with EmbeddedNats() as server:
        bus = await Bus.connect(BusSettings(url=server.url), producer="bench/ipam")
        async with bus:
            await provision(bus)
            await bus.publish_many((observed_subject(e), e, None) for e in configuration())  # type: ignore[arg-type]
            replicas = [start_ipam(server.url), start_ipam(server.url)]
            try:
                lease = BusLease(bus, name=LEASE_NAME, holder="bench")
                async with asyncio.timeout(30):
                    while await lease.holder() is None:
                        await asyncio.sleep(0.05)  # waiting for a replica to come up (process start-up)
                # Encoded before the clock starts: what is measured is the ipam's work, not the harness's.
                workload = services(count)
                encoded = [(observed_subject(e), encode(wrap(e, producer="bench/watcher"))) for e in workload]
                start = time.perf_counter()
                await publish_encoded(bus, encoded)
                figures["through_nats_services_per_s"] = count / (await all_decided(bus, workload, timeout=120) - start)
                holder = await lease.holder()
                active = next(p for p in replicas if holder and holder.endswith(f"-{p.pid}"))
                figures["active_rss_mb"] = rss_mb(active.pid)

                # Failover: kill -9 the active replica, then time until a new Service gets its decision.
                await asyncio.sleep(0.5)  # let the standby finish following the burst (steady state)
                active.send_signal(signal.SIGKILL)
                killed = time.perf_counter()
                probe = services(1, prefix="after-failover")[0]
                await bus.publish(observed_subject(probe), probe)
                async with asyncio.timeout(30):
                    while await decision_of(bus, probe) is None:
                        await asyncio.sleep(0.005)
                figures["failover_s"] = time.perf_counter() - killed
            finally:  # also when the run fails: no replica outlives the bench
                for process in replicas:
                    process.kill()
                    process.wait()
    return figures


async def cold_replay(history: int) -> dict[str, float]:
    """A history of ``history`` decisions (allocations and releases over 10 000 Services), then a
    fresh replica's full load: the IPAM stream replayed and the K8S world read."""
    with EmbeddedNats() as server:
        bus = await Bus.connect(BusSettings(url=server.url), producer="bench/ipam-history")
        async with bus:
            await provision(bus)
            events = []
            for i in range(history):
                name = f"svc-{i % 10_000}"
                service = ServiceId(namespace="default", name=name, uid=f"uid-{name}")
                if (i // 10_000) % 2 == 0:
                    events.append((ipam_allocation_subject("default", name),
                                   IPAllocated(service=service, ips=(f"10.0.{i % 10_000 // 256}.{i % 256}",),
                                               pool="main", reason="bench"), None))
                else:
                    events.append((ipam_allocation_subject("default", name),
                                   IPReleased(service=service, ips=(f"10.0.{i % 10_000 // 256}.{i % 256}",),
                                              reason="ServiceDeleted"), None))
            for first in range(0, history, 5000):
                await bus.publish_many(events[first:first + 5000])
            await bus.publish_many((observed_subject(e), e, None) for e in services(10_000))
            replica = Replica(bus, holder="bench")
            start = time.perf_counter()
            await replica.load()
            elapsed = time.perf_counter() - start
            assert replica.decider.ledger.last_sequence == await bus.last_sequence(StreamName.IPAM)
    return {"cold_replay_events": history, "cold_replay_s": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count = 2000 if args.quick else 10_000
    history = 20_000 if args.quick else 100_000
    core = run_core(count, 1 if args.quick else 3)
    figures: dict[str, object] = {"services": count, "core_allocations_per_s": core["core_allocations_per_s"]}
    # The end-to-end figures vary with what else the machine runs: several rounds, each on a fresh
    # server and replicas; the median throughput and the worst failover are the figures.
    rounds = [asyncio.run(end_to_end(count)) for _ in range(1 if args.quick else 3)]
    figures["through_nats_services_per_s"] = statistics.median(r["through_nats_services_per_s"] for r in rounds)
    figures["through_nats_rounds"] = [round(r["through_nats_services_per_s"]) for r in rounds]
    figures["active_rss_mb"] = max(r["active_rss_mb"] for r in rounds)
    figures["failover_s"] = max(r["failover_s"] for r in rounds)
    figures["failover_rounds"] = [round(r["failover_s"], 2) for r in rounds]
    figures.update(asyncio.run(cold_replay(history)))
    targets = {"core_allocations_per_s": (">=", 50_000), "through_nats_services_per_s": (">=", 5_000),
               "cold_replay_s": ("<=", 3.0), "active_rss_mb": ("<=", 200), "failover_s": ("<=", 3.0)}
    for name, value in figures.items():
        target = targets.get(name)
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value}"
        print(f"{name:>30}: {shown}" + (f"   (target {target[0]} {target[1]:,})" if target else ""))
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
