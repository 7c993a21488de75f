"""Roll calls: announcers heartbeat rarely (every 10 s while the active ipam grants it: the server's
closed-connection reports make failover fast), so whoever starts listening asks every announcer for a heartbeat
at once instead of waiting an interval.

- a replica that starts listening knows every live node within its roll call's window, not an interval later;
- an announcer answers a roll call at once, and a flood of roll calls with one heartbeat a gap at most;
- only the active replica grants the long interval; an announcer keeps a grant for a while, then goes back to
  its own interval (what an ipam of the previous release expects).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

from nats.aio.msg import Msg

from schemas.events import AnnouncerHeartbeat, RollCall
from schemas.events.codec import decode
from services.announcer.heartbeat import send_heartbeats
from services.common.bus import Bus
from services.common.heartbeats import GRANTED_INTERVAL
from services.common.subjects import HEARTBEATS, ROLL_CALL
from services.ipam.liveness import LivenessWatch
from tests.waiting import async_wait_until

NODES = ("node-a", "node-b", "node-c")


@contextlib.asynccontextmanager
async def heartbeating(bus: Bus, nodes: tuple[str, ...], **options: float) -> AsyncIterator[list[float]]:
    """The announcers' heartbeat senders of ``nodes``; yields the loop times their heartbeats were heard at."""
    heard: list[float] = []
    loop = asyncio.get_running_loop()

    async def hear(message: Msg) -> None:
        assert isinstance(decode(message.data).event, AnnouncerHeartbeat)
        heard.append(loop.time())

    subscription = await bus.subscribe(HEARTBEATS, cb=hear)
    stopping = asyncio.Event()
    senders = [asyncio.create_task(send_heartbeats(bus, node=node, instance=f"{node}-1", stopping=stopping,
                                                   **options)) for node in nodes]
    try:
        yield heard
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*senders), 5)
        await subscription.close()


async def test_a_replica_that_starts_listening_knows_every_node_at_once(bus: Bus) -> None:
    async with heartbeating(bus, NODES, interval=60.0) as heard:  # none beats again within the test on its own
        await async_wait_until(lambda: len(heard) == len(NODES), what="every node's first heartbeat")
        watch = LivenessWatch(bus)
        await watch.start()
        try:
            started = asyncio.get_running_loop().time()
            await watch.fresh_window()
            took = asyncio.get_running_loop().time() - started
            assert watch.live == set(NODES)  # their first heartbeats went out before it listened: only the roll
            assert took < GRANTED_INTERVAL / 2, f"{took:.1f} s: it waited for the periodic heartbeats"
        finally:
            await watch.stop()


async def test_an_announcer_answers_at_once_and_a_flood_with_one_heartbeat_a_gap(bus: Bus) -> None:
    gap = 0.5
    loop = asyncio.get_running_loop()
    async with heartbeating(bus, ("node-a",), interval=60.0, roll_call_gap=gap) as heard:
        await async_wait_until(lambda: len(heard) == 1, what="the first heartbeat")
        await asyncio.sleep(gap)  # a whole gap since it: the next roll call is answered at once
        asked = loop.time()
        await bus.notify(ROLL_CALL, RollCall(caller="test"))
        await async_wait_until(lambda: len(heard) == 2, timeout=5, what="the answer")
        assert heard[1] - asked < gap / 2, f"answered {heard[1] - asked:.2f} s after the call"
        flood_started = loop.time()
        for _ in range(40):  # 40 calls over about a second
            await bus.notify(ROLL_CALL, RollCall(caller="test"))
            await asyncio.sleep(0.025)
        flood = loop.time() - flood_started
        await async_wait_until(lambda: len(heard) >= 3, timeout=5, what="the flood answered")
        await asyncio.sleep(gap)  # a last deferred answer, if one is due, comes within a gap
        answers = len(heard) - 2
        assert answers <= flood / gap + 1, f"{answers} heartbeats for 40 roll calls in {flood:.2f} s"
        assert all(later - earlier >= gap * 0.9 for earlier, later in itertools.pairwise(heard[1:]))


async def test_a_replica_whose_connection_came_back_calls_the_roll(bus: Bus) -> None:
    """After its liveness connection was down (closed reports may have been lost meanwhile), every node names
    its connection again at once, not at its next periodic heartbeat."""
    async with heartbeating(bus, NODES, interval=60.0, roll_call_gap=0.1) as heard:
        await async_wait_until(lambda: len(heard) == len(NODES), what="every node's first heartbeat")
        watch = LivenessWatch(bus)
        await watch.start()  # its own roll call: answered too
        try:
            await async_wait_until(lambda: len(heard) == 2 * len(NODES), what="the start's roll call answered")
            await asyncio.sleep(0.1)  # a whole answer gap since
            watch._heartbeats_missed()  # what its connection's reconnect listener calls
            await async_wait_until(lambda: len(heard) == 3 * len(NODES), timeout=5, what="the roll called again")
        finally:
            await watch.stop()


async def test_only_the_active_replica_grants_the_long_interval(bus: Bus) -> None:
    calls: list[RollCall] = []

    async def hear(message: Msg) -> None:
        event = decode(message.data).event
        assert isinstance(event, RollCall)
        calls.append(event)

    subscription = await bus.subscribe(ROLL_CALL, cb=hear)
    watch = LivenessWatch(bus)
    await watch.start()
    try:
        await async_wait_until(lambda: len(calls) == 1, what="the start's roll call")
        assert calls[0].interval == 0  # a standby (or a replica starting) grants nothing
        watch.grant(True)  # what the replica does once active
        await async_wait_until(lambda: len(calls) == 2, what="the active replica's grant")
        assert calls[1].interval == GRANTED_INTERVAL
    finally:
        await watch.stop()
        await subscription.close()


async def test_an_announcer_keeps_a_grant_for_a_while_then_beats_at_its_own_interval(bus: Bus) -> None:
    base, grant_for = 0.2, 1.5
    loop = asyncio.get_running_loop()
    async with heartbeating(bus, ("node-a",), interval=base, roll_call_gap=0.1, grant_for=grant_for) as heard:
        await async_wait_until(lambda: len(heard) >= 3, what="heartbeats at the node's own interval")
        granted_at = loop.time()
        await bus.notify(ROLL_CALL, RollCall(caller="test", interval=GRANTED_INTERVAL))
        await async_wait_until(lambda: heard[-1] > granted_at, what="the roll call answered")
        answered = len(heard)
        await async_wait_until(lambda: len(heard) > answered, timeout=GRANTED_INTERVAL, what="a beat after")
        resumed = heard[answered]
        # nothing while the grant held (about 7 beats at 0.2 s), then its own interval again once it lapsed
        assert resumed - granted_at >= grant_for * 0.9, f"beat {resumed - granted_at:.2f} s after the grant"
        await async_wait_until(lambda: len(heard) >= answered + 3, timeout=2, what="its own interval again")
