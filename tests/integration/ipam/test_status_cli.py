"""`metalbus status` answers "why has my Service no IP?" from the last decision on the bus."""

from __future__ import annotations

from rich.console import Console

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
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
