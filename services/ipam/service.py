"""``metalbus ipam``: decides allocations (and placements) as events; one active replica at a time."""

from __future__ import annotations

import asyncio

from services.common.runtime import ServiceContext, ServiceMain
from services.ipam.replica import Replica, ReplicaSettings


def ipam_main(settings: ReplicaSettings | None = None) -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        replica = Replica(ctx.bus, holder=ctx.producer, settings=settings or ReplicaSettings())
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(replica.run(ctx.stopping))
            await replica.loaded.wait()  # a standby with the history loaded is ready to take over
            ctx.health.set_ready("starting", True)

    return main
