"""Liveness at cluster scale: what following N announcers costs an ipam replica, and how fast a dead one is
noticed while they are all live.

Real parts: a nats-server running metalbus's account (closed connections reported, silent clients pinged),
ipam's ``LivenessWatch`` in a process of its own (``tests/integration/ipam/liveness_processes.py watch``),
real announcer processes (``metalbus announcer``) for the kills. Simulated: N nodes, each a real NATS
connection of this process speaking the text protocol (CONNECT, PONG to every server PING, its heartbeat
naming its connection at once and every heartbeat interval, as the announcer sends it).

Figures:
- ipam CPU (cores) for liveness with N nodes live, over a steady window (user + system time of the watch
  process, from /proc);
- time from ``kill -9`` of a real announcer to the watch declaring its node dead (p50 / p99 / max);
- time from ``SIGSTOP`` of a heartbeat sender to the same (the server's stale close).

    python bench/liveness.py [--nodes 5000] [--window 20] [--kills 10] [--stops 3] [--quick]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere


from schemas.events import AnnouncerHeartbeat, BusConnection
from schemas.events.codec import encode, wrap
from services.common.heartbeats import GRANTED_INTERVAL
from services.common.nats_server import EmbeddedNats, detach_but_die_with_parent
from services.common.subjects import heartbeat_subject

_MARK = 987_654_321_987
#: Less than the server's ping interval (250 ms).
_SPEAK_EVERY = 0.15
_PROCESSES = [sys.executable, "-m", "tests.integration.ipam.liveness_processes"]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class _NodeProtocol(asyncio.Protocol):
    """The wire of one simulated node: the server's INFO, then a PONG for every PING (cheaply: 5 000 nodes
    are pinged four times a second each)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self.info: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # CONNECT at once (it needs nothing from the INFO): the server closes a client that has not sent
        # it within its authorization timeout, which a busy simulator would otherwise miss
        connect = {"verbose": False, "pedantic": False, "lang": "python", "version": "sim", "protocol": 1,
                   "headers": False, "name": f"announcer/{self._name}"}
        transport.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")

    def data_received(self, data: bytes) -> None:
        data = self._buffer + data
        if not self.info.done():
            line, found, rest = data.partition(b"\r\n")
            if not found:
                self._buffer = data
                return
            self.info.set_result(json.loads(line[5:]))
            data = rest
        pings = data.count(b"PING\r\n")
        if pings and self.transport is not None:
            self.transport.write(b"PONG\r\n" * pings)
        self._buffer = data[-5:] if data.endswith((b"P", b"PI", b"PIN", b"PING", b"PING\r")) else b""

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.info.done():
            self.info.set_exception(ConnectionError("closed before the server's INFO"))
        if not self.lost.done():
            self.lost.set_result(None)


class SimulatedNode:
    """One node's NATS connection: CONNECT, a PONG for every PING, a heartbeat every interval; connected
    again when the server closes it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subject = heartbeat_subject(name).encode()
        self._protocol: _NodeProtocol | None = None
        self._body: tuple[bytes, bytes] = (b"", b"")
        self._sequence = 0
        #: Times the server closed this connection (a starved simulator answering its pings too late).
        self.closed = 0
        self._task: asyncio.Task[None] | None = None

    async def open(self, host: str, port: int) -> None:
        while True:
            try:
                await self._connect(host, port)
                break
            except OSError:
                self.closed += 1
                await asyncio.sleep(1.0)  # refused or closed at once: retry after a while, as a client backs off
        self._task = asyncio.get_running_loop().create_task(self._keep_open(host, port))

    async def _keep_open(self, host: str, port: int) -> None:
        while True:
            assert self._protocol is not None
            await self._protocol.lost
            self.closed += 1
            try:
                await self._connect(host, port)  # a new connection, named by its first heartbeat
            except OSError:
                await asyncio.sleep(1.0)  # the server refused: retry after a while, as a client backs off

    async def _connect(self, host: str, port: int) -> None:
        _, protocol = await asyncio.get_running_loop().create_connection(lambda: _NodeProtocol(self.name), host,
                                                                         port)
        info = await protocol.info
        connection = BusConnection(server_id=info["server_id"], client_id=info["client_id"])
        body = encode(wrap(AnnouncerHeartbeat(node=self.name, instance=f"sim-{self.name}", sequence=_MARK,
                                              connection=connection), producer=f"announcer/{self.name}"))
        before, _, after = body.partition(str(_MARK).encode())
        self._body = (before, after)
        self._protocol = protocol
        self.beat()

    def speak(self) -> None:
        """Show the server this client is there, as an announcer's round trips every 100 ms do (the server
        pings only a client that sent nothing for its ping interval): an unsolicited PONG, which needs no
        answer, so the simulator reads nothing for it."""
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.write(b"PONG\r\n")

    def beat(self) -> None:
        if self._protocol is None or self._protocol.transport is None or self._protocol.transport.is_closing():
            return
        body = self._body[0] + str(self._sequence).encode() + self._body[1]
        self._sequence += 1
        self._protocol.transport.write(b"PUB %s %d\r\n%s\r\n" % (self._subject, len(body), body))


async def simulate(host: str, port: int, nodes: list[SimulatedNode], ready: threading.Event,
                   stop: threading.Event) -> None:
    count = len(nodes)
    loop = asyncio.get_running_loop()
    speaking = loop.create_task(_speak(nodes, stop))
    for start in range(0, count, 200):
        await asyncio.gather(*(node.open(host, port) for node in nodes[start:start + 200]))
    ready.set()
    spacing = GRANTED_INTERVAL / count
    while not stop.is_set():
        started = loop.time()
        for index, node in enumerate(nodes):  # spread over the interval, as independent nodes are
            node.beat()
            if index % 50 == 49:
                await asyncio.sleep(max(started + spacing * (index + 1) - loop.time(), 0))
        await asyncio.sleep(max(started + GRANTED_INTERVAL - loop.time(), 0))
    speaking.cancel()


async def _speak(nodes: list[SimulatedNode], stop: threading.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        for node in nodes:
            node.speak()
        await asyncio.sleep(max(started + _SPEAK_EVERY - loop.time(), 0))


class Watch:
    """The liveness watch process: what it prints, and its CPU time."""

    def __init__(self, url: str) -> None:
        self.lines: list[list[str]] = []
        self.process = subprocess.Popen([*_PROCESSES, "watch", url], stdout=subprocess.PIPE, text=True,
                                        cwd=Path(__file__).resolve().parent.parent,
                                        preexec_fn=detach_but_die_with_parent)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.split())

    def live_count(self) -> int:
        live: set[str] = set()
        for words in list(self.lines):
            if words[0] == "live":
                live.add(words[1])
            elif words[0] == "dead":
                live.discard(words[1])
        return len(live)

    def dead_at(self, node: str, *, after: float) -> float | None:
        for words in list(self.lines):
            if words[0] == "dead" and words[1] == node and float(words[2]) >= after:
                return float(words[2])
        return None

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def wait_for(condition: Any, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.002)  # polling a child's output, with a deadline


def one_kill(url: str, watch: Watch, node: str, command: list[str], sig: signal.Signals,
             started_line: str) -> float:
    """Start one node's process, wait until the watch hears it, signal it; seconds until declared dead."""
    output: list[str] = []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=Path(__file__).resolve().parent.parent, preexec_fn=detach_but_die_with_parent)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(lambda: any(words[:2] == ["live", node] for words in list(watch.lines)), timeout=30,
                 what=f"{node} heard ({''.join(output[-5:])})")
        wait_for(lambda: any(started_line in line for line in output), timeout=30, what=f"{node} started")
        time.sleep(0.3)  # let its start settle, on purpose
        signalled = time.monotonic()
        os.kill(process.pid, sig)
        wait_for(lambda: watch.dead_at(node, after=signalled) is not None, timeout=15, what=f"{node} dead")
        dead = watch.dead_at(node, after=signalled)
        assert dead is not None
        return dead - signalled
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_s": round(statistics.median(values), 4),
            "p99_s": round(percentile(values, 0.99), 4), "max_s": round(max(values), 4)}


async def _burst(url: str, *, nodes: int, rounds: int, first_round: int, leaving: bool = False) -> None:
    """``rounds`` heartbeats of each of ``nodes`` nodes, from one connection, 500 at a time every 20 ms (a
    quicker burst holds the watch's loop for longer than the server's stale window: it is disconnected)."""
    import nats

    client = await nats.connect(url)
    try:
        bodies = [encode(wrap(AnnouncerHeartbeat(node=f"burst-{i:05d}", instance="b", sequence=first_round,
                                                 leaving=leaving,
                                                 connection=BusConnection(server_id="burst", client_id=i + 1)),
                              producer="bench/burst")) for i in range(nodes)]
        subjects = [heartbeat_subject(f"burst-{i:05d}") for i in range(nodes)]
        for _ in range(rounds):
            for index, (subject, body) in enumerate(zip(subjects, bodies, strict=True)):
                await client.publish(subject, body)
                if index % 500 == 499:
                    await client.flush()
                    await asyncio.sleep(0.02)  # pacing, on purpose
            await client.flush()
    finally:
        await client.close()


def _settled_cpu(watch: Watch) -> float:
    """The watch's CPU seconds once it has stopped working through a burst."""
    before = watch.cpu_seconds()
    while True:
        time.sleep(0.5)  # sampling the child's CPU time, on purpose
        now = watch.cpu_seconds()
        if now - before < 0.02:
            return now
        before = now


def per_heartbeat(url: str, watch: Watch, *, nodes: int, rounds: int) -> float:
    """The watch's CPU per heartbeat (seconds), from a burst of ``rounds`` heartbeats of ``nodes`` nodes
    (once all are live, so the burst changes nothing but their deadlines)."""
    asyncio.run(_burst(url, nodes=nodes, rounds=1, first_round=0))
    wait_for(lambda: watch.live_count() >= nodes, timeout=60, what="the burst's nodes live")
    started = _settled_cpu(watch)
    asyncio.run(_burst(url, nodes=nodes, rounds=rounds, first_round=1))
    spent = _settled_cpu(watch) - started
    asyncio.run(_burst(url, nodes=nodes, rounds=1, first_round=rounds + 1, leaving=True))  # gone, gracefully
    wait_for(lambda: watch.live_count() == 0, timeout=60, what="the burst's nodes gone")
    return spent / (nodes * rounds)


def measure(*, nodes: int, window: float, kills: int, stops: int, burst_nodes: int = 5000) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * nodes + 1024)), hard))
    figures: dict[str, Any] = {"nodes": nodes, "burst_nodes": burst_nodes, "heartbeat_interval_s": GRANTED_INTERVAL}
    with EmbeddedNats(provision=True) as server:
        watch = Watch(server.url)
        ready, stop = threading.Event(), threading.Event()
        simulated = [SimulatedNode(f"sim-{i:05d}") for i in range(nodes)]
        simulator = threading.Thread(target=lambda: asyncio.run(simulate(server.host, server.port, simulated, ready,
                                                                         stop)), daemon=True)
        try:
            wait_for(lambda: bool(watch.lines), timeout=30, what="the watch to start")
            cost = per_heartbeat(server.url, watch, nodes=burst_nodes, rounds=10)
            figures["ipam_cpu_per_heartbeat_us"] = round(cost * 1e6, 2)
            figures["ipam_liveness_cores_projected_at_5000"] = round(cost * 5000 / GRANTED_INTERVAL, 4)
            connecting = time.monotonic()
            simulator.start()
            wait_for(ready.is_set, timeout=300, what=f"{nodes} connections")
            wait_for(lambda: watch.live_count() >= nodes, timeout=120, what=f"{nodes} nodes live")
            figures["all_live_after_s"] = round(time.monotonic() - connecting, 2)
            time.sleep(GRANTED_INTERVAL)  # one whole period of steady state before measuring, on purpose
            cpu, wall, closed = watch.cpu_seconds(), time.monotonic(), sum(node.closed for node in simulated)
            time.sleep(window)  # the measured window, on purpose
            figures["ipam_liveness_cpu_cores"] = round((watch.cpu_seconds() - cpu) / (time.monotonic() - wall), 4)
            figures["simulated_connections_closed_in_window"] = sum(node.closed for node in simulated) - closed
            figures["live_at_end"] = watch.live_count()
            announcer = [sys.executable, "-m", "services.cli", "announcer", "--nats", server.url,
                         "--http-port", "0", "--http-host", "127.0.0.1", "--node"]
            killed = [one_kill(server.url, watch, f"real-{i}", [*announcer, f"real-{i}"], signal.SIGKILL,
                               "msg=\"l2 agent started\"") for i in range(kills)]
            figures["kill9_real_announcer"] = summary(killed)
            stopped = [one_kill(server.url, watch, f"frozen-{i}", [*_PROCESSES, "heartbeats", server.url,
                                                                  f"frozen-{i}"], signal.SIGSTOP, "connected")
                       for i in range(stops)]
            figures["sigstop_heartbeat_sender"] = summary(stopped)
            figures["live_after_kills"] = watch.live_count()
        finally:
            stop.set()
            watch.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--stops", type=int, default=3)
    parser.add_argument("--burst-nodes", type=int, default=5000, help="nodes of the per-heartbeat burst")
    parser.add_argument("--quick", action="store_true", help="500 nodes, a 6 s window, 3 kills, 1 stop")
    args = parser.parse_args()
    if args.quick:
        args.nodes, args.window, args.kills, args.stops = 500, 6.0, 3, 1
    figures = measure(nodes=args.nodes, window=args.window, kills=args.kills, stops=args.stops,
                      burst_nodes=args.burst_nodes)
    print(f"{figures['nodes']} simulated nodes, heartbeat every {figures['heartbeat_interval_s']} s: all live "
          f"after {figures['all_live_after_s']} s")
    print(f"ipam CPU per heartbeat (a burst of 10 from each of {figures['burst_nodes']} nodes): "
          f"{figures['ipam_cpu_per_heartbeat_us']} µs, so "
          f"{figures['ipam_liveness_cores_projected_at_5000']} cores at 5 000 nodes "
          f"(one every {figures['heartbeat_interval_s']} s each)")
    print(f"ipam liveness CPU: {figures['ipam_liveness_cpu_cores']} cores "
          f"({figures['simulated_connections_closed_in_window']} simulated connections closed by the server meanwhile)")
    for key, what in (("kill9_real_announcer", "kill -9 of a real announcer"),
                      ("sigstop_heartbeat_sender", "SIGSTOP of a heartbeat sender")):
        found = figures[key]
        print(f"{what} -> dead: p50 {found['p50_s']} s, p99 {found['p99_s']} s, max {found['max_s']} s "
              f"(n={found['n']})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
