"""L2 placement benchmark: spread and re-placement time with many announcers and IPs.

With ``announcers`` simulated announcers (heartbeat tasks, every 2 s, each on a connection of its own that
its heartbeats name, as the real ones send) and ``ips`` Services of one L2-advertised pool, an ipam process
places every IP; then announcers fall silent one at a time, their connection closed (kill -9), and one
leaves gracefully, and we time, through NATS, until every IP of
that node has a new placement appended. Also the pure figures: placing everything from scratch, and the
decider's re-placement after one node dies, without any I/O.

``python bench/l2_placement.py [--quick]``; the last line is one JSON object. ``measure(...)`` returns
the figures for ``bench/l2.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from nats.aio.msg import Msg

from bench.recorder import Recorder
from schemas.events import AnnouncerHeartbeat, Event, L2PlacementCleared, L2PlacementDecided
from schemas.events.codec import decode
from services.common.bus import Bus, BusSettings
from services.common.heartbeats import HEARTBEAT_INTERVAL
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import (
    IPAM_PLACEMENTS,
    StreamName,
    heartbeat_subject,
    ipam_placement_subject,
    observed_subject,
)
from services.ipam.decider import Decider
from services.ipam.placement import Eligibility
from services.ipam.placer import place
from tests.builders import pool, service
from tests.builders_l2 import endpoints, l2, node


def node_names(count: int) -> list[str]:
    return [f"node-{i:03d}" for i in range(count)]


def world(announcers: int, ips: int) -> list[Event]:
    """One pool, one L2Advertisement for it, the nodes, and ``ips`` Services each served on two nodes."""
    nodes = node_names(announcers)
    made: list[Event] = [pool("lan", "10.1.0.0/16"), l2(), *(node(n) for n in nodes)]
    for i in range(ips):
        made += [service(f"svc-{i}"), endpoints(f"svc-{i}", nodes[i % announcers], nodes[(i + 1) % announcers])]
    return made


# --- pure ------------------------------------------------------------------------------------


def pure(announcers: int, ips: int) -> dict[str, float]:
    everywhere = frozenset(node_names(announcers))
    groups = {f"10.1.{i // 256}.{i % 256}": (1, Eligibility(everywhere, everywhere)) for i in range(ips)}
    start = time.perf_counter()
    placed = place(groups)
    figures = {"pure_place_all_s": time.perf_counter() - start}
    loads = Counter(placed.values())
    figures["pure_spread_max_over_fair"] = max(loads.values()) / (ips / announcers)

    decider = Decider()
    for event in world(announcers, ips):
        decider.load_observation(event)
    decider.set_live_nodes(everywhere)
    start = time.perf_counter()
    decider.activate()
    figures["pure_decider_activate_s"] = time.perf_counter() - start
    victim = next(iter(sorted(everywhere)))
    start = time.perf_counter()
    moved = decider.set_live_nodes(everywhere - {victim})
    figures["pure_decider_replace_one_node_ms"] = (time.perf_counter() - start) * 1000
    figures["pure_decider_replaced_ips"] = len(moved)
    return figures


# --- through NATS ------------------------------------------------------------------------------


class Heartbeats:
    """The announcers' heartbeats (one task and one connection each, named by its heartbeats, as the
    announcers send them) from a thread with its own event loop, so the benchmark's own work (publishing
    the world, decoding placements) cannot delay them. A node silenced has its connection closed (kill -9)."""

    def __init__(self, url: str, nodes: list[str]) -> None:
        self._url = url
        self._nodes = nodes
        self.last_sent: dict[str, float] = {}  # wall clock
        self.silenced_at: dict[str, float] = {}  # wall clock
        self._buses: dict[str, Bus] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="heartbeats", daemon=True)
        self._leaving: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def _in_thread(self, coroutine: Coroutine[Any, Any, None]) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    async def start(self) -> None:
        self._thread.start()
        await self._in_thread(self._start())

    async def _start(self) -> None:
        for first in range(0, len(self._nodes), 50):
            names = self._nodes[first:first + 50]
            buses = await asyncio.gather(*(Bus.connect(BusSettings(url=self._url), producer=f"announcer/{name}")
                                           for name in names))
            for name, bus in zip(names, buses, strict=True):
                self._buses[name] = bus
                self._leaving[name] = asyncio.Event()
                self._tasks[name] = asyncio.create_task(self._beat(bus, name))

    async def _beat(self, bus: Bus, name: str) -> None:
        subject, sequence = heartbeat_subject(name), 0
        while not self._leaving[name].is_set():
            await bus.notify(subject, AnnouncerHeartbeat(node=name, instance=name, sequence=sequence,
                                                         connection=bus.connection))
            self.last_sent[name] = time.time()
            sequence += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leaving[name].wait(), HEARTBEAT_INTERVAL)
        await bus.notify(subject, AnnouncerHeartbeat(node=name, instance=name, sequence=sequence, leaving=True,
                                                     connection=bus.connection))
        await bus.client.flush()
        self.last_sent[name] = time.time()

    async def silence(self, name: str) -> None:
        """Stop heartbeating without a word (kill -9)."""
        await self._in_thread(self._silence(name))

    async def _silence(self, name: str) -> None:
        task = self._tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.silenced_at[name] = time.time()
        await self._buses.pop(name).client.close()

    async def leave(self, name: str) -> None:
        """Stop gracefully: one ``leaving`` heartbeat."""
        await self._in_thread(self._leave(name))

    async def _leave(self, name: str) -> None:
        self._leaving[name].set()
        await self._tasks.pop(name)
        await self._buses.pop(name).close()

    async def close(self) -> None:
        await self._in_thread(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _close(self) -> None:
        for name in list(self._tasks):
            await self._silence(name)


@dataclass
class Placements(Recorder):
    """Newest placement per IP as appended, from a plain subscription to the placement subjects."""

    node: dict[str, str] = field(default_factory=dict)
    at: dict[str, float] = field(default_factory=dict)

    async def on_message(self, message: Msg) -> None:
        event = decode(message.data).event
        if isinstance(event, L2PlacementDecided):
            self.node[event.ip] = event.node
        elif isinstance(event, L2PlacementCleared):
            self.node.pop(event.ip, None)
        else:
            return
        self.at[event.ip] = time.monotonic()
        self.changed.set()

    def moved_off(self, name: str, ips: set[str]) -> Callable[[], bool]:
        return lambda: all(self.node.get(ip, name) != name for ip in ips)

    def on(self, name: str) -> set[str]:
        return {ip for ip, n in self.node.items() if n == name}


async def appended_at(bus: Bus, ips: set[str]) -> dict[str, float]:
    """When (server wall clock) the newest placement of each IP was stored on the IPAM stream."""
    stored: dict[str, float] = {}
    subjects = [ipam_placement_subject(ip) for ip in sorted(ips)]
    async for received in bus.read(StreamName.IPAM, subjects=subjects, last_per_subject=True):
        if isinstance(received.event, L2PlacementDecided) and received.time is not None:
            stored[received.event.ip] = received.time.timestamp()
    return stored


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _ready(port: int) -> None:
    """Wait until the ipam process is active (its readiness and ``metalbus_ipam_active``)."""
    async with asyncio.timeout(60):
        while True:
            with contextlib.suppress(OSError):
                text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
                if "metalbus_ipam_active 1.0" in text:
                    return
            await asyncio.sleep(0.1)  # process start-up: nothing to wait on but its HTTP port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


def _failover_histogram(port: int) -> tuple[float, float]:
    prefix = "metalbus_ipam_failover_seconds_"
    lines = [line.split() for line in _get(f"http://127.0.0.1:{port}/metrics").splitlines()]
    values = {words[0]: float(words[1]) for words in lines if words and words[0].startswith(prefix)}
    return values.get(f"{prefix}sum", 0.0), values.get(f"{prefix}count", 0.0)


async def through_nats(announcers: int, ips: int, trials: int, ipam_log: Path | None = None) -> dict[str, float]:
    figures: dict[str, float] = {}
    nodes = node_names(announcers)
    with EmbeddedNats() as server:
        bus = await Bus.connect(BusSettings(url=server.url), producer="bench/l2-placement")
        async with bus:
            await provision(bus)
            placements = Placements()
            await bus.client.subscribe(IPAM_PLACEMENTS, cb=placements.on_message)
            heartbeats = Heartbeats(server.url, nodes)
            await heartbeats.start()
            port = _free_port()
            ipam = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "ipam", "--nats", server.url, "--http-port", str(port),
                 "--http-host", "127.0.0.1", "--log-level", "INFO" if ipam_log else "WARNING"],
                stdout=subprocess.DEVNULL, stderr=ipam_log.open("w") if ipam_log else subprocess.DEVNULL,
            )
            try:
                await _ready(port)
                start = time.monotonic()
                events = await asyncio.to_thread(world, announcers, ips)  # off the loop: its connection is pinged
                for first in range(0, len(events), 2000):
                    await bus.publish_many((observed_subject(e), e, None) for e in events[first:first + 2000])
                await placements.until(lambda: len(placements.node) == ips, timeout=120)
                figures["initial_placement_s"] = time.monotonic() - start
                loads = Counter(placements.node.values())
                figures["spread_max_over_fair"] = max(loads.values()) / (ips / announcers)
                figures["spread_min_over_fair"] = min(loads.get(n, 0) for n in nodes) / (ips / announcers)

                await asyncio.sleep(1.0)  # let the ipam finish the burst's tail: failover in steady state
                after_kill, moved = [], []
                for victim in nodes[:trials]:
                    owned = placements.on(victim)
                    await heartbeats.silence(victim)
                    await placements.until(placements.moved_off(victim, owned), timeout=10)
                    appended = max((await appended_at(bus, owned)).values())
                    after_kill.append(appended - heartbeats.silenced_at[victim])
                    moved.append(len(owned))
                live = announcers - trials
                loads = Counter(placements.node.values())
                figures["spread_after_deaths_max_over_fair"] = max(loads.values()) / (ips / live)
                figures["replace_after_kill_p50_s"] = statistics.median(after_kill)
                figures["replace_after_kill_max_s"] = max(after_kill)
                figures["replaced_ips_per_death"] = statistics.mean(moved)

                leaver = nodes[trials]
                owned = placements.on(leaver)
                await heartbeats.leave(leaver)
                await placements.until(placements.moved_off(leaver, owned), timeout=10)
                appended = max((await appended_at(bus, owned)).values())
                figures["replace_after_leaving_s"] = appended - heartbeats.last_sent[leaver]

                total, count = _failover_histogram(port)
                figures["ipam_failover_metric_mean_ms"] = 1000 * total / count if count else float("nan")
            finally:
                await heartbeats.close()
                ipam.terminate()
                try:
                    ipam.wait(15)
                except subprocess.TimeoutExpired:
                    ipam.kill()
                    ipam.wait()
    return figures


def measure(
    *, announcers: int = 100, ips: int = 5000, quick: bool = False, ipam_log: Path | None = None
) -> dict[str, float]:
    """Every figure of this benchmark (``bench/l2.py`` reports them beside the network figures)."""
    figures: dict[str, float] = {"announcers": announcers, "ips": ips}
    figures.update(pure(announcers, ips))
    figures.update(asyncio.run(through_nats(announcers, ips, trials=2 if quick else 8, ipam_log=ipam_log)))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer failover trials (under a minute)")
    parser.add_argument("--announcers", type=int, default=100)
    parser.add_argument("--ips", type=int, default=5000)
    parser.add_argument("--ipam-log", type=Path, help="write the ipam process's log (INFO) here")
    args = parser.parse_args()
    figures = measure(announcers=args.announcers, ips=args.ips, quick=args.quick, ipam_log=args.ipam_log)
    targets = {"spread_max_over_fair": ("<=", 1.1), "replace_after_kill_max_s": ("<=", 0.15),
               "replace_after_leaving_s": ("<=", 0.2)}
    for name, value in figures.items():
        target = targets.get(name)
        shown = f"{value:,.4f}" if isinstance(value, float) else f"{value}"
        print(f"{name:>36}: {shown}" + (f"   (target {target[0]} {target[1]})" if target else ""))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
