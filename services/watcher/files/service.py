"""``metalbus watcher --source-dir DIR``: the watcher with a directory of YAML in place of Kubernetes.

One process reads the directory (no leader election: a directory has one reader) and, side by
side, writes status files from the IPAM and ANNOUNCE streams. Ready once the directory is published.
"""

from __future__ import annotations

import logging
from pathlib import Path

from services.common.runtime import ServiceContext, ServiceMain
from services.common.supervision import OnFailure, Supervisor
from services.watcher.files.source import DirectorySource
from services.watcher.files.status import run_file_status

log = logging.getLogger(__name__)

READY_CHECK = "directory"


def directory_watcher_main(*, directory: Path, namespace: str) -> ServiceMain:
    async def main(ctx: ServiceContext) -> None:
        source = DirectorySource(bus=ctx.bus, directory=directory, namespace=namespace)
        ctx.health.set_ready("starting", True)
        ctx.health.set_ready(READY_CHECK, False, "directory not yet published")

        async def ready_when_synced() -> None:
            await source.synced.wait()
            ctx.health.set_ready(READY_CHECK, True)
            log.info("directory published dir=%s namespace=%s", source.directory, namespace)

        # Every task RESTARTs: the source reads the whole directory again, the status files are folded
        # from the streams' start again, the readiness check waits again.
        async with Supervisor() as group:
            group.start("directory-source", lambda: source.run(ctx.stopping), on_failure=OnFailure.RESTART)
            readiness = group.start("directory-ready", ready_when_synced, on_failure=OnFailure.RESTART)
            group.start(
                "status-files",
                lambda: run_file_status(bus=ctx.bus, directory=source.directory, namespace=namespace,
                                        stopping=ctx.stopping),
                on_failure=OnFailure.RESTART,
            )
            await ctx.stopping.wait()
            readiness.cancel()

    return main
