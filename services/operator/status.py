"""``metalbus status``: streams, live announcers and current allocations, read from the bus."""

from __future__ import annotations

import asyncio

from rich.console import Console
from rich.table import Table

from schemas.events import AnnouncerHeartbeat, IPAllocated
from schemas.events.codec import InvalidEvent, decode
from services.common.bus import Bus, BusSettings
from services.common.subjects import HEARTBEATS, IPAM_ALLOCATIONS, STREAMS, StreamName

HEARTBEAT_LISTEN_SECONDS = 0.5


async def show_status(nats_url: str, *, console: Console | None = None) -> int:
    console = console or Console()
    bus = await Bus.connect(BusSettings(url=nats_url, connect_timeout=2.0, initial_attempts=1), producer="status/cli")
    async with bus:
        streams = Table(title="streams")
        for column in ("stream", "messages", "last sequence"):
            streams.add_column(column)
        for spec in STREAMS:
            try:
                info = await bus.js.stream_info(spec.name.value)
            except Exception as error:  # a missing stream is worth showing, not failing on
                streams.add_row(spec.name.value, "-", f"unavailable: {error!r}")
                continue
            streams.add_row(
                spec.name.value, str(info.state.messages), str(info.state.last_seq),
            )
        console.print(streams)

        announcers: dict[str, AnnouncerHeartbeat] = {}

        async def on_heartbeat(message: object) -> None:
            try:
                event = decode(message.data).event  # type: ignore[attr-defined]
            except InvalidEvent:
                return
            if isinstance(event, AnnouncerHeartbeat):
                announcers[event.node] = event

        subscription = await bus.client.subscribe(HEARTBEATS, cb=on_heartbeat)
        await asyncio.sleep(HEARTBEAT_LISTEN_SECONDS)  # listening window for heartbeats, not a sync
        await subscription.unsubscribe()
        table = Table(title="announcers")
        table.add_column("node")
        table.add_column("state")
        for node in sorted(announcers):
            table.add_row(node, "leaving" if announcers[node].leaving else "live")
        console.print(table)

        allocations = Table(title="allocations")
        for column in ("service", "IPs", "pool", "sharing key"):
            allocations.add_column(column)
        async for received in bus.read(StreamName.IPAM, subjects=[IPAM_ALLOCATIONS], last_per_subject=True):
            event = received.event
            if isinstance(event, IPAllocated):
                allocations.add_row(
                    f"{event.service.namespace}/{event.service.name}", ", ".join(event.ips), event.pool,
                    event.sharing_key or "",
                )
        console.print(allocations)
    return 0
