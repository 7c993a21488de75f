"""``metalbus ipam``: decides allocations and placements (filled in by the ipam service loop)."""

from __future__ import annotations

from services.common.runtime import ServiceContext, ServiceMain


def ipam_main() -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        ctx.health.set_ready("starting", True)
        await ctx.stopping.wait()

    return main
