"""``metalbus watcher --source-dir DIR``: the watcher with a directory of YAML in place of Kubernetes.

One process reads the directory (no leader election: a directory has one reader) and, side by
side, writes status files from the IPAM and ANNOUNCE streams. Ready once the directory is published.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from services.common.runtime import ServiceContext, ServiceMain
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

        async with asyncio.TaskGroup() as group:
            group.create_task(source.run(ctx.stopping), name="directory-source")
            readiness = group.create_task(ready_when_synced(), name="directory-ready")
            group.create_task(
                run_file_status(bus=ctx.bus, directory=source.directory, namespace=namespace,
                                stopping=ctx.stopping),
                name="status-files",
            )
            await ctx.stopping.wait()
            readiness.cancel()

    return main
