"""One run of ``bench/scale.py`` against one code tree: the whole system at cluster scale, its figures as JSON.

    python bench/scale_run.py --tree TREE --nodes 500 --services 5000 --rate 500 --out FIGURES.json

The services, nats-server (the tree's ``EmbeddedNats``) and the simulated nodes (the tree's heartbeat) run
the code of TREE; the Kubernetes API stand-in, the workload and the measurements are this file's, the same
for every tree. A figure that cannot be measured is ``"failed: <why>"``; the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import scale_procs as procs  # beside this file, imported before the tree is put on sys.path
from cluster_api import REAL_NODES, node_name
from recorder import Recorder

HARNESS = Path(__file__).resolve().parent.parent
OBSERVER = "bench-scale-observer"
#: Simulated nodes' connections per simulator process: each pinged by the server every 250 ms while silent, a
#: process must answer thousands of PINGs a second, each within the server's ~1 s stale window.
CONNECTIONS_PER_SIMULATOR = 1000


def _is_liveness(subject: str) -> bool:
    return subject.startswith(("heartbeat.", "connections.", "$SYS."))
Figures = dict[str, Any]


@dataclass
class Sizes:
    nodes: int
    services: int
    rate: float
    churn_seconds: float
    idle_seconds: float
    status_timeout: float
    nodes_per_connection: int = 1


def _use_tree(tree: Path) -> None:
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [str(tree), *(p for p in sys.path if p != here)]


def _environment(tree: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(PYTHONPATH=str(tree), PYTHONUNBUFFERED="1", NO_PROXY="*", OTEL_TRACES_EXPORTER="none",
               OTEL_METRICS_EXPORTER="none", OTEL_SDK_DISABLED="true")
    return env


class ApiProcess:
    """``bench/cluster_api.py`` in a process of its own (the harness's stand-in, for every tree)."""

    def __init__(self, log_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(HARNESS)}
        self._stderr = (log_dir / "kubeapi.log").open("wb")
        self.popen = subprocess.Popen([sys.executable, str(HARNESS / "bench" / "cluster_api.py")], cwd=HARNESS,
                                      env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      text=True, bufsize=1, start_new_session=True)

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        self.popen.stdin.write(json.dumps(command) + "\n")
        self.popen.stdin.flush()
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError("the API stand-in exited")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"API stand-in: {answer['error']}")
        return answer

    async def ask_async(self, **command: Any) -> dict[str, Any]:
        return await asyncio.to_thread(lambda: self.ask(**command))

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            assert self.popen.stdin is not None
            self.popen.stdin.write('{"do": "stop"}\n')
            self.popen.stdin.close()
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._stderr.close()


@dataclass
class Decisions(Recorder):
    """IPAM decisions as they go by (a plain subscription; bodies parsed as JSON, not by the tree's models)."""

    node: dict[str, str] = field(default_factory=dict)
    at: dict[str, float] = field(default_factory=dict)
    allocated: dict[bytes, float] = field(default_factory=dict)
    watched: set[bytes] = field(default_factory=set)
    last: float = 0.0  # monotonic time of the newest decision seen

    async def on_placement(self, message: Any) -> None:
        self.last = time.monotonic()
        event = json.loads(message.data).get("event", {})
        ip = event.get("ip")
        if ip is None:
            return
        # cleared (no eligible node left): "" — off its old node too
        self.node[ip] = event.get("node", "") if event.get("type") == "L2PlacementDecided" else ""
        self.at[ip] = time.time()
        self.changed.set()

    async def on_allocation(self, message: Any) -> None:
        self.last = time.monotonic()
        for name in self.watched:
            if name in message.data and name not in self.allocated:
                self.allocated[name] = time.time()
                self.changed.set()

    async def quiet(self, *, seconds: float, timeout: float) -> None:
        """Until no decision has been appended for ``seconds`` (what a burst of changes caused is done)."""
        async with asyncio.timeout(timeout):
            while (silent := time.monotonic() - self.last) < seconds:
                await asyncio.sleep(seconds - silent)  # the time left of the quiet window, not a poll

    def moved_off(self, node: str, ips: set[str]) -> Callable[[], bool]:
        return lambda: all(self.node.get(ip) != node for ip in ips)

    def on(self, node: str) -> set[str]:
        return {ip for ip, n in self.node.items() if n == node}


class Run:
    def __init__(self, tree: Path, sizes: Sizes, work: Path, *, log_level: str = "WARNING") -> None:
        self.tree, self.sizes, self.work = tree, sizes, work
        self.log_level = log_level
        self.env = _environment(tree)
        self.figures: Figures = {}
        self.children: dict[str, procs.Child] = {}
        self.ports: dict[str, str] = {}  # child name → its /metrics base URL
        self.lab = procs.NodeNamespaces(REAL_NODES)

    # --- the parts ----------------------------------------------------------------------------
    def service(self, name: str, *arguments: str, netns: int | None = None) -> procs.Child:
        host = self.lab.address(netns) if netns is not None else "127.0.0.1"
        port = procs.free_port("127.0.0.1")
        command = [sys.executable, "-m", "services.cli", *arguments, "--nats", self.nats_url,
                   "--http-port", str(port), "--http-host", host, "--log-level", self.log_level]
        if netns is not None:
            command = self.lab.command(netns, command)
        child = procs.Child(name, command, cwd=self.tree, env=self.env, log_dir=self.work)
        self.children[name] = child
        self.ports[name] = f"http://{host}:{port}"
        return child

    def announcer(self, index: int) -> procs.Child:
        return self.service(f"announcer-{index}", "announcer", "--node", node_name(index),
                            "--exclude-interfaces", "mgmt*,wire*", netns=index)

    def metrics(self, name: str) -> str:
        return str(procs.http_get(f"{self.ports[name]}/metrics"))

    async def ready(self, name: str, timeout: float) -> float:
        """Seconds from the child's start until its /readyz answers 200."""
        child = self.children[name]
        async with asyncio.timeout(timeout):
            while True:
                if not child.alive():
                    raise RuntimeError(f"{name} exited: {child.tail()}")
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(procs.http_get, f"{self.ports[name]}/readyz", 1.0)
                    return float(time.monotonic() - child.started)
                await asyncio.sleep(0.05)  # a child's readiness endpoint: nothing to wait on but polling

    def active_ipam(self) -> str | None:
        for name in ("ipam-a", "ipam-b"):
            with contextlib.suppress(OSError, KeyError):
                if 1.0 in procs.metric_values(self.metrics(name), "metalbus_ipam_active"):
                    return name
        return None

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(condition):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            await asyncio.sleep(0.1)  # a child's /metrics: polled with a deadline

    def varz_out_msgs(self) -> float:
        return float(json.loads(procs.http_get(f"{self.varz}/varz"))["out_msgs"])

    def backlog(self) -> int:
        """Messages of every stream some consumer has not been given or has not acknowledged yet."""
        page = json.loads(procs.http_get(f"{self.varz}/jsz?accounts=true&consumers=true", 10.0))
        return sum(int(consumer.get("num_pending", 0)) + int(consumer.get("num_ack_pending", 0))
                   for account in page.get("account_details", []) for stream in account.get("stream_detail", [])
                   for consumer in stream.get("consumer_detail", []))

    async def settled(self, timeout: float = 60.0) -> None:
        """Until every consumer has caught up with its stream and no decision came for a second: what came
        before is done (a failover measured behind a backlog would time the backlog). Goes on after
        ``timeout`` in all, saying so."""
        deadline = time.monotonic() + timeout
        try:
            await self.until(lambda: self.backlog() == 0, timeout, "consumer caught up")
            await self.decisions.quiet(seconds=1.0, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            procs.log(f"not settled after {timeout:.0f} s (backlog {self.backlog()}): measuring anyway")

    def delivered_but_liveness(self) -> float:
        """Messages the server delivered to the system's connections, but for the connections that only read
        liveness (ipam's heartbeat readers: their traffic depends on the node count, not on changes) and
        this benchmark's own observer."""
        page = json.loads(procs.http_get(f"{self.varz}/connz?limit=1000000&subs=1"))
        total = 0
        for connection in page.get("connections", []):
            subjects = connection.get("subscriptions_list") or []
            if connection.get("name") == OBSERVER or (subjects and all(_is_liveness(s) for s in subjects)):
                continue
            total += int(connection.get("out_msgs", 0))
        return float(total)

    # --- the figures ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def figure(self, *names: str) -> Iterator[None]:
        """A stage whose figures, if it fails, read ``failed: <why>``; the run goes on."""
        try:
            yield
        except Exception as error:
            why = f"failed: {type(error).__name__}: {error}".replace("\n", " ")[:300]
            procs.log(f"{names[0]}… {why}")
            for name in names:
                self.figures.setdefault(name, why)

    async def run(self) -> Figures:
        self.lab.create()
        from services.common import nats_server

        wrapper, monitor = self._monitored_binary(nats_server.nats_server_binary())
        nats_server.nats_server_binary = lambda: str(wrapper)
        try:  # its log beside the services' (why a client was cut: a slow consumer, a stale connection)
            server = nats_server.EmbeddedNats(host=self.lab.server_host, log_file=self.work / "nats-server.log")
        except TypeError:  # a tree whose server keeps no log
            server = nats_server.EmbeddedNats(host=self.lab.server_host)
        server.start()
        try:
            self.nats_url, self.server_pid = server.plain_url, server.pid
            self.varz = f"http://{self.lab.server_host}:{monitor}"  # monitoring listens where clients do
            await self._measure(server)
        finally:
            self._note_cut_connections()
            self._stop_all()
            server.stop()
        procs.log(f"tree {self.tree}: {len(self.figures)} figures")
        return self.figures

    def _monitored_binary(self, binary: str) -> tuple[Path, int]:
        """The tree's nats-server, started as the tree starts it, plus a monitoring port for /varz."""
        port = procs.free_port()
        wrapper = self.work / "nats-server"
        wrapper.write_text(f'#!/bin/sh\nexec {binary} "$@" -m {port}\n')
        wrapper.chmod(0o755)
        return wrapper, port

    async def _simulate(self, count: int) -> None:
        """The simulated nodes, ``CONNECTIONS_PER_SIMULATOR`` connections to a process (each answers its
        connections' PINGs in time even on a busy machine), all heartbeating before this returns."""
        self.sims: list[subprocess.Popen[str]] = []
        per_connection = self.sizes.nodes_per_connection
        per_process = CONNECTIONS_PER_SIMULATOR * per_connection
        for first in range(REAL_NODES, REAL_NODES + count, per_process):
            share = min(per_process, REAL_NODES + count - first)
            self.sims.append(subprocess.Popen(
                [sys.executable, str(HARNESS / "bench" / "node_sim.py"), "--tree", str(self.tree), "--nats",
                 self.nats_url, "--first", str(first), "--count", str(share),
                 "--nodes-per-connection", str(per_connection)],
                cwd=self.tree, env=self.env, stdout=subprocess.PIPE, text=True, start_new_session=True,
                stderr=(self.work / f"node_sim-{len(self.sims)}.log").open("wb")))
        for index, sim in enumerate(self.sims):
            assert sim.stdout is not None
            line = await asyncio.to_thread(sim.stdout.readline)
            if not line.startswith("ready"):
                raise RuntimeError(f"simulated nodes: {(self.work / f'node_sim-{index}.log').read_text()[-500:]}")
        procs.log(f"{count} simulated nodes heartbeating, from {len(self.sims)} processes")

    async def _measure(self, server: Any) -> None:
        s = self.sizes
        procs.log(f"API stand-in: {s.nodes} nodes, {s.services} Services")
        self.api = ApiProcess(self.work)
        self.api.ask(do="start", nodes=s.nodes, services=s.services, kubeconfig=str(self.work / "kubeconfig"))
        await self._simulate(s.nodes - REAL_NODES)

        import nats

        client = await nats.connect(self.nats_url, name=OBSERVER, max_reconnect_attempts=-1, connect_timeout=20)
        self.decisions = Decisions()
        await client.subscribe("ipam.placement.>", cb=self.decisions.on_placement)
        await client.subscribe("ipam.allocation.>", cb=self.decisions.on_allocation)
        try:
            await self._system(s)
        finally:
            await client.close()

    async def _system(self, s: Sizes) -> None:
        for index in range(REAL_NODES - 1):
            self.announcer(index)
        self.service("ipam-a", "ipam")
        self.service("ipam-b", "ipam")
        for name in ("announcer-0", "announcer-1", "ipam-a", "ipam-b"):
            await self.ready(name, timeout=60)
        await self.until(lambda: self.active_ipam() is not None, 60, "active ipam")
        procs.log(f"{self.active_ipam()} active; starting the watcher")

        with self.figure("cold_start_s", "watcher_cpu_ms_per_service"):
            started = time.time()
            watcher = self.service("watcher", "watcher", "--kubeconfig", str(self.work / "kubeconfig"),
                                   "--namespace", "metallb-system")
            done = await self.api.ask_async(do="wait_statuses", count=s.services, timeout=s.status_timeout)
            cpu = procs.cpu_seconds(watcher.pid)
            if done.get("half_at") is not None:
                self.figures["cold_start_half_s"] = done["half_at"] - started
            if done.get("in_a_minute") is not None:
                self.figures["statuses_in_a_minute"] = done["in_a_minute"]
            if done["written"] < s.services:
                raise TimeoutError(f"{done['written']} of {s.services} statuses in {s.status_timeout:.0f} s")
            self.figures["cold_start_s"] = done["at"] - started
            self.figures["watcher_cpu_ms_per_service"] = 1000 * cpu / s.services
            procs.log(f"every status written in {done['at'] - started:.1f} s")

        # the last announcer starts once the cold start's consumers have caught up: a start timed behind that
        # backlog would time the backlog, as a failover would (its CPU to ready is what a loaded machine does
        # not decide: bench/announcer_scale.py)
        await self.settled()
        with self.figure("announcer_ready_s"):
            self.announcer(REAL_NODES - 1)
            self.figures["announcer_ready_s"] = await self.ready(f"announcer-{REAL_NODES - 1}", timeout=60)
        await self.settled()
        await self._idle(s)
        await self._churn(s)
        self._peaks()
        self._note_cut_connections()  # before the faults below cut some on purpose
        await self._l2_failover("kill9", signal.SIGKILL, "announcer-0")
        await self._l2_failover("sigstop", signal.SIGSTOP, "announcer-1")
        await self._takeover(s)

    async def _idle(self, s: Sizes) -> None:
        """Steady state, no churn: what everything costs. The ipam figures need to know which replica is
        active; the others do not, and are measured whatever ipam does."""
        names = ("announcer_idle_cpu_cores", "announcer_idle_rss_mb", "nats_idle_msgs_per_s",
                 "nats_server_idle_cpu_cores", "simulator_idle_cpu_cores")
        used: dict[str, float] = {}
        with self.figure(*names):
            pids = {n: self.children[n].pid for n in ("ipam-a", "ipam-b", "announcer-0")}
            pids |= {"nats-server": self.server_pid} | {f"sim-{i}": sim.pid for i, sim in enumerate(self.sims)}
            procs.log(f"steady state, no churn, {s.idle_seconds:.0f} s")
            before = {n: procs.cpu_seconds(p) for n, p in pids.items()}
            msgs, changes, started = self.varz_out_msgs(), self.delivered_but_liveness(), time.monotonic()
            await asyncio.sleep(s.idle_seconds)  # the measurement window itself
            elapsed = time.monotonic() - started
            used = {n: (procs.cpu_seconds(p) - before[n]) / elapsed for n, p in pids.items()}
            self.idle_msgs_per_s = (self.varz_out_msgs() - msgs) / elapsed
            self.idle_deliveries_per_s = (self.delivered_but_liveness() - changes) / elapsed
            self.figures.update(
                announcer_idle_cpu_cores=used["announcer-0"],
                announcer_idle_rss_mb=procs.memory_mb(pids["announcer-0"]),
                nats_idle_msgs_per_s=self.idle_msgs_per_s,
                nats_server_idle_cpu_cores=used["nats-server"],
                simulator_idle_cpu_cores=sum(v for n, v in used.items() if n.startswith("sim-")))
        with self.figure("ipam_liveness_cpu_cores", "ipam_standby_cpu_cores", "ipam_live_nodes"):
            active = self.active_ipam()
            if active is None:
                shown = ", ".join(f"{n} {v:.2f} cores" for n, v in used.items() if n.startswith("ipam"))
                raise RuntimeError(f"no replica active at the end of the window ({shown})")
            standby = "ipam-b" if active == "ipam-a" else "ipam-a"
            live = procs.metric_values(self.metrics(active), "metalbus_ipam_live_announcers")
            self.figures.update(
                ipam_liveness_cpu_cores=used[active], ipam_standby_cpu_cores=used[standby],
                ipam_live_nodes=f"{int(live[0])} of {s.nodes}" if live else "n/a")

    async def _churn(self, s: Sizes) -> None:
        names = ("announcer_churn_cpu_cores", "announcer_churn_rss_mb", "nats_msgs_per_endpoint_change",
                 "endpoint_changes_per_s")
        with self.figure(*names):
            pid = self.children["announcer-0"].pid
            procs.log(f"{s.rate:.0f} endpoint changes a second for {s.churn_seconds:.0f} s")
            cpu, msgs, started = procs.cpu_seconds(pid), self.delivered_but_liveness(), time.monotonic()
            done = await self.api.ask_async(do="churn", rate=s.rate, seconds=s.churn_seconds)
            await asyncio.sleep(1.0)  # what the last changes cause, delivered
            elapsed = time.monotonic() - started
            idle = getattr(self, "idle_deliveries_per_s", None)
            if idle is None:
                raise RuntimeError("no idle delivery rate to subtract (the steady-state stage failed)")
            delivered = self.delivered_but_liveness() - msgs - idle * elapsed
            self.figures.update(
                announcer_churn_cpu_cores=(procs.cpu_seconds(pid) - cpu) / elapsed,
                announcer_churn_rss_mb=procs.memory_mb(pid),
                nats_msgs_per_endpoint_change=delivered / done["changes"],
                endpoint_changes_per_s=done["changes"] / done["seconds"])

    def _peaks(self) -> None:
        for name in ("watcher", "ipam-a", "ipam-b", "announcer-0"):
            with self.figure(f"peak_rss_mb:{name}"):
                self.figures[f"peak_rss_mb:{name}"] = procs.memory_mb(self.children[name].pid, "VmHWM")
        for name in ("watcher", "ipam-a", "ipam-b", *(f"announcer-{i}" for i in range(REAL_NODES))):
            with self.figure(f"loop_lag_max_s:{name}"):
                values = procs.metric_values(self.metrics(name), "metalbus_event_loop_lag_max_seconds")
                self.figures[f"loop_lag_max_s:{name}"] = max(values) if values else "n/a"

    async def _l2_failover(self, how: str, number: int, name: str) -> None:
        names = (f"l2_failover_{how}_p50_s", f"l2_failover_{how}_p99_s", f"l2_failover_{how}_ips")
        with self.figure(*names):
            await self.settled()
            node = node_name(int(name.rsplit("-", 1)[1]))
            owned = self.decisions.on(node)
            if not owned:
                raise RuntimeError(f"{node} owns no L2 IP")
            procs.log(f"L2 failover: {how} of {name}, owner of {len(owned)} IPs")
            at = time.time()
            self.children[name].signal(number)
            await self.decisions.until(self.decisions.moved_off(node, owned), 30)
            delays = sorted(self.decisions.at[ip] - at for ip in owned)
            self.figures.update({names[0]: statistics.median(delays),
                                 names[1]: delays[min(len(delays) - 1, int(0.99 * len(delays)))],
                                 names[2]: len(owned)})

    async def _takeover(self, s: Sizes) -> None:
        with self.figure("ipam_takeover_s"):
            await self.settled()
            active = self.active_ipam()
            if active is None:
                raise RuntimeError("no active ipam")
            probe = s.services + 1_000_000
            self.decisions.watched.add(f'svc-{probe}"'.encode())
            procs.log(f"takeover: kill -9 of {active}, then a new Service")
            at = time.time()
            self.children[active].signal(signal.SIGKILL)
            await self.api.ask_async(do="add_service", index=probe)
            await self.decisions.until(lambda: bool(self.decisions.allocated), 60)
            self.figures["ipam_takeover_s"] = next(iter(self.decisions.allocated.values())) - at

    def _note_cut_connections(self) -> None:
        """The services' connections the server closed itself (not the client) so far, by component and the
        server's reason (a stale connection: pings unanswered; a slow consumer: not read in time), from its
        /connz. Taken before the fault tests, whose kills and stops cut connections on purpose."""
        if "server_cut_connections" in self.figures or not hasattr(self, "varz"):
            return
        try:
            closed = json.loads(procs.http_get(f"{self.varz}/connz?state=closed&limit=100000", timeout=30))
        except (OSError, ValueError) as error:
            self.figures["server_cut_connections"] = f"unknown: {error!r}"
            return
        cut: collections.Counter[str] = collections.Counter()
        for connection in closed.get("connections") or ():
            name, reason = str(connection.get("name", "")), str(connection.get("reason", ""))
            component = name.split("/", 1)[0]
            if reason != "Client Closed" and component in {"watcher", "ipam", "announcer"}:  # not the simulated
                cut[f"{component} ({reason})"] += 1
        self.figures["server_cut_connections"] = "; ".join(f"{what}: {n}" for what, n in sorted(cut.items())) or "none"

    def _stop_all(self) -> None:
        stubborn = [name for name in ("watcher", "ipam-a", "ipam-b", *(f"announcer-{i}" for i in range(REAL_NODES)))
                    if name in self.children and not self.children[name].stop()]
        if self.children:
            self.figures.setdefault("ignored_sigterm", ", ".join(stubborn) or "none")
        logs = self.work.glob("node_sim-*.log")
        lost = sum(path.read_text(errors="replace").count("connection lost") for path in logs)
        self.figures.setdefault("simulated_connections_lost", lost)
        sims, self.sims = getattr(self, "sims", []), []
        for sim in sims:
            sim.terminate()
        for sim in sims:
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
                sim.wait()
        api = self.__dict__.pop("api", None)
        if api is not None:
            api.stop()
        self.lab.remove()


def _interrupted(*_: Any) -> None:
    """SIGTERM as Ctrl-C, once: the clean-up that follows is not interrupted again."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--churn-seconds", type=float, default=20.0)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--status-timeout", type=float, default=900.0)
    parser.add_argument("--nodes-per-connection", type=int, default=1,
                        help="simulated nodes whose heartbeats share one connection")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep-logs", type=Path, help="copy the services' and nats-server's logs here")
    parser.add_argument("--log-level", default="WARNING", help="the services' log level")
    args = parser.parse_args()
    tree = args.tree.resolve()
    _use_tree(tree)
    sizes = Sizes(args.nodes, args.services, args.rate, args.churn_seconds, args.idle_seconds, args.status_timeout,
                  args.nodes_per_connection)
    with tempfile.TemporaryDirectory(prefix="metalbus-scale-") as work:
        run = Run(tree, sizes, Path(work), log_level=args.log_level)
        signal.signal(signal.SIGTERM, _interrupted)
        try:
            figures = asyncio.run(run.run())
        except BaseException as error:
            figures = {**run.figures, "run": f"failed: {type(error).__name__}: {error}"}
            run._stop_all()
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for log_file in Path(work).glob("*.log"):
                log_file.replace(args.keep_logs / log_file.name)
    args.out.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
