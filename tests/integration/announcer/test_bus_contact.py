"""An announcer whose reading falls behind its deliveries keeps its connection and its contact with the bus."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from nats.aio.msg import Msg

from schemas.advisories import ClientDisconnected
from services.announcer.agents.bus_contact import CLIENT_KEEPALIVE, BusContact, keep_in_contact
from services.common.bus import Bus, BusSettings
from services.common.inbound import read_connection_closed
from services.common.nats_server import EmbeddedNats
from services.common.subjects import CONNECTIONS_CLOSED
from tests.waiting import async_wait_until


def _reading(client: Any, *, paused: bool) -> None:
    """Pause (or resume) reading the client's socket: what the server sends, its PONGs and PINGs among them,
    waits unread, as behind a cold start's flood of decisions, while the loop turns and the client sends."""
    transport = client._transport._io_writer.transport
    if paused:
        transport.pause_reading()
    else:
        transport.resume_reading()


async def test_an_announcer_reading_behind_keeps_its_connection_and_is_back_once_it_reads(
        nats_server: EmbeddedNats) -> None:
    """The server closes a client that leaves its pings unanswered for about 1.25 s unless it hears from it.
    The contact check begins a round trip every 100 ms even while earlier answers are unread, so a node whose
    reading is 3 s behind is never closed; its contact is judged lost meanwhile (no message arrives either:
    nothing tells this reader from a cut) and is back at the first answer read."""
    watching = await Bus.connect(BusSettings(url=nats_server.url), producer="test/watching")
    closed: list[ClientDisconnected] = []

    async def on_closed(message: Msg) -> None:
        report = read_connection_closed(message.data, component="test")
        if isinstance(report, ClientDisconnected):
            closed.append(report)

    subscription = await watching.subscribe(CONNECTIONS_CLOSED, cb=on_closed)
    node = await Bus.connect(BusSettings(url=nats_server.url, keepalive=CLIENT_KEEPALIVE), producer="test/node")
    lost, back = asyncio.Event(), asyncio.Event()
    contact = BusContact(stale_after=0.3, clock=asyncio.get_running_loop().time, on_lost=lost.set,
                         on_back=back.set, heard=node.messages_received)
    checking = asyncio.ensure_future(keep_in_contact(node, contact))
    try:
        await async_wait_until(lambda: contact.back.is_set(), what="the first answer")
        connection = node.client.client_id
        _reading(node.client, paused=True)
        await asyncio.wait_for(lost.wait(), 3)
        await asyncio.sleep(3.0)  # reading 3 s behind: twice what the server allows a client it does not hear
        await watching.flush(within=2)
        assert not [r for r in closed if r.client.id == connection]
        _reading(node.client, paused=False)
        await asyncio.wait_for(back.wait(), 3)
        assert node.client.is_connected and not contact.partitioned
        assert node.client.client_id == connection and node.client.stats["reconnects"] == 0
    finally:
        checking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await checking
        contact.close()
        _reading(node.client, paused=False)
        await subscription.close()
        await node.close()
        await watching.close()
