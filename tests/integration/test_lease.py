"""The NATS lease: one holder, renewal, release, expiry and the takeover from a closed connection — against a
real server."""

from __future__ import annotations

import time

from services.common.bus import Bus
from services.common.lease import BusLease, LeaseEntry
from services.common.subjects import LEASE_BUCKET_PREFIX
from tests.waiting import async_wait_until


async def test_one_holder_at_a_time_and_release_hands_over_at_once(bus: Bus) -> None:
    first = BusLease(bus, name="t-handover", holder="a", ttl=5)
    second = BusLease(bus, name="t-handover", holder="b", ttl=5)
    assert await first.try_acquire()
    assert not await second.try_acquire()
    assert await first.renew()
    assert await second.holder() == "a"
    await first.release()
    assert await second.try_acquire()
    assert not await first.try_acquire()
    assert await second.holder() == "b"


async def test_a_dead_holder_loses_the_lease_after_its_ttl(bus: Bus) -> None:
    dead = BusLease(bus, name="t-expiry", holder="dead", ttl=1)
    standby = BusLease(bus, name="t-expiry", holder="standby", ttl=1)
    assert await dead.try_acquire()
    started = time.monotonic()
    await async_wait_until(standby.try_acquire, timeout=5, interval=0.05, what="the standby to take over")
    assert time.monotonic() - started < 3
    assert not await dead.renew(), "the dead holder must notice it lost the lease"


async def test_a_holder_that_was_too_busy_to_renew_keeps_the_lease_if_nobody_took_it(bus: Bus) -> None:
    busy = BusLease(bus, name="t-busy", holder="busy", ttl=1)
    observer = BusLease(bus, name="t-busy", holder="observer", ttl=1)
    assert await busy.try_acquire()
    await async_wait_until(lambda: _gone(observer), timeout=5, interval=0.05, what="the entry to expire")
    assert await busy.renew()
    assert await observer.holder() == "busy"


async def test_a_new_ttl_applies_to_a_bucket_made_with_another(bus: Bus) -> None:
    old = BusLease(bus, name="t-retune", holder="old", ttl=5)
    assert await old.try_acquire()
    await old.release()
    new = BusLease(bus, name="t-retune", holder="new", ttl=1)
    assert await new.try_acquire()
    info = await bus.js.stream_info("KV_metalbus-lease-t-retune")
    assert info.config.max_age == 1
    assert await new.holder() == "new"


async def _gone(lease: BusLease) -> bool:
    return await lease.holder() is None


async def test_the_entry_names_its_holder_and_connection_and_a_plain_holder_still_reads(bus: Bus) -> None:
    lease = BusLease(bus, name="t-entry", holder="a", ttl=5)
    assert await lease.try_acquire()
    kv = await bus.js.key_value(f"{LEASE_BUCKET_PREFIX}t-entry")
    assert LeaseEntry.decoded((await kv.get("t-entry")).value) == LeaseEntry(holder="a", connection=bus.connection)
    await kv.put("t-entry", b"written-by-an-earlier-release")
    assert await lease.holder() == "written-by-an-earlier-release"


async def test_a_lease_is_taken_from_a_closed_connection_only_while_the_entry_names_it(bus: Bus) -> None:
    first = await Bus.connect(bus.settings, producer="test/first-connection")
    second = await Bus.connect(bus.settings, producer="test/second-connection")
    try:
        holder = BusLease(first, name="t-closed", holder="owner", ttl=30)
        rival = BusLease(bus, name="t-closed", holder="rival", ttl=30)
        assert await holder.try_acquire()
        kv = await bus.js.key_value(f"{LEASE_BUCKET_PREFIX}t-closed")
        # The holder renews from a new connection (as after a reconnection): the old one's close takes nothing.
        renewed = await kv.update("t-closed", LeaseEntry(holder="owner", connection=second.connection).encoded(),
                                  last=(await kv.get("t-closed")).revision)
        assert await rival.take_from_closed(first.connection) is None
        assert await rival.holder() == "owner" and not rival.held
        assert await rival.take_from_closed(second.connection) == "owner"
        assert rival.held and await rival.holder() == "rival"
        assert (await kv.get("t-closed")).revision == renewed + 1  # written at the revision that named it
    finally:
        await first.close()
        await second.close()
