"""``metalbus announcer``: runs on every node (hostNetwork, no Kubernetes credentials)."""

from __future__ import annotations

import asyncio

from services.announcer.bgp_agent import BgpAgent
from services.announcer.heartbeat import send_heartbeats
from services.announcer.l2.interfaces import DEFAULT_POLICY, ExclusionPolicy
from services.announcer.l2.responder import ResponderConfig
from services.announcer.layer2 import L2Agent
from services.common.runtime import ServiceContext, ServiceMain


def announcer_main(*, node: str, policy: ExclusionPolicy = DEFAULT_POLICY) -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        ctx.health.set_ready("starting", True)
        ctx.health.set_ready("layer2", False, "reading the placements")
        agent = L2Agent(ctx.bus, node=node, config=ResponderConfig(policy=policy), health=ctx.health)
        ctx.health.set_ready("bgp", False, "reading the world and the allocations")
        bgp = BgpAgent(ctx.bus, node=node, health=ctx.health)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(send_heartbeats(ctx.bus, node=node, instance=ctx.instance, stopping=ctx.stopping))
            tasks.create_task(agent.run(ctx.stopping))
            tasks.create_task(bgp.run(ctx.stopping))

    return main
