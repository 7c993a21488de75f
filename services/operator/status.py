"""``metalbus status``: what metalbus is doing, read from the bus alone.

Services with their IPs — or, for a Service without one, the reason from the last decision —, the
nodes announcing each IP and since when, pools with usage, the configuration's validity, BGP
sessions, and the announcers that are alive.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from schemas.events import (
    AllocationFailed,
    AnnouncerHeartbeat,
    ConfigurationEvaluated,
    IPAllocated,
    IPReleased,
    PoolUsageReported,
    RollCall,
)
from services.common.bus import Bus, Received
from services.common.inbound import read_heartbeat
from services.common.subjects import HEARTBEATS, ROLL_CALL, STREAMS, StreamName
from services.operator.tables import services_table, sessions_table
from services.operator.views import connect_operator, read_view

#: How long ``status`` listens for the answers to its roll call.
HEARTBEAT_LISTEN_SECONDS = 1.0


@dataclass
class IpamView:
    """The newest decision per subject of the IPAM stream, sorted into what `status` shows."""

    allocated: dict[str, IPAllocated] = field(default_factory=dict)
    failed: dict[str, AllocationFailed] = field(default_factory=dict)
    released: dict[str, IPReleased] = field(default_factory=dict)
    usage: dict[str, PoolUsageReported] = field(default_factory=dict)
    configuration: ConfigurationEvaluated | None = None

    def fold(self, received: Received) -> None:
        event = received.event
        if isinstance(event, IPAllocated | AllocationFailed | IPReleased):
            key = f"{event.service.namespace}/{event.service.name}"
            for table in (self.allocated, self.failed, self.released):
                table.pop(key, None)
            if isinstance(event, IPAllocated):
                self.allocated[key] = event
            elif isinstance(event, AllocationFailed):
                self.failed[key] = event
            else:
                self.released[key] = event
        elif isinstance(event, PoolUsageReported):
            self.usage[event.pool] = event
        elif isinstance(event, ConfigurationEvaluated):
            self.configuration = event


async def read_ipam(bus: Bus) -> IpamView:
    view = IpamView()
    await bus.replay(StreamName.IPAM, view.fold, last_per_subject=True)
    return view


def pools_table(view: IpamView) -> Table:
    table = Table(title="pools")
    for column in ("pool", "IPv4 in use", "IPv4 free", "IPv6 in use", "IPv6 free"):
        table.add_column(column)
    for name in sorted(view.usage):
        usage = view.usage[name]
        table.add_row(name, str(usage.ipv4.assigned), str(usage.ipv4.available), str(usage.ipv6.assigned),
                      str(usage.ipv6.available))
    return table


def configuration_lines(view: IpamView) -> list[str]:
    configuration = view.configuration
    if configuration is None:
        return ["configuration: not evaluated yet (is ipam running?)"]
    if configuration.valid:
        return [f"configuration: valid (generation {configuration.in_force_generation})"]
    lines = ["configuration: [red]INVALID[/red] — the last valid configuration stays in force:"]
    lines += [f"  {problem.message}" for problem in configuration.problems]
    lines += [f"  {configuration.unlisted_problems}"] if configuration.unlisted_problems else []
    return lines


async def live_announcers(bus: Bus, seconds: float = HEARTBEAT_LISTEN_SECONDS) -> dict[str, AnnouncerHeartbeat]:
    """Announcers heard within ``seconds`` of a roll call (each answers it with a heartbeat at once)."""
    heard: dict[str, AnnouncerHeartbeat] = {}

    async def on_heartbeat(message: object) -> None:
        event = read_heartbeat(message.subject, message.data, component="operator")  # type: ignore[attr-defined]
        if isinstance(event, AnnouncerHeartbeat):
            heard[event.node] = event

    subscription = await bus.subscribe(HEARTBEATS, cb=on_heartbeat)
    await bus.notify(ROLL_CALL, RollCall(caller=bus.producer))
    await asyncio.sleep(seconds)  # a listening window, not synchronisation
    await subscription.close()
    return heard


async def show_status(
    nats_url: str, *, console: Console | None = None, ca_file: str | None = None
) -> int:
    console = console or Console()
    bus = await connect_operator(nats_url, ca_file=ca_file, command="status")
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
            streams.add_row(spec.name.value, str(info.state.messages), str(info.state.last_seq))
        console.print(streams)
        view = await read_ipam(bus)
        cluster = await read_view(bus)
        now = datetime.now(UTC)
        for line in configuration_lines(view):
            console.print(line)
        console.print(services_table(cluster, now))
        console.print(pools_table(view))
        if cluster.sessions:
            console.print(sessions_table(cluster, now))
        announcers = await live_announcers(bus)
        table = Table(title="announcers")
        table.add_column("node")
        table.add_column("state")
        for node in sorted(announcers):
            table.add_row(node, "leaving" if announcers[node].leaving else "live")
        console.print(table)
    return 0
