"""A lease kept from a thread of its own: work on the owner's loop never costs it, losing it is noticed
within the TTL, and a holder whose connection closes loses it at once — against a real nats-server."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js.kv import KeyValue
from prometheus_client import REGISTRY

from schemas.events import BusConnection
from services.common.bus import Bus, BusSettings
from services.common.lease import LeaseEntry
from services.common.lease_keeper import LeaseKeeper
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from services.common.subjects import LEASE_BUCKET_PREFIX, LEASES, Component
from tests.advisories import closed_advisory
from tests.integration.ipam.heavy_ipam import work_without_yielding
from tests.secured_nats import secured_nats
from tests.waiting import async_wait_until, wait_until

TTL = 1.0
INTERVAL = 0.1


@pytest.fixture
async def keepers(bus: Bus) -> AsyncIterator[list[LeaseKeeper]]:
    """Two keepers competing for one lease, on connections and threads of their own."""
    started = [
        LeaseKeeper(bus.settings, name="t-keeper", holder=holder, ttl=TTL, interval=INTERVAL)
        for holder in ("owner", "rival")
    ]
    for keeper in started:
        await keeper.start()
    try:
        yield started
    finally:
        for keeper in started:
            await keeper.stop()


async def held_by_the_first(bus: Bus, keepers: list[LeaseKeeper]) -> KeyValue:
    """The first keeper holds the lease, the second competes for it: the lease's bucket."""
    owner, rival = keepers
    owner.compete()
    await async_wait_until(lambda: owner.held, what="the owner to hold the lease")
    rival.compete()
    return await bus.js.key_value(f"{LEASE_BUCKET_PREFIX}t-keeper")


async def test_the_lease_is_kept_while_the_owners_loop_works_for_four_ttls(
    bus: Bus, keepers: list[LeaseKeeper]
) -> None:
    owner, rival = keepers
    kv = await held_by_the_first(bus, keepers)
    before = (await kv.get("t-keeper")).revision

    work_without_yielding(4 * TTL)

    assert owner.held and owner.losses == 0
    assert rival.acquisitions == 0, "the rival took the lease while the owner worked"
    # The server closed this loop's own connection while the loop was held (it closes clients that answer
    # none of its pings): read the lease on a fresh one.
    after = await Bus.connect(bus.settings, producer="test/lease-keeper")
    try:
        entry = await (await after.js.key_value(f"{LEASE_BUCKET_PREFIX}t-keeper")).get("t-keeper")
    finally:
        await after.close()
    found = LeaseEntry.decoded(entry.value)
    assert found is not None and found.holder == "owner"
    renewals = (entry.revision or 0) - (before or 0)
    assert renewals >= 4 * TTL / INTERVAL / 4, f"only {renewals} renewals in {4 * TTL} s of work"


async def test_a_lease_taken_away_is_noticed_within_a_renewal(bus: Bus, keepers: list[LeaseKeeper]) -> None:
    owner, _ = keepers
    owner.compete()
    await async_wait_until(lambda: owner.held, what="the owner to hold the lease")
    kv = await bus.js.key_value(f"{LEASE_BUCKET_PREFIX}t-keeper")
    await kv.put("t-keeper", b"intruder")
    await asyncio.wait_for(owner.lost.wait(), timeout=3 * INTERVAL + 0.5)
    assert not owner.held and owner.losses == 1
    assert (await kv.get("t-keeper")).value == b"intruder"  # the owner did not write over it


async def test_released_lease_goes_to_the_rival_at_once(keepers: list[LeaseKeeper]) -> None:
    owner, rival = keepers
    owner.compete()
    await async_wait_until(lambda: owner.held, what="the owner to hold the lease")
    rival.compete()
    await owner.release()
    assert not owner.held
    await asyncio.wait_for(rival.acquired.wait(), timeout=TTL / 2)
    assert rival.held and owner.losses == 0


async def test_with_the_server_gone_a_renewal_gives_up_within_the_ttl() -> None:
    """A request to an unreachable server would wait the request timeout (5 s): the renewal is cut off
    when the lease runs out, and the owner hears of the loss."""
    with EmbeddedNats() as server:
        keeper = LeaseKeeper(BusSettings(url=server.url), name="t-gone", holder="owner", ttl=TTL, interval=INTERVAL)
        try:
            await keeper.start()
            keeper.compete()
            await async_wait_until(lambda: keeper.held, what="the lease to be held")
            server.kill()
            gone = time.monotonic()
            await asyncio.wait_for(keeper.lost.wait(), timeout=TTL + 1.0)
            assert time.monotonic() - gone < TTL + 0.5
            assert not keeper.held
        finally:
            await keeper.stop()


def entry_connection(value: bytes | None) -> BusConnection | None:
    entry = LeaseEntry.decoded(value)
    return entry.connection if entry is not None else None


def takeovers(lease: str, reason: str) -> float:
    return REGISTRY.get_sample_value("metalbus_lease_takeovers_total", {"lease": lease, "reason": reason}) or 0.0


async def test_the_holders_closed_connection_hands_the_lease_over_unless_its_server_shuts_down(
    bus: Bus, keepers: list[LeaseKeeper]
) -> None:
    owner, rival = keepers
    kv = await held_by_the_first(bus, keepers)
    owners = entry_connection((await kv.get("t-keeper")).value)
    assert owners is not None and owners.client_id > 0
    before = takeovers("t-keeper", "Client Closed")

    # A client of a server going down reconnects to another: its holder is not deposed.
    assert not await rival.closed_reported(closed_advisory(owners, "Server Shutdown"))
    # Another connection closing takes nothing.
    assert not await rival.closed_reported(closed_advisory(bus.connection, "Client Closed"))
    assert owner.held and not rival.held and rival.acquisitions == 0

    assert await rival.closed_reported(closed_advisory(owners, "Client Closed"))
    assert rival.held and rival.acquisitions == 1
    assert takeovers("t-keeper", "Client Closed") == before + 1
    await asyncio.wait_for(owner.lost.wait(), timeout=3 * INTERVAL + 0.5)  # its next renewal finds it taken
    taken = LeaseEntry.decoded((await kv.get("t-keeper")).value)
    assert taken is not None and taken.holder == "rival"


async def test_a_holder_killed_with_sigkill_hands_the_lease_over_before_its_entry_expires(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ipam's own lease and user on a server with the shipped accounts: the keeper may hear closed
    connections, and leaving the server fails on any permission it was refused."""
    spec = LEASES[Component.IPAM]
    caplog.set_level(logging.WARNING, logger="services.common.lease_keeper")
    with secured_nats(tmp_path / "nats") as server:
        url = server.url_for(BusUser.IPAM)
        child = subprocess.Popen([sys.executable, "-m", "tests.integration.lease_holder", url, spec.name, "active",
                                  "--ttl", str(spec.ttl)], stdout=subprocess.PIPE, text=True)
        standby = LeaseKeeper(BusSettings(url=url), name=spec.name, holder="standby", ttl=spec.ttl,
                              interval=INTERVAL)
        try:
            assert child.stdout is not None
            said: list[str] = []
            reader = threading.Thread(target=lambda: said.extend(child.stdout or []), daemon=True)
            reader.start()
            wait_until(lambda: "held\n" in said, timeout=30, what="the active keeper to hold the lease")
            await standby.start()
            standby.compete()
            before = takeovers(spec.name, "Client Closed")
            child.kill()
            await asyncio.wait_for(standby.acquired.wait(), timeout=5 * spec.ttl)
            # Taken from the closed connection, not after the entry's expiry (which takes nothing from anybody).
            assert takeovers(spec.name, "Client Closed") == before + 1
            assert any("lease taken from a closed connection" in r.getMessage() and "reason='Client Closed'"
                       in r.getMessage() for r in caplog.records)
        finally:
            child.kill()
            child.wait(10)
            await standby.stop()
