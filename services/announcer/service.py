"""``metalbus announcer``: runs on every node (hostNetwork, no Kubernetes credentials)."""

from __future__ import annotations

import asyncio

from services.announcer.heartbeat import send_heartbeats
from services.common.runtime import ServiceContext, ServiceMain


def announcer_main(*, node: str) -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        ctx.health.set_ready("starting", True)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(send_heartbeats(ctx.bus, node=node, instance=ctx.instance, stopping=ctx.stopping))

    return main
