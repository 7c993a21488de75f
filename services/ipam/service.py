"""``metalbus ipam``: decides allocations (and placements) as events; one active replica at a time."""

from __future__ import annotations

import gc
import sys

from services.common.loop_lag import LoopThreadWork
from services.common.runtime import ServiceContext, ServiceMain
from services.common.supervision import OnFailure, Supervisor, supervised
from services.ipam.replica import Replica, ReplicaSettings

#: Collector thresholds of the ipam process. Every decision allocates a few hundred objects and most
#: of what survives is state kept for good (the world, the ledger, the allocator): with the default
#: 700, young collections and the full ones they lead to rescan that growing state again and again
#: (a third of the active replica's CPU in a burst of 10 000 Services); memory stays the same. The middle
#: generation is collected after every second young collection: after ten, it held up to 100 000 objects
#: still in use (observations being decoded and decided) and one collection of it held the loop 50 to 90 ms.
GC_THRESHOLDS = (10_000, 2, 10)

#: How long a thread of the ipam process may hold the interpreter before another may take it (seconds;
#: Python's default is 5 ms). The replica's CPU-bound work (deciding a batch, warming, placing) runs on
#: threads of its own: with the default, the loop's thread, once it asks, waited up to 5 ms per hand-over,
#: several times over for each of its own callbacks. At 1 ms timers, pings and heartbeats come back sooner.
SWITCH_INTERVAL = 0.001

#: How often the loop's own work is sampled (seconds): 100 cheap wakeups a second.
LOOP_WORK_INTERVAL = 0.01


def ipam_main(settings: ReplicaSettings | None = None) -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        gc.set_threshold(*GC_THRESHOLDS)
        sys.setswitchinterval(SWITCH_INTERVAL)
        # the loop's own longest turn in CPU (``metalbus_event_loop_work_max_seconds``): the wall-clock lag
        # without what a shared machine adds, for the scale benchmark
        work = supervised(LoopThreadWork(interval=LOOP_WORK_INTERVAL, component="ipam").run, name="loop-work",
                          on_failure=OnFailure.REPORT)
        replica = Replica(ctx.bus, holder=ctx.producer, settings=settings or ReplicaSettings(), health=ctx.health)
        try:
            async with Supervisor() as tasks:
                # FAIL_PROBES: a replica that died may have died active, mid-batch; its lease, role and fences
                # are rebuilt cleanly only by a fresh process (the lease is released on the way out, so the
                # standby takes over at once).
                tasks.start("replica", lambda: replica.run(ctx.stopping), on_failure=OnFailure.FAIL_PROBES)
                await replica.loaded.wait()  # a standby with the history loaded is ready to take over
                ctx.health.set_ready("starting", True)
        finally:
            work.cancel()

    return main
