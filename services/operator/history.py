"""``metalbus history <namespace/service | IP>``: the allocation and announcement history from the event log.

The whole IPAM and ANNOUNCE streams are replayed (``Bus.replay``); :func:`history` (pure) picks the
entries about one Service — its allocations, failures and releases, and what happened to the IPs it
held while it held them — or about one IP: which Service held it when, which node answered for it when.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rich.console import Console
from rich.table import Table

from schemas.events import (
    AllocationFailed,
    AnnouncementReported,
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    Event,
    IPAllocated,
    IPReleased,
    L2PlacementCleared,
    L2PlacementDecided,
)
from services.common.bus import Bus, Received
from services.common.errors import NotFound
from services.common.subjects import StreamName
from services.operator.views import connect_operator


@dataclass(frozen=True, slots=True)
class Entry:
    time: datetime
    stream: StreamName
    sequence: int
    what: str


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _service(event: IPAllocated | IPReleased | AllocationFailed) -> str:
    return f"{event.service.namespace}/{event.service.name}"


def describe(event: Event) -> str | None:
    """One event in words; None for events history does not show."""
    if isinstance(event, IPAllocated):
        shared = f", shared as {event.sharing_key!r}" if event.sharing_key else ""
        return f"{_service(event)} holds {', '.join(event.ips)} (pool {event.pool}{shared}): {event.reason}"
    if isinstance(event, IPReleased):
        detail = f": {event.message}" if event.message else ""
        if not event.ips:  # it held nothing: a failure withdrawn as the Service left metalbus
            return f"{_service(event)} no longer served ({event.reason.value}){detail}"
        return f"{_service(event)} released {', '.join(event.ips)} ({event.reason.value}){detail}"
    if isinstance(event, AllocationFailed):
        return f"{_service(event)} got no IP ({event.reason.value}): {event.message}"
    if isinstance(event, L2PlacementDecided):
        why = f": {event.reason}" if event.reason else ""
        return f"{event.ip} placed on node {event.node}{why}"
    if isinstance(event, L2PlacementCleared):
        why = f": {event.reason}" if event.reason else ""
        return f"{event.ip} placed on no node{why}"
    if isinstance(event, BGPAdvertisementDecided):
        routes = ", ".join(f"{r.prefix} by {r.advertisement}" for r in event.routes)
        where = "every node" if event.nodes is None else f"{len(event.nodes)} nodes with a serving endpoint"
        return f"{event.ip} advertised over BGP as {routes}, from {where}"
    if isinstance(event, BGPAdvertisementWithdrawn):
        return f"{event.ip} withdrawn from BGP ({event.reason.value})"
    if isinstance(event, AnnouncementReported):
        if not event.announcing:
            return f"node {event.node} stopped announcing {event.ip} ({event.mode.value})"
        where = ", ".join(event.interfaces or event.peers)
        epoch = f", epoch {event.placement_epoch}" if event.placement_epoch else ""
        return f"node {event.node} announces {event.ip} ({event.mode.value} via {where or '-'}{epoch})"
    return None


def _ip_of(event: Event) -> str | None:
    if isinstance(event, L2PlacementDecided | L2PlacementCleared | AnnouncementReported | BGPAdvertisementDecided
                  | BGPAdvertisementWithdrawn):
        return event.ip
    return None


def history(log: list[tuple[StreamName, Received]], query: str) -> list[Entry]:
    """The entries of ``log`` (both streams, any order) about ``query``, oldest first."""
    ordered = sorted(log, key=lambda item: (item[1].time or item[1].envelope.time, item[0].value,
                                            item[1].sequence))
    by_ip = is_ip(query)
    target_ip = str(ipaddress.ip_address(query)) if by_ip else ""
    held: set[str] = set()  # for a Service: the IPs it holds at this point of the log
    entries: list[Entry] = []
    for stream, received in ordered:
        event = received.event
        text = describe(event)
        if text is None:
            continue
        relevant = False
        if isinstance(event, IPAllocated | IPReleased | AllocationFailed):
            if by_ip:
                relevant = target_ip in getattr(event, "ips", ())
            elif _service(event) == query:
                relevant = True
                held = set(event.ips) if isinstance(event, IPAllocated) else set()
        else:
            ip = _ip_of(event)
            relevant = ip == target_ip if by_ip else ip in held
        if relevant:
            entries.append(Entry(received.time or received.envelope.time, stream, received.sequence, text))
    return entries


async def read_log(bus: Bus) -> list[tuple[StreamName, Received]]:
    log: list[tuple[StreamName, Received]] = []

    def collect(stream: StreamName) -> Callable[[Received], None]:
        return lambda received: log.append((stream, received))

    for stream in (StreamName.IPAM, StreamName.ANNOUNCE):
        try:
            await bus.replay(stream, collect(stream))
        except NotFound:  # not created yet: no history
            continue
    return log


def history_table(query: str, entries: list[Entry]) -> Table:
    table = Table(title=f"history of {query}")
    for column in ("time (UTC)", "stream", "seq", "what"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry.time.strftime("%Y-%m-%d %H:%M:%S"), entry.stream.value, str(entry.sequence), entry.what)
    return table


async def show_history(
    nats_url: str, query: str, *, console: Console | None = None, ca_file: str | None = None
) -> int:
    console = console or Console()
    bus = await connect_operator(nats_url, ca_file=ca_file, command="history")
    async with bus:
        log = await read_log(bus)
    if not is_ip(query) and "/" not in query:
        query = f"default/{query}"
    entries = history(log, query)
    if not entries:
        console.print(f"nothing in the event log about {query}")
        return 1
    console.print(history_table(query, entries))
    return 0
