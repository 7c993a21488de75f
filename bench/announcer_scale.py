"""One real announcer at cluster scale: its RSS, time to ready and CPU with 50 000 Services' decisions.

The ``IPAM`` stream of a real nats-server is filled as ipam would leave it (no ipam runs): a configuration in
force (one pool, one BGPPeer, one BGPAdvertisement, one L2Advertisement), ``services`` allocations, one L2
placement and one BGP decision per IP (a third of the Services ``Local`` with two serving nodes, a quarter
dual-stack: two IPs), over ``nodes`` Nodes on ``K8S``. One real ``metalbus announcer`` is started in a network
namespace of its own (its L2 agent answers on a veth there), for the first node, with this script as its BGP
peer (a passive speaker that counts the routes it receives). Figures:

- ready: process start → ``/readyz`` answers 200 (both agents have read everything and planned), and the CPU
  seconds the announcer spent until then (``ready_cpu_s``: on a shared machine, what its load does not decide);
- partitions the L2 agent declared over the run (none is right: nothing cuts it off);
- routes: process start → the peer holds every route this node advertises;
- RSS after ready and its peak (VmHWM);
- CPU idle (``--idle`` seconds), then CPU under churn: ``--changes`` decision changes a second for
  ``--seconds`` seconds, as ipam appends them for endpoint changes (every endpoint change counted as
  changing a decision, an upper bound: one that changes none appends nothing). Half are BGP decisions of
  ``Local`` IPs whose nodes change, half L2 placements that move; ``--ours`` of them involve this node.

``python bench/announcer_scale.py [--quick] [--services N] [--nodes N] [--changes N] [--seconds S]``
(needs root: network namespaces). --quick: 10 000 Services, 10 s of churn. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench import scale_procs as procs
from schemas.events import (
    BGPAdvertisementDecided,
    BGPRoute,
    Event,
    IPAllocated,
    L2PlacementDecided,
    ServiceId,
)
from schemas.events.codec import encode, wrap
from services.announcer.bgp.events import Event as SpeakerEvent
from services.announcer.bgp.events import RoutesCounted
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig
from services.common.bus import Bus, BusSettings
from services.common.errors import RetryableError
from services.common.nats_server import EmbeddedNats
from services.common.subjects import (
    IPAM_CONFIG_SUBJECT,
    StreamName,
    bgp_decision_subject,
    ipam_allocation_subject,
    ipam_placement_subject,
    observed_subject,
)
from tests.bgp_world import bgp_advertisement, bgp_peer, in_force, node
from tests.builders import pool
from tests.builders_l2 import l2

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"rss_mb": ("<=", 80.0), "ready_s": ("<=", 5.0), "churn_cpu_cores": ("<=", 0.05)}
PEER_PORT = 1790
ASN = 64512


def node_name(i: int) -> str:
    return f"node-{i:05d}"


THIS_NODE = node_name(0)


def ips_of(i: int) -> tuple[str, ...]:
    v4 = str(ipaddress.IPv4Address("10.64.0.0") + i)
    return (v4, str(ipaddress.IPv6Address("fd64::") + i)) if i % 4 == 0 else (v4,)


def local_nodes(i: int, nodes: int, *, shift: int = 0) -> tuple[str, ...]:
    return tuple(sorted({node_name((i + shift) % nodes), node_name((i * 7 + 1 + shift) % nodes)}))


def bgp_decision(ip: str, service: ServiceId, nodes: tuple[str, ...] | None) -> BGPAdvertisementDecided:
    length = 32 if ":" not in ip else 128
    route = BGPRoute(advertisement="ads", prefix=f"{ip}/{length}", communities=((65000 << 16) | 7,),
                     large_communities=(), local_pref=0)  # fmt: skip
    return BGPAdvertisementDecided(ip=ip, services=(service,), routes=(route,), nodes=nodes)


def decisions(services: int, nodes: int) -> list[tuple[str, Event]]:
    """What ipam leaves on IPAM for ``services`` Services: allocations, placements, BGP decisions."""
    made: list[tuple[str, Event]] = []
    for i in range(services):
        service = ServiceId(namespace=f"ns-{i % 50}", name=f"svc-{i}", uid=f"uid-{i}")
        ips = ips_of(i)
        made.append((ipam_allocation_subject(service.namespace, service.name),
                     IPAllocated(service=service, ips=ips, pool="lan", reason="bench")))  # fmt: skip
        local = i % 3 == 0
        for ip in ips:
            placed = local_nodes(i, nodes)[0] if local else node_name(i % nodes)
            made.append((ipam_placement_subject(ip), L2PlacementDecided(ip=ip, node=placed, services=(service,))))
            made.append((bgp_decision_subject(ip), bgp_decision(ip, service, local_nodes(i, nodes) if local else None)))
    return made


def churn(services: int, nodes: int, count: int, ours: float) -> list[tuple[str, bytes]]:
    """``count`` decision changes, encoded: BGP decisions of Local IPs whose nodes change and placements that
    move, alternately; a fraction ``ours`` of each involve this node (it joins or leaves)."""
    made: list[tuple[str, bytes]] = []
    every = max(1, round(1 / ours)) if ours > 0 else 0
    local = [i for i in range(3, services, 3)]  # Local Services (not svc-0, whose nodes include this node)
    for n in range(count):
        i = local[(n * 7919) % len(local)]
        ip, service = ips_of(i)[0], ServiceId(namespace=f"ns-{i % 50}", name=f"svc-{i}", uid=f"uid-{i}")
        involves_us = bool(every) and n % every == 0
        shift = 1 + (n // len(local)) % 5
        nodes_now = (THIS_NODE, local_nodes(i, nodes, shift=shift)[0]) if involves_us else local_nodes(
            i, nodes, shift=shift)  # fmt: skip
        if n % 2 == 0:
            event: Event = bgp_decision(ip, service, tuple(sorted(nodes_now)))
            subject = bgp_decision_subject(ip)
        else:
            event = L2PlacementDecided(ip=ip, node=nodes_now[0], services=(service,))
            subject = ipam_placement_subject(ip)
        made.append((subject, encode(wrap(event, producer="bench/ipam"))))
    return made


async def last_sequence(bus: Bus, stream: StreamName) -> int:
    """The stream's last sequence, asked again while a busy server answers too late."""
    for _ in range(20):
        with contextlib.suppress(RetryableError):
            return await bus.last_sequence(stream)
    return await bus.last_sequence(stream)


async def publish(bus: Bus, stream: StreamName, messages: list[tuple[str, bytes]]) -> None:
    """Publish messages encoded beforehand without waiting for acks, then until the stream holds them all."""
    before = await last_sequence(bus, stream)
    for index, (subject, data) in enumerate(messages):
        await bus.client.publish(subject, data)
        if index % 2000 == 1999:
            await bus.client.flush(timeout=30)
    await bus.client.flush(timeout=30)
    async with asyncio.timeout(120):
        while await last_sequence(bus, stream) - before < len(messages):
            await asyncio.sleep(0.1)


class Peer:
    """The router: a passive speaker on the host end of the announcer's link, counting what it holds."""

    def __init__(self) -> None:
        self.prefixes = 0

    def __call__(self, event: SpeakerEvent) -> None:
        if isinstance(event, RoutesCounted):
            self.prefixes += event.announced - event.withdrawn


async def wait_until(check: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while True:
        if callable(check) and check():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


def ready(url: str) -> bool:
    try:
        procs.http_get(url, timeout=1.0)
        return True
    except OSError:
        return False


async def run(args: argparse.Namespace) -> dict[str, object]:
    lab = procs.NodeNamespaces(1)
    lab.create()
    figures: dict[str, object] = {"services": args.services, "nodes": args.nodes}
    try:
        with tempfile.TemporaryDirectory(prefix="announcer-scale-") as temporary, EmbeddedNats(
            host=lab.server_host
        ) as server:  # fmt: skip
            directory = args.logs or temporary
            bus = await Bus.connect(BusSettings(url=server.plain_url), producer="bench/announcer-scale")
            try:
                figures.update(await _measure(args, lab, server, bus, Path(directory)))
            finally:
                await bus.close()
    finally:
        lab.remove()
    return figures


async def _measure(args: argparse.Namespace, lab: procs.NodeNamespaces, server: EmbeddedNats, bus: Bus,
                   directory: Path) -> dict[str, object]:  # fmt: skip
    figures: dict[str, object] = {}
    announcer_address = lab.address(0)
    started = time.monotonic()
    world = [node(THIS_NODE, announcer_address, "fd53::2", labels={"rack": "a"})]
    world += [node(node_name(i), f"10.200.{i >> 8}.{i & 255}") for i in range(1, args.nodes)]
    await publish(bus, StreamName.K8S, [(observed_subject(e), encode(wrap(e, producer="bench/watcher")))
                                        for e in world])  # fmt: skip
    configuration = in_force(
        pool("lan", "10.64.0.0/14", "fd64::/108"), l2("l2"), bgp_advertisement("ads", communities=["65000:7"]),
        bgp_peer("router", lab.server_host, my_asn=ASN, peer_asn=ASN, peerPort=PEER_PORT, holdTime="90s"),
    )  # fmt: skip
    ipam = [(IPAM_CONFIG_SUBJECT, configuration), *decisions(args.services, args.nodes)]
    await publish(bus, StreamName.IPAM, [(s, encode(wrap(e, producer="bench/ipam"))) for s, e in ipam])
    expected = sum(len(ips_of(i)) for i in range(args.services) if i % 3 != 0 or THIS_NODE in local_nodes(
        i, args.nodes))  # fmt: skip
    figures["ipam_messages"] = len(ipam)
    figures["fill_s"] = round(time.monotonic() - started, 1)
    procs.log(f"IPAM filled: {len(ipam)} messages in {figures['fill_s']} s; {expected} routes expected at the peer")
    changes = churn(args.services, args.nodes, args.changes * args.seconds, args.ours)

    peer = Peer()
    config = SpeakerConfig(
        session=SessionConfig(local_as=ASN, peer_as=ASN, router_id=ipaddress.IPv4Address(lab.server_host),
                              hold_time=90),
        peer_address=ipaddress.IPv4Address(announcer_address), connect=False,
    )  # fmt: skip
    address = ipaddress.IPv4Address(lab.server_host)
    async with Listener(address=address, port=PEER_PORT) as listener, Speaker(config, on_event=peer) as speaker:
        listener.add(speaker)
        http_port = procs.free_port("127.0.0.1")
        command = [sys.executable, "-m", "services.cli", "announcer", "--node", THIS_NODE, "--nats",
                   server.plain_url, "--http-port", str(http_port), "--http-host", announcer_address,
                   "--bgp-listen-port", "0", "--exclude-interfaces", "mgmt*", "--log-level", "INFO"]  # fmt: skip
        announcer = procs.Child("announcer", lab.command(0, command), cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, log_dir=directory)  # fmt: skip
        try:
            url = f"http://{announcer_address}:{http_port}/readyz"
            ready_s = await wait_until(lambda: ready(url), 120, "ready")
            routes_s = ready_s + await wait_until(lambda: peer.prefixes >= expected, 120, "every route at the peer")
            pid = announcer.pid  # ip netns exec execs the announcer: the same process
            figures["ready_cpu_s"] = round(procs.cpu_seconds(pid), 2)  # what a loaded machine does not decide
            figures["ready_s"], figures["routes_s"] = round(ready_s, 2), round(routes_s, 2)
            figures["routes_at_peer"] = peer.prefixes
            await asyncio.sleep(1.0)
            figures["rss_mb"] = round(procs.memory_mb(pid), 1)
            cpu = procs.cpu_seconds(pid)
            await asyncio.sleep(args.idle)
            figures["idle_cpu_cores"] = round((procs.cpu_seconds(pid) - cpu) / args.idle, 3)
            procs.log(f"ready {figures['ready_s']} s, routes {figures['routes_s']} s, RSS {figures['rss_mb']} MB,"
                      f" idle {figures['idle_cpu_cores']} cores; churn {args.changes}/s for {args.seconds} s")
            cpu, begun = procs.cpu_seconds(pid), time.monotonic()
            per_tick = max(1, args.changes // 20)
            for tick in range(0, len(changes), per_tick):
                for subject, data in changes[tick : tick + per_tick]:
                    await bus.client.publish(subject, data)
                await bus.client.flush()
                due = begun + (tick + per_tick) / args.changes
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            elapsed = time.monotonic() - begun
            await asyncio.sleep(2.0)  # what arrived last is folded and planned
            figures["churn_cpu_cores"] = round((procs.cpu_seconds(pid) - cpu) / (elapsed + 2.0), 3)
            figures["churn_changes_per_s"] = round(len(changes) / elapsed)
            figures["rss_after_churn_mb"] = round(procs.memory_mb(pid), 1)
            figures["rss_peak_mb"] = round(procs.memory_mb(pid, "VmHWM"), 1)
            figures["alive"] = announcer.alive()
            figures["partitions_declared"] = announcer.log_path.read_text(errors="replace").count("msg=partitioned")
            figures["load_average"] = round(os.getloadavg()[0], 1)
            if not announcer.alive():
                figures["log"] = announcer.tail(20)
        except TimeoutError as error:  # a figure that cannot be measured says so; the others stand
            procs.log(f"announcer: {announcer.tail(30)}")
            figures.setdefault("ready_s", f"failed: not {error} within 120 s")
            figures.setdefault("routes_s", f"failed: not {error} within 120 s")
            figures["rss_peak_mb"] = round(procs.memory_mb(announcer.pid, "VmHWM"), 1) if announcer.alive() else None
        finally:
            announcer.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 000 Services, 10 s of churn")
    parser.add_argument("--services", type=int, default=50_000)
    parser.add_argument("--nodes", type=int, default=5_000)
    parser.add_argument("--changes", type=int, default=500, help="decision changes a second during the churn")
    parser.add_argument("--seconds", type=int, default=20, help="seconds of churn")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--logs", type=Path, help="keep the announcer's log in this directory")
    parser.add_argument("--ours", type=float, default=0.02, help="fraction of the changes involving this node")
    args = parser.parse_args()
    if args.quick:
        args.services, args.seconds, args.idle = min(args.services, 10_000), 10, 5.0
    figures = asyncio.run(run(args))
    for name, (sense, target) in TARGETS.items():
        value = figures.get(name)
        if isinstance(value, int | float):
            verdict = "ok" if (value <= target if sense == "<=" else value >= target) else "MISSED"
            print(f"{name:>18}: {value} (target {sense} {target}) {verdict}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
