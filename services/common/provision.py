"""The administrative step: create or upgrade every stream, durable consumer and lease bucket.

Run with the ``admin`` credential (``metalbus bus provision``; in Kubernetes a Job of its own), never by
a long-running component: the services may only use what this step made. It is idempotent: streams
are created or updated to the wanted configuration, durables and buckets created when missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.bus import Bus, BusSettings, stream_config
from services.common.consumer import create_durable, durable_ack_floor, unbound_redelivery
from services.common.errors import Conflict, RetryableError
from services.common.health import Health
from services.common.lease import lease_bucket
from services.common.nats_errors import translated
from services.common.subjects import DURABLES, LEASES, STREAMS

log = logging.getLogger(__name__)


async def provision(bus: Bus) -> None:
    """Streams (with their limits), durable consumers and lease buckets, as this release wants them."""
    for spec in STREAMS:
        config = stream_config(spec, bus.settings.replicas)
        try:
            with translated(f"create stream {spec.name.value}"):
                await bus.js.add_stream(config)
            log.info("stream created stream=%s", spec.name.value)
        except Conflict:  # it exists, with another configuration
            with translated(f"update stream {spec.name.value}"):
                await bus.js.update_stream(config)
    for durable in DURABLES:
        if await durable_ack_floor(bus, durable) is None:
            await create_durable(bus, durable, start_sequence=await bus.last_sequence(durable.stream) + 1)
            log.info("durable consumer created stream=%s durable=%s", durable.stream.value, durable.name)
        elif await unbound_redelivery(bus, durable):
            log.info("durable consumer upgraded stream=%s durable=%s redelivery=unlimited", durable.stream.value,
                     durable.name)
    for lease in LEASES.values():
        await lease_bucket(bus, lease)


async def wait_until_provisioned(bus: Bus, *, health: Health, stopping: asyncio.Event,
                                 interval: float = 2.0) -> bool:
    """Wait until the administrative step has made every stream; not ready meanwhile, saying why.
    False when told to stop first."""
    while not stopping.is_set():
        missing = await bus.missing_streams()
        if not missing:
            health.set_ready("streams", True)
            return True
        reason = f"streams not provisioned: {', '.join(missing)} (run `metalbus bus provision` as admin)"
        health.set_ready("streams", False, reason)
        log.warning("waiting for streams missing=%s", ",".join(missing))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
    return False


async def provision_command(url: str, *, replicas: int, ca_file: str | None, patience: float = 120.0) -> int:
    """``metalbus bus provision``: connect as the admin user, provision, say what is there."""
    settings = BusSettings(url=url, replicas=replicas, tls_ca_file=ca_file, initial_attempts=30)
    async with await Bus.connect(settings, producer="admin/provision") as bus:
        deadline = asyncio.get_running_loop().time() + patience
        while True:
            try:
                await provision(bus)
                break
            except (TimeoutError, RetryableError) as error:
                # a JetStream cluster still forming answers nothing, "unavailable", or that a server
                # a replicated stream needs is not known to be up ("no suitable peers for placement")
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("JetStream not available yet error=%r", error)
                await asyncio.sleep(1.0)  # then ask again: the Job should not fail on a cluster still forming
        missing = await bus.missing_streams()
    if missing:
        log.error("provisioning incomplete missing=%s", ",".join(missing))
        return 1
    log.info("provisioned streams=%s durables=%d leases=%d", ",".join(spec.name.value for spec in STREAMS),
             len(DURABLES), len(LEASES))
    return 0
