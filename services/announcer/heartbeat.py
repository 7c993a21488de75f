"""Announcer liveness on the bus: a heartbeat every 2 s (10 s while the active ipam grants it), on a tick of a
wall-clock grid every node shares (``BEAT_TICK``), at once after every (re)connect and in answer to a roll call
(at most once a second), naming the connection it is sent on; "leaving" on a graceful stop.

The ipam declares this node dead when the server reports that connection closed (this process died, or
stopped answering the server's pings), on "leaving" (a graceful stop, or the heartbeats cancelled while the
process lives on: an agent died), or after a backstop of 2.5 heartbeats. Heartbeats are sent
only while the L2 agent is in step with the bus (``L2Agent.in_step``): a node that comes back from a cut is
heard again once it acts on the newest placements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.msg import Msg

from schemas.events import AnnouncerHeartbeat
from schemas.refusal import Refused
from services.common.aio import first_of
from services.common.bus import Bus
from services.common.errors import MetalbusError
from services.common.heartbeats import GRANT_FOR, HEARTBEAT_INTERVAL, LONGEST_GRANT, ROLL_CALL_GAP, next_beat_in
from services.common.inbound import read_roll_call
from services.common.subjects import ROLL_CALL, heartbeat_subject

log = logging.getLogger(__name__)


async def send_heartbeats(
    bus: Bus, *, node: str, instance: str, stopping: asyncio.Event, interval: float = HEARTBEAT_INTERVAL,
    vouching: asyncio.Event | None = None, roll_call_gap: float = ROLL_CALL_GAP, grant_for: float = GRANT_FOR,
) -> None:
    """Heartbeat until ``stopping`` is set, then send one ``leaving`` heartbeat and flush it. With ``vouching``,
    only while it is set (and at once when it is set again): while the L2 agent is out of step with the bus
    (cut off, reading the placements again) this node is not heard, so the ipam places nothing on it that it
    would not answer yet. A roll call is answered with the next heartbeat, sent at once unless one went out
    less than ``roll_call_gap`` ago (then at that gap's end): a flood of roll calls is one heartbeat a gap. A
    roll call that grants an interval (the active ipam's) makes it the interval for ``grant_for`` seconds
    (never shorter than ``interval``, never longer than ``LONGEST_GRANT``)."""
    subject = heartbeat_subject(node)
    due = asyncio.Event()  # set by a reconnection (the new connection is named at once) or a roll call
    bus.on_reconnect(due.set)
    loop = asyncio.get_running_loop()
    sent_at = -roll_call_gap
    answer: asyncio.TimerHandle | None = None  # a roll call's answer, waiting for its gap to end
    granted, granted_until = interval, -grant_for  # the interval granted, and until when

    def leaving() -> AnnouncerHeartbeat:
        return AnnouncerHeartbeat(node=node, instance=instance, sequence=sequence, leaving=True,
                                  connection=bus.connection)

    def answer_now() -> None:
        nonlocal answer
        answer = None
        due.set()

    async def on_roll_call(message: Msg) -> None:
        nonlocal answer, granted, granted_until
        call = read_roll_call(message.data, component="announcer")
        if not isinstance(call, Refused) and call.interval > 0:
            granted, granted_until = min(max(call.interval, interval), LONGEST_GRANT), loop.time() + grant_for
        if answer is None and not due.is_set():
            answer = loop.call_at(max(loop.time(), sent_at + roll_call_gap), answer_now)

    roll_calls = await bus.subscribe(ROLL_CALL, cb=on_roll_call)
    sequence = 0
    try:
        while not stopping.is_set():
            if vouching is not None and not vouching.is_set():
                await first_of(vouching.wait(), stopping.wait())
                continue
            due.clear()
            sent_at = loop.time()
            try:
                await bus.notify(subject, AnnouncerHeartbeat(node=node, instance=instance, sequence=sequence,
                                                             connection=bus.connection))
            except MetalbusError as error:  # disconnected: keep going, the client reconnects
                log.debug("heartbeat not sent node=%s error=%r", node, error)
            sequence += 1
            # the grant's interval while it holds, and its own again as soon as the grant lapses; the next
            # heartbeat leaves on a tick of the grid every node shares, so ipam reads a tick's together
            wait = max(interval, min(granted, granted_until - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_of(due.wait(), stopping.wait()), timeout=next_beat_in(wait, time.time()))
    except asyncio.CancelledError:
        # Cancelled while the process lives on (an agent died and the supervisor ends the rest; the process
        # serves failing probes until it is restarted): this instance vouches for nothing any more. Said at once,
        # or ipam would trust a node that answers nothing until the backstop.
        await _leave(bus, subject, leaving())
        raise
    finally:
        if answer is not None:
            answer.cancel()
        with contextlib.suppress(MetalbusError):
            await roll_calls.close()
    await _leave(bus, subject, leaving())


async def _leave(bus: Bus, subject: str, leaving: AnnouncerHeartbeat) -> None:
    """Send the ``leaving`` heartbeat and flush it (a second at most)."""
    try:
        await bus.notify(subject, leaving)
        await bus.flush(within=1)
    except MetalbusError as error:
        log.warning("leaving heartbeat not sent node=%s error=%r", leaving.node, error)

