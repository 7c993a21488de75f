"""Announcer liveness on the bus: a heartbeat every 2 s and at once after every (re)connect, naming the
connection it is sent on; "leaving" on a graceful stop.

The ipam declares this node dead when the server reports that connection closed (this process died, or
stopped answering the server's pings), on "leaving", or after a backstop of 2.5 heartbeats. Heartbeats are sent
only while the L2 agent is in step with the bus (``L2Agent.in_step``): a node that comes back from a cut is
heard again once it acts on the newest placements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from schemas.events import AnnouncerHeartbeat
from services.common.aio import first_of
from services.common.bus import Bus
from services.common.errors import MetalbusError
from services.common.heartbeats import HEARTBEAT_INTERVAL
from services.common.subjects import heartbeat_subject

log = logging.getLogger(__name__)


async def send_heartbeats(
    bus: Bus, *, node: str, instance: str, stopping: asyncio.Event, interval: float = HEARTBEAT_INTERVAL,
    vouching: asyncio.Event | None = None,
) -> None:
    """Heartbeat until ``stopping`` is set, then send one ``leaving`` heartbeat and flush it. With ``vouching``,
    only while it is set (and at once when it is set again): while the L2 agent is out of step with the bus
    (cut off, reading the placements again) this node is not heard, so the ipam places nothing on it that it
    would not answer yet."""
    subject = heartbeat_subject(node)
    due = asyncio.Event()  # set by a reconnection: the new connection is named at once
    bus.on_reconnect(due.set)
    sequence = 0
    while not stopping.is_set():
        if vouching is not None and not vouching.is_set():
            await first_of(vouching.wait(), stopping.wait())
            continue
        due.clear()
        try:
            await bus.notify(subject, AnnouncerHeartbeat(node=node, instance=instance, sequence=sequence,
                                                         connection=bus.connection))
        except MetalbusError as error:  # disconnected: keep going, the client reconnects
            log.debug("heartbeat not sent node=%s error=%r", node, error)
        sequence += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_either(stopping, due), timeout=interval)
    try:
        await bus.notify(subject, AnnouncerHeartbeat(node=node, instance=instance, sequence=sequence, leaving=True,
                                                     connection=bus.connection))
        await bus.flush(within=1)
    except MetalbusError as error:
        log.warning("leaving heartbeat not sent node=%s error=%r", node, error)


async def _either(first: asyncio.Event, second: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
