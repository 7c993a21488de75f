"""An announcer is heard only while its L2 agent is in step with the bus (``L2Agent.in_step``): cut off and back,
it heartbeats again once it acts on the newest placements, not as soon as its connection returns (the ipam would
otherwise place an IP on a node that does not answer it yet), and then at once, not a heartbeat period later."""

from __future__ import annotations

import asyncio
import contextlib
import functools

from nats.aio.msg import Msg

from schemas.events import AnnouncerHeartbeat
from schemas.events.codec import decode
from services.announcer.heartbeat import send_heartbeats
from services.common.bus import Bus
from services.common.subjects import heartbeat_subject
from tests.waiting import async_wait_until

#: Far longer than the test: a heartbeat heard comes of the gate opening, not of the period.
INTERVAL = 60.0


async def hear(heard: list[AnnouncerHeartbeat], message: Msg) -> None:
    event = decode(message.data).event
    assert isinstance(event, AnnouncerHeartbeat)
    heard.append(event)


async def test_heartbeats_wait_until_vouched_for_then_go_out_at_once(bus: Bus) -> None:
    heard: list[AnnouncerHeartbeat] = []
    subscription = await bus.subscribe(heartbeat_subject("node-v"), cb=functools.partial(hear, heard))
    vouching, stopping = asyncio.Event(), asyncio.Event()
    sender = asyncio.create_task(send_heartbeats(bus, node="node-v", instance="i", stopping=stopping,
                                                 interval=INTERVAL, vouching=vouching))
    try:
        for _ in range(3):
            await asyncio.sleep(0)  # the sender's first turns: ungated, it would have sent its first heartbeat
        await bus.flush(within=1)  # anything it sent has come back by now
        assert heard == []
        vouching.set()
        await async_wait_until(lambda: len(heard) == 1, timeout=5, what="a heartbeat at once")
        assert not heard[0].leaving
        vouching.clear()
    finally:
        stopping.set()
        await asyncio.wait_for(sender, 5)
        with contextlib.suppress(Exception):
            await bus.flush(within=1)
        await subscription.close()
    assert [h.leaving for h in heard] == [False, True]  # a stop says goodbye, vouched for or not


async def test_heartbeats_cancelled_while_the_process_lives_on_say_leaving(bus: Bus) -> None:
    """An agent died: the supervisor cancels the heartbeats while the process lives on (its connection open,
    serving failing probes). The node says it is leaving, so ipam moves its IPs at once, not after the backstop."""
    heard: list[AnnouncerHeartbeat] = []
    subscription = await bus.subscribe(heartbeat_subject("node-c"), cb=functools.partial(hear, heard))
    sender = asyncio.create_task(send_heartbeats(bus, node="node-c", instance="i", stopping=asyncio.Event(),
                                                 interval=INTERVAL))
    try:
        await async_wait_until(lambda: len(heard) == 1, timeout=5, what="the first heartbeat")
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(sender, 5)
        assert sender.cancelled()  # the cancellation goes on after the word
        await async_wait_until(lambda: len(heard) == 2, timeout=5, what="the leaving heartbeat")
        assert [h.leaving for h in heard] == [False, True]
    finally:
        await subscription.close()
