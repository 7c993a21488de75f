"""A lease kept from a thread of its own: work on the owner's loop never costs it, and losing it is
noticed within the TTL — against a real nats-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from services.common.bus import Bus, BusSettings
from services.common.lease_keeper import LeaseKeeper
from services.common.nats_server import EmbeddedNats
from services.common.subjects import LEASE_BUCKET_PREFIX
from tests.integration.ipam.heavy_ipam import work_without_yielding
from tests.waiting import async_wait_until

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


async def test_the_lease_is_kept_while_the_owners_loop_works_for_four_ttls(
    bus: Bus, keepers: list[LeaseKeeper]
) -> None:
    owner, rival = keepers
    owner.compete()
    await async_wait_until(lambda: owner.held, what="the owner to hold the lease")
    rival.compete()
    kv = await bus.js.key_value(f"{LEASE_BUCKET_PREFIX}t-keeper")
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
    assert entry.value == b"owner"
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
