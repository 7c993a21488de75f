"""The NATS lease: one holder, renewal, release and expiry — against a real server."""

from __future__ import annotations

import time

from services.common.bus import Bus
from services.common.lease import BusLease
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
