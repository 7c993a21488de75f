"""Watcher benchmark against a real nats-server and the Kubernetes API stand-in (in a process of its own,
as a real API server is, driven through the official client).

1. initial list: N Services in the API → every ServiceObserved stored in the K8S stream (seconds), the
   watcher's CPU per Service (this process: the watcher's loop and its client threads; the API stand-in and
   nats-server run apart) and its peak RSS, and the longest its event loop was blocked: late (loop-lag
   probe, wall clock: a loaded machine adds to it) and held (CPU the loop's thread spent between wakeups);
2. restart: a second watcher over the same stream → relisted, compared, nothing published (seconds), the
   peak RSS so far and the longest the loop was late and held during that relist;
3. watch: one Service changed in the API → its ServiceObserved stored, p50/p99 (ms), one at a time;
4. status: IPAM decisions at 100/s → the Service's status shows the IP, p50/p99 (ms) — measured by
   ``bench/watcher_status.py``'s ``measure`` (the status writer's own benchmark).

Prints figures; the last line is one JSON object.  ``python bench/watcher.py [--quick] [--services 50000]
[--profile FILE]`` (``--profile``: a cProfile of the initial list, for ``python -m pstats FILE``)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import multiprocessing
import resource
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import kubernetes.client
from nats.aio.msg import Msg
from nats.js import api as js_api

from schemas.events import ObjectKind, ServiceObserved
from schemas.events.codec import decode
from services.common.bus import Bus, BusSettings
from services.common.loop_lag import LoopLagProbe, LoopThreadWork
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import StreamName, k8s_kind_filter
from services.watcher.kube import KubeClients
from services.watcher.observe import Observers, build_observers, metrics
from services.watcher.service import observe_clients
from tests.kubeapi.handle import KubeApi

NAMESPACE = "bench"


def _service(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"svc-{index}", "namespace": NAMESPACE, "labels": {"app": f"app-{index % 50}"},
                     "annotations": {"metallb.io/address-pool": "lan"}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "x"}},
    }


def _api_process(reports: Connection, control: Connection, total: int) -> None:
    """The API stand-in: ``total`` Services, then one change per ("touch", index) command, reporting
    (name, resourceVersion, monotonic time just before the write)."""
    with KubeApi(history_limit=max(100_000, total * 4)) as api:
        for index in range(total):
            api.put_object(_service(index))
        reports.send(api.url)
        while (command := control.recv()) != "stop":
            _, index, generation = command
            obj = api.get_object("services", f"svc-{index}", NAMESPACE)
            assert obj is not None
            obj["metadata"]["labels"]["generation"] = str(generation)
            written_at = time.monotonic()
            stored = api.put_object(obj)
            reports.send((f"svc-{index}", stored["metadata"]["resourceVersion"], written_at))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def _published() -> float:
    return sum(s.value for m in metrics.EVENTS_PUBLISHED.collect() for s in m.samples if s.name.endswith("_total"))


async def _run_until_synced(observers: Observers) -> tuple[asyncio.Task[None], float]:
    started = time.monotonic()
    task = asyncio.create_task(observers.run())
    await asyncio.wait_for(observers.wait_synced(), 900)
    return task, time.monotonic() - started


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def measure_observe(*, services: int, changes: int, profile: str | None = None) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    reports_in, reports_out = context.Pipe(duplex=False)
    control_in, control_out = context.Pipe(duplex=False)
    child = context.Process(target=_api_process, args=(reports_out, control_in, services), daemon=True)
    child.start()
    url = reports_in.recv()
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    configuration.api_key = {"authorization": "Bearer kubeapi-test"}
    clients = observe_clients(KubeClients.from_api_client(kubernetes.client.ApiClient(configuration)))
    figures: dict[str, Any] = {"services": services}
    try:
        with EmbeddedNats() as server:
            bus = await Bus.connect(BusSettings(url=server.url), producer="watcher/bench")
            async with bus:
                await provision(bus)
                probe, work = LoopLagProbe(component="watcher-bench"), LoopThreadWork()
                lag = [asyncio.create_task(probe.run()), asyncio.create_task(work.run())]
                profiler = cProfile.Profile() if profile else None
                observers = build_observers(bus=bus, clients=clients, namespace="metallb-system")
                cpu = time.process_time()
                if profiler is not None:
                    profiler.enable()
                task, seconds = await _run_until_synced(observers)
                if profiler is not None and profile:
                    profiler.disable()
                    profiler.dump_stats(profile)
                cpu = time.process_time() - cpu
                figures.update(initial_cpu_s=round(cpu, 2), cpu_ms_per_service=round(cpu * 1000 / services, 3),
                               peak_rss_mb=round(_peak_rss_mb()), initial_loop_lag_max_ms=round(probe.largest * 1000),
                               initial_loop_held_max_cpu_ms=round(work.largest * 1000))
                stored = sum([1 async for _ in bus.read(
                    StreamName.K8S, subjects=[k8s_kind_filter(ObjectKind.SERVICE)], last_per_subject=True)])
                figures.update(initial_list_s=round(seconds, 2), initial_stored=stored,
                               initial_per_s=round(stored / seconds))
                await _stop(task)

                before = _published()
                observers = build_observers(bus=bus, clients=clients, namespace="metallb-system")
                probe.largest, work.largest = 0.0, 0.0  # the restart's own figures from here
                cpu = time.process_time()
                task, seconds = await _run_until_synced(observers)
                figures.update(restart_relist_s=round(seconds, 2), restart_published=int(_published() - before),
                               restart_cpu_s=round(time.process_time() - cpu, 2),
                               restart_peak_rss_mb=round(_peak_rss_mb()),
                               restart_loop_lag_max_ms=round(probe.largest * 1000),
                               restart_loop_held_max_cpu_ms=round(work.largest * 1000))

                arrivals: dict[tuple[str, str], float] = {}
                arrived = asyncio.Event()

                async def on_message(msg: Msg) -> None:
                    event = decode(msg.data).event
                    if isinstance(event, ServiceObserved):
                        arrivals[(event.ref.name, event.ref.resource_version)] = time.monotonic()
                        arrived.set()

                subscription = await bus.js.subscribe(
                    k8s_kind_filter(ObjectKind.SERVICE), cb=on_message, ordered_consumer=True,
                    deliver_policy=js_api.DeliverPolicy.NEW,
                )
                lags: list[float] = []
                for change in range(changes):
                    control_out.send(("touch", change % services, change))
                    name, version, written_at = await asyncio.to_thread(reports_in.recv)
                    while (name, version) not in arrivals:
                        arrived.clear()
                        await asyncio.wait_for(arrived.wait(), 10)
                    lags.append((arrivals[(name, version)] - written_at) * 1000)
                await subscription.unsubscribe()
                await _stop(task)
                figures.update(watch_changes=changes, watch_p50_ms=round(_percentile(lags, 0.5), 2),
                               watch_p99_ms=round(_percentile(lags, 0.99), 2),
                               watch_max_ms=round(max(lags), 2) if lags else None,
                               loop_lag_max_ms=max(figures["initial_loop_lag_max_ms"], round(probe.largest * 1000)),
                               loop_held_max_cpu_ms=max(figures["initial_loop_held_max_cpu_ms"],
                                                        round(work.largest * 1000)),
                               peak_rss_mb_end=round(_peak_rss_mb()))
                for task in lag:
                    task.cancel()
    finally:
        control_out.send("stop")
        child.join(10)
        clients.close()
    return figures


async def measure_status(decisions: int) -> dict[str, Any]:
    try:
        from bench.watcher_status import measure
    except ImportError as error:
        return {"status_error": f"status benchmark not available: {error}"}
    result = await measure(paced=decisions, rate=100.0)
    return {"status_decisions": decisions, "status_rate_per_s": 100.0,
            "status_p50_ms": result.get("lag_p50_ms"), "status_p99_ms": result.get("lag_p99_ms")}


async def measure(*, services: int, changes: int, decisions: int, profile: str | None = None) -> dict[str, Any]:
    figures = await measure_observe(services=services, changes=changes, profile=profile)
    if decisions:
        figures.update(await measure_status(decisions))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="10 000 Services, 300 changes, 300 decisions")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the initial list to FILE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.changes, args.decisions = 300, 300
    figures = asyncio.run(measure(services=args.services, changes=args.changes, decisions=args.decisions,
                                  profile=args.profile))
    for name, value in figures.items():
        print(f"{name:>22}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
