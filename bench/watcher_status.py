"""Status writer benchmark: IPAM decision -> Service status written, against a real nats-server and the
Kubernetes API stand-in (driven through the official client, as in production).

1. paced: IPAllocated decisions at a steady rate (default 100/s); per decision the time from its
   publish to the Service showing the IP in ``status.loadBalancer.ingress`` (p50/p99/max).
2. burst: many decisions at once; time until every Service shows its IP (as fast as the API server
   accepts, at most 16 objects in flight; a 429 would pause the writer).
3. restart: a second writer (a new leader) over the same streams and objects: time until it has
   rebuilt its state and compared it with Kubernetes, and how many writes that took (only what the
   first writer's stop cut short: a write is idempotent, the next leader finishes it).

The writer runs as in the watcher: its own threads and connections (``status_writer_io``), and told every
Service the observe side lists (``StatusWriter.seen``), so a write needs no read first. The decisions are
published from a thread and connection of their own; the CPU figures are the writer's alone (the process
but that publisher), split into its event loop and its client threads. The API stand-in runs in a process
of its own: the Services/s it accepts bound the rate, not the writer's CPU.

Prints figures; the last line is one JSON object.
``python bench/watcher_status.py [--quick] [--workers N] [--paced N] [--burst N]`` (``--workers``: most writes
in flight)
:func:`measure` is importable for other benchmarks (``bench/watcher.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import multiprocessing
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import kubernetes.client

from schemas.events import IPAllocated, ObjectKind, ServiceId
from services.common.bus import Bus, BusSettings
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import ipam_allocation_subject
from services.watcher.kube import KubeClients
from services.watcher.status import metrics
from services.watcher.status.objects import SERVICES, ObjectApi
from services.watcher.status.writer import StatusWriter, StatusWriterSettings, status_writer_io
from tests.kubeapi.handle import KubeApi

NAMESPACE = "bench"
T = TypeVar("T")


def _ip(index: int) -> str:
    return f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"


def _follow(api: KubeApi, stop: threading.Event, report: Callable[[str, float], None]) -> None:
    """Report when each Service first shows an ingress IP (reads the stand-in's change log directly)."""
    store = api.store
    cursor = [store.rv]
    done: set[str] = set()
    while not stop.is_set():
        store.wait_for(lambda: store.rv > cursor[0] or stop.is_set(), 0.2)
        for change in store.changes_after(cursor[0], open_watch=True):
            cursor[0] = change.rv
            if change.key[0] != "services" or change.key[2] in done:
                continue
            status = change.obj.get("status") or {}
            if (status.get("loadBalancer") or {}).get("ingress"):
                done.add(change.key[2])
                report(change.key[2], time.monotonic())


def _api_process(reports: Connection, control: Connection, total: int) -> None:
    """The API stand-in in its own process, as a real API server is: it shares no interpreter lock."""
    with KubeApi(history_limit=max(100_000, total * 10)) as api:
        uids = []
        for index in range(total):
            obj = api.put_object({"apiVersion": "v1", "kind": "Service",
                                  "metadata": {"name": f"svc-{index}", "namespace": NAMESPACE},
                                  "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
            uids.append(obj["metadata"]["uid"])
        reports.send((api.url, uids))
        stop = threading.Event()
        follower = threading.Thread(target=_follow, args=(api, stop, lambda n, t: reports.send((n, t))))
        follower.start()
        control.recv()
        stop.set()
        follower.join()
        reports.send(None)


class _Publisher:
    """Publishes the decisions on a thread, loop and connection of its own, as ipam does from its own
    process: its CPU is told apart from the status writer's."""

    def __init__(self, url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="publisher", daemon=True)
        self._thread.start()
        self.cpu = 0.0
        self.bus = self._submit(Bus.connect(BusSettings(url=url), producer="bench/ipam")).result(30)

    def _submit(self, work: Awaitable[T]) -> concurrent.futures.Future[T]:
        async def run() -> T:
            return await work
        return asyncio.run_coroutine_threadsafe(run(), self._loop)

    async def run(self, work: Callable[[Bus], Awaitable[None]]) -> None:
        async def timed() -> None:
            started = time.thread_time()
            try:
                await work(self.bus)
            finally:
                self.cpu += time.thread_time() - started
        await asyncio.wrap_future(self._submit(timed()))

    def close(self) -> None:
        self._submit(self.bus.close()).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class _Cpu:
    """CPU seconds of this process, of its main thread (the event loop) and of the publisher."""

    def __init__(self, publisher: _Publisher) -> None:
        self._publisher = publisher
        self._main = time.pthread_getcpuclockid(threading.main_thread().ident or 0)

    def now(self) -> tuple[float, float, float]:
        return time.process_time(), time.clock_gettime(self._main), self._publisher.cpu

    def per_service_ms(self, since: tuple[float, float, float], count: int) -> dict[str, float]:
        """The writer's CPU per Service (the process but the publisher), and its loop's and its clients'
        threads' parts."""
        process, loop, publisher = (now - before for now, before in zip(self.now(), since, strict=True))
        writer = process - publisher
        return {"writer": round(writer * 1000 / max(1, count), 3),
                "loop": round(loop * 1000 / max(1, count), 3),
                "client_threads": round((writer - loop) * 1000 / max(1, count), 3)}


def _writes_made() -> int:
    return int(sum(sample.value for metric in metrics.WRITES.collect() for sample in metric.samples
                   if sample.name.endswith("_total")))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def _settled(writer: StatusWriter, timeout: float = 30.0) -> None:
    """Until the writer has nothing left to write and no Event left to record."""
    deadline = time.monotonic() + timeout
    while (len(writer.queue) or writer.recorder.pending) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the last writes in flight


async def _wait_all(names: list[str], arrivals: deque[str], timeout: float) -> bool:
    """Until every one of ``names`` has arrived (``arrivals``: the names written, in order, consumed here)."""
    deadline = time.monotonic() + timeout
    waiting = set(names)
    while time.monotonic() < deadline:
        while arrivals:
            waiting.discard(arrivals.popleft())
        if not waiting:
            return True
        await asyncio.sleep(0.01)
    return False


async def measure(*, paced: int, rate: float = 100.0, burst: int = 0,
                  settings: StatusWriterSettings | None = None) -> dict[str, Any]:
    """Run both phases; figures in milliseconds and objects per second."""
    total = paced + burst
    context = multiprocessing.get_context("spawn")
    reports_in, reports_out = context.Pipe(duplex=False)
    control_in, control_out = context.Pipe(duplex=False)
    child = context.Process(target=_api_process, args=(reports_out, control_in, total), daemon=True)
    child.start()
    url, uids = reports_in.recv()
    written: dict[str, float] = {}

    arrivals: deque[str] = deque()

    def collect() -> None:
        while (item := reports_in.recv()) is not None:
            written[item[0]] = item[1]
            arrivals.append(item[0])

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": "Bearer kubeapi-test"}
    clients = KubeClients.from_api_client(kubernetes.client.ApiClient(configuration))
    settings = settings or StatusWriterSettings()
    with EmbeddedNats() as server:
        bus = await Bus.connect(BusSettings(url=server.url), producer="bench/watcher")
        publisher = _Publisher(server.url)
        cpu = _Cpu(publisher)
        stopping = asyncio.Event()
        async with bus, status_writer_io(clients, settings) as (own, executor):
            writer = StatusWriter(bus=bus, clients=own, namespace="metallb-system", stopping=stopping,
                                  settings=settings, executor=executor)
            # the observe side lists the Services and tells each to the status writer (``Sightings``)
            for obj in await ObjectApi(own, executor=executor).list(SERVICES, NAMESPACE):
                writer.seen(ObjectKind.SERVICE, obj)
            await provision(bus)
            task = asyncio.create_task(writer.run())
            await asyncio.wait_for(writer.ready.wait(), 30)

            def decision(index: int) -> tuple[str, IPAllocated]:
                service = ServiceId(namespace=NAMESPACE, name=f"svc-{index}", uid=uids[index])
                return (ipam_allocation_subject(NAMESPACE, service.name),
                        IPAllocated(service=service, ips=(_ip(index),), pool="bench", reason="benchmark"))

            sent: dict[str, float] = {}

            async def publish_paced(bus: Bus) -> None:
                start = time.monotonic()
                for index in range(paced):
                    due = start + index / rate
                    await asyncio.sleep(max(0.0, due - time.monotonic()))  # pacing the decisions
                    subject, event = decision(index)
                    sent[event.service.name] = time.monotonic()
                    await bus.publish(subject, event)

            cpu_start = cpu.now()
            await publisher.run(publish_paced)
            paced_ok = await _wait_all(list(sent), arrivals, 60)
            await _settled(writer)  # the annotation writes and Events that follow each status write
            paced_cpu = cpu.per_service_ms(cpu_start, paced) if paced else {}
            lags = [(written[name] - at) * 1000 for name, at in sent.items() if name in written]

            burst_rate = float("nan")
            burst_ok = True
            burst_cpu: dict[str, float] = {}
            if burst:
                items = [decision(index) for index in range(paced, total)]

                async def publish_burst(bus: Bus) -> None:
                    await bus.publish_many((subject, event, None) for subject, event in items)

                cpu_start = cpu.now()
                start = time.monotonic()
                await publisher.run(publish_burst)
                names = [event.service.name for _, event in items]
                burst_ok = await _wait_all(names, arrivals, 120)
                burst_rate = burst / (max(written.get(n, start) for n in names) - start)
                await _settled(writer)
                burst_cpu = cpu.per_service_ms(cpu_start, burst)

            stopping.set()
            stopped_at = time.monotonic()
            await asyncio.wait_for(task, 30)
            stop_s = time.monotonic() - stopped_at

            # a new leader over the same streams: rebuild, compare with one list, write nothing
            writes_before = _writes_made()
            stopping = asyncio.Event()
            writer = StatusWriter(bus=bus, clients=own, namespace="metallb-system", stopping=stopping,
                                  settings=settings, executor=executor)
            started = time.monotonic()
            task = asyncio.create_task(writer.run())
            await asyncio.wait_for(writer.ready.wait(), 120)
            restart_s = time.monotonic() - started
            deadline = time.monotonic() + 60
            while len(writer.queue) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # whatever the comparison found to write
            restart_writes = _writes_made() - writes_before
            stopping.set()
            await asyncio.wait_for(task, 30)
        publisher.close()
    clients.close()
    control_out.send("stop")
    collector.join(10)
    child.join(10)
    return {
        "paced_decisions": paced, "paced_rate_per_s": rate, "paced_all_written": paced_ok,
        "lag_p50_ms": round(_percentile(lags, 0.50), 2), "lag_p99_ms": round(_percentile(lags, 0.99), 2),
        "lag_max_ms": round(max(lags, default=float("nan")), 2),
        "cpu_ms_per_decision": paced_cpu.get("writer"), "paced_cpu_ms": paced_cpu, "burst_cpu_ms": burst_cpu,
        "burst_decisions": burst, "burst_all_written": burst_ok,
        "burst_services_per_s": round(burst_rate, 1), "stop_s": round(stop_s, 3),
        "restart_services": total, "restart_ready_s": round(restart_s, 3), "restart_writes": restart_writes,
    }


def _cpu_text(figures: dict[str, float]) -> str:
    if not figures:
        return "-"
    return (f"{figures['writer']} ms ({figures['loop']} ms on its event loop, {figures['client_threads']} ms in "
            f"its client threads; the publisher's CPU not counted)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 000 paced decisions, 1 000 in a burst")
    parser.add_argument("--rate", type=float, default=100.0, help="paced decisions per second")
    parser.add_argument("--workers", type=int, default=StatusWriterSettings().workers,
                        help="most writes in flight")
    parser.add_argument("--paced", type=int, help="paced decisions (default 6 000, 1 000 with --quick)")
    parser.add_argument("--burst", type=int, help="decisions in the burst (default 5 000, 1 000 with --quick)")
    args = parser.parse_args()
    paced, burst = (1000, 1000) if args.quick else (6000, 5000)
    paced, burst = args.paced if args.paced is not None else paced, args.burst if args.burst is not None else burst
    settings = StatusWriterSettings(workers=args.workers)
    figures = asyncio.run(measure(paced=paced, rate=args.rate, burst=burst, settings=settings))
    if paced:
        print(f"paced {paced} decisions at {args.rate:.0f}/s: decision -> Service status written "
              f"p50 {figures['lag_p50_ms']} ms, p99 {figures['lag_p99_ms']} ms, max {figures['lag_max_ms']} ms "
              f"(target p99 <= 50 ms); the writer's CPU per Service: {_cpu_text(figures['paced_cpu_ms'])}")
    print(f"burst of {burst} decisions: {figures['burst_services_per_s']} Services/s written "
          f"(at most {settings.workers} writes in flight, paced by the API server's answers); "
          f"the writer's CPU per Service: {_cpu_text(figures['burst_cpu_ms'])}")
    cold = 50_000 / figures["burst_services_per_s"] if figures["burst_services_per_s"] > 0 else float("nan")
    print(f"cold start of 50 000 Services at the burst's rate: {cold:.0f} s (target <= 60 s; the API stand-in "
          f"runs in a process of its own and shares the machine's cores)")
    print(f"stop after the burst: {figures['stop_s']} s")
    print(f"restart over {figures['restart_services']} allocated Services: ready (rebuilt and compared) in "
          f"{figures['restart_ready_s']} s, {figures['restart_writes']} writes")
    print(json.dumps({"benchmark": "watcher_status", "quick": args.quick, **figures}))


if __name__ == "__main__":
    main()
