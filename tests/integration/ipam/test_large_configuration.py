"""5 000 BGPPeers and 2 000 pools on a real nats-server: the ipam records the configuration in messages the
server accepts, keeps serving, and a restart recovers the configuration in force."""

from __future__ import annotations

import signal

from schemas.events import ConfigurationEvaluated
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.subjects import IPAM_CONFIG_SUBJECT, StreamName
from tests.builders import pool, service
from tests.integration.ipam.helpers import allocations, observe, start_ipam, stop
from tests.large_config import large_configuration
from tests.waiting import async_wait_until


async def evaluated(bus: Bus) -> ConfigurationEvaluated | None:
    last = await bus.last_value(StreamName.IPAM, IPAM_CONFIG_SUBJECT)
    return last.event if last is not None and isinstance(last.event, ConfigurationEvaluated) else None

async def holds(bus: Bus, key: str, ip: str) -> bool:
    return (await allocations(bus)).get(key) == (ip,)

async def test_a_huge_configuration_is_recorded_and_survives_a_restart(bus: Bus, nats_server: EmbeddedNats) -> None:
    configuration = large_configuration(peers=5000, pools=2000)
    await observe(bus, [pool("seed", "192.168.0.0/24")])
    process = start_ipam(nats_server.url)
    try:
        await observe(bus, [service("first")])
        await async_wait_until(lambda: holds(bus, "default/first", "192.168.0.0"), timeout=30, what="ipam serving")
        await observe(bus, configuration)  # arrives while the ipam is active
        await observe(bus, [service("web", annotations={"metallb.io/address-pool": "pool-01999"})])
        await async_wait_until(lambda: holds(bus, "default/web", "10.0.124.240"), timeout=90,
                               what="a Service served from the 2 000th pool")
        recorded = await evaluated(bus)
        assert recorded is not None and recorded.valid and recorded.in_force_parts > 1
        assert process.poll() is None, "the ipam exited"

        process.send_signal(signal.SIGKILL)
        process.wait()
        broken = pool("pool-01999", "not-a-cidr", version="2")  # the observed set is invalid from now on
        await observe(bus, [broken, service("late", annotations={"metallb.io/address-pool": "pool-01998"})])
        process = start_ipam(nats_server.url)
        await async_wait_until(lambda: holds(bus, "default/late", "10.0.124.224"), timeout=90,
                               what="a Service served from the configuration recovered after the restart")
        recorded = await evaluated(bus)
        assert recorded is not None and not recorded.valid
        assert any("not-a-cidr" in problem.message for problem in recorded.problems)
        assert await holds(bus, "default/web", "10.0.124.240"), "the configuration in force changed"
        assert process.poll() is None, "the ipam exited"
    finally:
        stop(process)
