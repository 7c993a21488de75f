"""An announcer whose reading falls behind its deliveries keeps its connection and its contact with the bus."""

from __future__ import annotations

import asyncio
import contextlib

from services.announcer.agents.bus_contact import CLIENT_KEEPALIVE, BusContact, keep_in_contact
from services.common.bus import Bus, BusSettings
from services.common.nats_server import EmbeddedNats
from tests.integration.connections import pause_reading, server_closures
from tests.waiting import async_wait_until


async def test_an_announcer_reading_behind_keeps_its_connection_and_is_back_once_it_reads(
        nats_server: EmbeddedNats) -> None:
    """The server closes a client that leaves its pings unanswered for about 1.25 s unless it hears from it.
    The contact check begins a round trip every 100 ms even while earlier answers are unread, so a node whose
    reading is 3 s behind is never closed; its contact is judged lost meanwhile (no message arrives either:
    nothing tells this reader from a cut) and is back at the first answer read."""
    async with server_closures(nats_server.url) as (watching, closed):
        node = await Bus.connect(BusSettings(url=nats_server.url, keepalive=CLIENT_KEEPALIVE), producer="test/node")
        lost, back = asyncio.Event(), asyncio.Event()
        contact = BusContact(stale_after=0.3, clock=asyncio.get_running_loop().time, on_lost=lost.set,
                             on_back=back.set, heard=node.messages_received)
        checking = asyncio.ensure_future(keep_in_contact(node, contact))
        try:
            await async_wait_until(lambda: contact.back.is_set(), what="the first answer")
            connection = node.client.client_id
            pause_reading(node.client)
            await asyncio.wait_for(lost.wait(), 3)
            await asyncio.sleep(3.0)  # reading 3 s behind: twice what the server allows a client it does not hear
            await watching.flush(within=2)
            assert not [r for r in closed if r.client.id == connection]
            pause_reading(node.client, paused=False)
            await asyncio.wait_for(back.wait(), 3)
            assert node.client.is_connected and not contact.partitioned
            assert node.client.client_id == connection and node.client.stats["reconnects"] == 0
        finally:
            checking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checking
            contact.close()
            pause_reading(node.client, paused=False)
            await node.close()
