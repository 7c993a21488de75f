"""A large relist is done in slices: the watcher's event loop keeps turning while thousands of objects are
translated, compared and published (its watches, the bus's pings, the status writer and the lease go on)."""

from __future__ import annotations

import asyncio
import gc
import time

from schemas.events import ObjectKind
from services.common.bus import Bus
from services.common.loop_lag import LoopLagProbe, LoopThreadWork
from tests.integration.watcher.helpers import observing, service, stored
from tests.kubeapi import KubeApi

SERVICES = 6000


async def test_a_large_relist_never_holds_the_event_loop(bus: Bus, kube_api: KubeApi) -> None:
    async with observing(bus, kube_api):  # a first start: the client's models are built once per process
        pass

    def put_services() -> None:
        for index in range(SERVICES):
            kube_api.put_object(service(f"svc-{index}", **{"metallb.io/address-pool": "lan"}))

    await asyncio.to_thread(put_services)  # seconds of work: off this loop, whose bus the server pings
    probe, work = LoopLagProbe(component="relist-test", interval=0.005), LoopThreadWork()
    probes = [asyncio.create_task(probe.run()), asyncio.create_task(work.run())]
    # The watcher freezes its heap after its initial lists; this process holds the whole suite's, whose full
    # collections (100 ms and more) would be measured here as if the relist held the loop.
    gc.collect()
    gc.freeze()
    try:
        started, cpu = time.monotonic(), time.thread_time()
        async with observing(bus, kube_api):
            took, took_cpu = time.monotonic() - started, time.thread_time() - cpu
            held, lag = work.largest, probe.largest
    finally:
        gc.unfreeze()
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    assert len(await stored(bus, ObjectKind.SERVICE)) == SERVICES
    print(f"relist of {SERVICES} Services: {took:.2f} s ({took_cpu:.2f} CPU-s on the loop's thread); "
          f"the loop held at most {held * 1000:.0f} ms of CPU, woke at most {lag * 1000:.0f} ms late")
    # In one piece, translating and comparing the list held the loop for about half of the relist's CPU;
    # in slices (20 ms each) the loop turns all along: the longest hold is a small part of the whole (about an
    # eighth here), whatever the machine's speed. CPU rather than wall time, so that a loaded machine does not
    # decide; the 100 ms target and the wall-clock figures are bench/watcher.py's.
    assert held < 0.25
    assert held < took_cpu / 2.5
