"""`metalbus status` answers "why has my Service no IP?" from the last decision on the bus."""

from __future__ import annotations

import asyncio

from nats.aio.msg import Msg
from rich.console import Console

from services.announcer.heartbeat import send_heartbeats
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.subjects import HEARTBEATS
from services.operator.status import show_status
from tests.builders import pool, service
from tests.integration.ipam.helpers import allocations, failures, observe
from tests.integration.ipam.test_ipam_service import replica
from tests.waiting import async_wait_until


async def test_status_shows_ips_and_the_reason_a_service_has_none(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, [
        pool("lan", "192.168.10.0/24"),
        service("web"),
        service("stuck", annotations={"metallb.io/loadBalancerIPs": "10.9.9.9"}),
    ])
    async with replica(nats_server.url, "a"):
        async def decided() -> bool:
            return len(await allocations(bus)) == 1 and len(await failures(bus)) == 1

        await async_wait_until(decided, what="both Services decided")
    console = Console(record=True, width=240)
    assert await show_status(nats_server.url, console=console) == 0
    text = console.export_text()
    assert "default/web" in text and "192.168.10.0" in text
    assert "default/stuck" in text and "RequestedIPNotInPool" in text and "10.9.9.9" in text
    assert "configuration: valid" in text
    assert "lan" in text


async def test_status_lists_every_live_announcer_however_rarely_it_heartbeats(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    """Announcers heartbeat every 10 s; `status` listens one second after calling the roll, and hears them all."""
    stopping = asyncio.Event()
    heard: list[str] = []

    async def hear(message: Msg) -> None:
        heard.append(message.subject)

    first_beats = await bus.subscribe(HEARTBEATS, cb=hear)
    senders = [asyncio.create_task(send_heartbeats(bus, node=node, instance=f"{node}-1", stopping=stopping,
                                                   interval=60.0)) for node in ("node-a", "node-b")]
    try:
        await async_wait_until(lambda: len(heard) == 2, what="both first heartbeats (before status listens)")
        await first_beats.close()
        console = Console(record=True, width=240)
        assert await show_status(nats_server.url, console=console) == 0
        rows = [line.split() for line in console.export_text().splitlines()]
        assert ["│", "node-a", "│", "live", "│"] in rows and ["│", "node-b", "│", "live", "│"] in rows
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*senders), 5)
