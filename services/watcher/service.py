"""``metalbus watcher``: Kubernetes in, status out (filled in by the watcher loops)."""

from __future__ import annotations

from services.common.runtime import ServiceContext, ServiceMain


def watcher_main(*, kubeconfig: str | None, namespace: str) -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        ctx.health.set_ready("starting", True)
        await ctx.stopping.wait()

    return main
