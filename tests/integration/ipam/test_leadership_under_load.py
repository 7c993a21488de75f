"""Work never costs leadership: two ipam replicas on a real nats-server, each re-adopting as slowly
as a world ten times today's benchmark (100 000 Services), and deciding a batch that keeps the loop
busy for several lease TTLs. Exactly one is active throughout, and its lease never lapses."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from nats.js.kv import KV_DEL, KV_PURGE

from services.common import lease
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.subjects import LEASE_BUCKET_PREFIX
from services.ipam.replica import LEASE_NAME, ReplicaSettings
from tests.builders import pool, service
from tests.integration.ipam.heavy_ipam import HEAVY_PREFIX
from tests.integration.ipam.helpers import allocations, lease_holder, observe, stop
from tests.waiting import async_wait_until

TTL = ReplicaSettings().lease_ttl
ADOPT_SECONDS = 4 * TTL  # the loop blocked for four TTLs on taking over
HEAVY_SERVICES = 5
DECIDE_SECONDS = TTL  # ...and for five more in one batch of decisions


@dataclass(frozen=True, slots=True)
class LeaseEntry:
    holder: str
    operation: str | None
    written: datetime.datetime


def start_heavy_ipam(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.ipam.heavy_ipam", str(ADOPT_SECONDS), str(DECIDE_SECONDS),
             "--nats", url, "--http-port", "0", "--http-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=sink,
        )


@contextlib.asynccontextmanager
async def lease_history(bus: Bus) -> AsyncIterator[list[LeaseEntry]]:
    """Every write of the ipam lease from now on (the bucket must exist), as the server stamped it."""
    kv = await bus.js.key_value(f"{LEASE_BUCKET_PREFIX}{LEASE_NAME}")
    watcher = await kv.watch(LEASE_NAME)
    history: list[LeaseEntry] = []

    async def record() -> None:
        async for entry in watcher:
            if entry is not None and entry.created is not None:
                stored = lease.LeaseEntry.decoded(entry.value)
                history.append(LeaseEntry(stored.holder if stored else "", entry.operation, entry.created))

    recording = asyncio.create_task(record())
    try:
        yield history
    finally:
        recording.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recording
        await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated


async def test_two_replicas_keep_exactly_one_active_while_the_active_one_works_for_several_ttls(
    bus: Bus, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    ordinary = [service(f"svc-{i}") for i in range(20)]
    await observe(bus, [pool("lan", "10.40.0.0/24"), *ordinary])
    first = start_heavy_ipam(nats_server.url, tmp_path / "first.log")
    processes = [first]
    try:
        await async_wait_until(lambda: _held(bus), timeout=20, what="the first replica to take the lease")
        holder = await lease_holder(bus)
        assert holder is not None and holder.endswith(f"-{first.pid}")
        async with lease_history(bus) as history:
            second = start_heavy_ipam(nats_server.url, tmp_path / "second.log")
            processes.append(second)
            # the first one re-adopts (the loop busy for four TTLs), then decides what is pending
            await async_wait_until(lambda: _allocated(bus, len(ordinary)), timeout=30, what="the ordinary Services")
            heavy = [service(f"{HEAVY_PREFIX}{i}") for i in range(HEAVY_SERVICES)]
            await observe(bus, heavy)  # one batch: the loop busy for five TTLs more
            await async_wait_until(
                lambda: _allocated(bus, len(ordinary) + len(heavy)), timeout=30, what="the heavy Services"
            )
        assert second.poll() is None and first.poll() is None
    finally:
        for process in reversed(processes):  # the standby first: the active one's stop hands it the lease
            stop(process)

    assert {entry.holder for entry in history} == {holder}, "another replica took the lease"
    assert [e for e in history if e.operation in (KV_DEL, KV_PURGE)] == [], "the lease was given up"
    gaps = [(b.written - a.written).total_seconds() for a, b in itertools.pairwise(history)]
    assert len(history) > (ADOPT_SECONDS + HEAVY_SERVICES * DECIDE_SECONDS) / TTL
    assert max(gaps) < TTL, f"the lease went {max(gaps):.2f} s without renewal (TTL {TTL} s)"
    first_log = (tmp_path / "first.log").read_text()
    second_log = (tmp_path / "second.log").read_text()
    assert "stepping down" not in first_log and "lease lost" not in first_log, first_log[-2000:]
    assert "active ipam_sequence" in first_log
    assert "active ipam_sequence" not in second_log, "the standby became active"


async def _held(bus: Bus) -> bool:
    return await lease_holder(bus) is not None


async def _allocated(bus: Bus, expected: int) -> bool:
    return len(await allocations(bus)) == expected
