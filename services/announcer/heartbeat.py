"""Announcer liveness on the bus: a heartbeat about every 100 ms, and "leaving" on a graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from schemas.events import AnnouncerHeartbeat
from services.common.bus import Bus
from services.common.errors import MetalbusError
from services.common.subjects import heartbeat_subject

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 0.1


async def send_heartbeats(
    bus: Bus, *, node: str, instance: str, stopping: asyncio.Event, interval: float = HEARTBEAT_INTERVAL
) -> None:
    """Heartbeat until ``stopping`` is set, then send one ``leaving`` heartbeat and flush it."""
    subject = heartbeat_subject(node)
    sequence = 0
    while not stopping.is_set():
        try:
            await bus.notify(subject, AnnouncerHeartbeat(node=node, instance=instance, sequence=sequence))
        except MetalbusError as error:  # disconnected: keep going, the client reconnects
            log.debug("heartbeat not sent node=%s error=%r", node, error)
        sequence += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval)
    try:
        await bus.notify(
            subject, AnnouncerHeartbeat(node=node, instance=instance, sequence=sequence, leaving=True)
        )
        await bus.flush(within=1)
    except MetalbusError as error:
        log.warning("leaving heartbeat not sent node=%s error=%r", node, error)
