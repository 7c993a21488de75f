"""``metalbus announcer``: runs on every node (hostNetwork, no Kubernetes credentials)."""

from __future__ import annotations

import gc

from services.announcer.agents.bgp import BgpAgent
from services.announcer.agents.dataplane import DataPlaneReporter
from services.announcer.agents.layer2 import L2Agent
from services.announcer.heartbeat import send_heartbeats
from services.announcer.l2.interfaces import DEFAULT_POLICY, ExclusionPolicy
from services.announcer.l2.responder import ResponderConfig
from services.common.runtime import ServiceContext, ServiceMain
from services.common.supervision import OnFailure, Supervisor

#: Collector thresholds of the announcer process. Its start-up reads pass tens of thousands of messages (each a
#: few tracked objects) while the BGP agent builds its decisions for good: with the default 700, young
#: collections and the full ones they lead to rescanned that growing state, 0.55 of 3.4 CPU seconds of the
#: two reads at 50 000 Services (0.2 with these); memory stays the same.
GC_THRESHOLDS = (10_000, 10, 10)


def announcer_main(
    *, node: str, policy: ExclusionPolicy = DEFAULT_POLICY, bgp_listen_port: int | None = None
) -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        gc.set_threshold(*GC_THRESHOLDS)
        ctx.health.set_ready("starting", True)
        ctx.health.set_ready("layer2", False, "reading the placements")
        agent = L2Agent(ctx.bus, node=node, config=ResponderConfig(policy=policy), health=ctx.health)
        ctx.health.set_ready("bgp", False, "reading the decisions")
        bgp = BgpAgent(ctx.bus, node=node, health=ctx.health, listen_port=bgp_listen_port)
        # Not ready before the first heartbeat makes this node live: no IP comes before it can answer.
        reporter = DataPlaneReporter(ctx.bus, node=node, instance=ctx.instance, policy=policy)
        await reporter.starting()
        # Heartbeats RESTART (a loop that keeps nothing). The agents FAIL_PROBES: each owns sockets, sessions
        # and what it has announced, which only a fresh process rebuilds cleanly; their death cancels the
        # heartbeats too, which then say "leaving", so the ipam moves this node's IPs at once instead of trusting
        # a node that answers nothing.
        async with Supervisor() as tasks:
            tasks.start(
                "heartbeats",
                lambda: send_heartbeats(ctx.bus, node=node, instance=ctx.instance, stopping=ctx.stopping,
                                        vouching=agent.in_step),
                on_failure=OnFailure.RESTART,
            )
            tasks.start("l2-agent", lambda: agent.run(ctx.stopping), on_failure=OnFailure.FAIL_PROBES)
            # RESTART: it keeps nothing but what it last reported (it reports again if that changed)
            tasks.start("dataplane-report", lambda: reporter.run(ctx.stopping, agent.answering_ready),
                        on_failure=OnFailure.RESTART)
            tasks.start("bgp-agent", lambda: bgp.run(ctx.stopping), on_failure=OnFailure.FAIL_PROBES)

    return main
