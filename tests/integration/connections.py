"""Client connections as the server sees them: a client made to fall behind reading, and the server's word
when it closes one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg

from schemas.advisories import ClientDisconnected
from services.common.bus import Bus, BusSettings
from services.common.inbound import read_connection_closed
from services.common.subjects import CONNECTIONS_CLOSED


def pause_reading(client: Any, *, paused: bool = True) -> None:
    """What the server sends this nats-py client from now on waits unread in its socket (a busy process's
    reading that lags behind its deliveries, the server's PINGs and PONGs among them), while its loop turns
    and it can send. ``paused=False``: it reads again."""
    transport = client._transport._io_writer.transport
    if paused:
        transport.pause_reading()
    else:
        transport.resume_reading()


@contextlib.asynccontextmanager
async def server_closures(url: str) -> AsyncIterator[tuple[Bus, list[ClientDisconnected]]]:
    """The connections the server closes from now on, as it reports them on ``connections.closed`` (and the
    connection that listens, to flush before looking)."""
    watching = await Bus.connect(BusSettings(url=url), producer="test/watching")
    reports: list[ClientDisconnected] = []

    async def on_closed(message: Msg) -> None:
        report = read_connection_closed(message.data, component="test")
        if isinstance(report, ClientDisconnected):
            reports.append(report)

    subscription = await watching.subscribe(CONNECTIONS_CLOSED, cb=on_closed)
    try:
        yield watching, reports
    finally:
        await subscription.close()
        await watching.close()
