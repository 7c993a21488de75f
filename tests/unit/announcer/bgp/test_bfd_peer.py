"""The BFD shell over loopback UDP (TTL 255 kept), and BFD Down ending a BGP session at once."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from services.announcer.bgp.bfd import BfdConfig, BfdState, BfdStateChanged, Diagnostic
from services.announcer.bgp.bfd_peer import BfdEndpoint, BfdPeer
from services.announcer.bgp.events import Closed, CloseReason
from services.announcer.bgp.notification import CeaseSubcode
from tests.unit.announcer.bgp.test_speaker import pair

HERE, THERE = ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Address("127.0.0.2")
FAST = BfdConfig(desired_min_tx=0.2, required_min_rx=0.2, detect_mult=3)


@dataclass
class Changes:
    seen: list[BfdStateChanged] = field(default_factory=list)
    down: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, change: BfdStateChanged) -> None:
        self.seen.append(change)
        if change.new is BfdState.DOWN:
            self.down.set()


@asynccontextmanager
async def two_peers() -> AsyncIterator[tuple[BfdPeer, BfdPeer, Changes, BfdEndpoint]]:
    here, there = BfdEndpoint(address=HERE, port=0), BfdEndpoint(address=THERE, port=0)
    changes = Changes()
    a = BfdPeer(here, peer=THERE, peer_port=there.bound_port, config=FAST, on_change=changes)
    b = BfdPeer(there, peer=HERE, peer_port=here.bound_port, config=FAST)
    try:
        yield a, b, changes, there
    finally:
        for peer in (a, b):
            peer.close()
        here.close()
        there.close()


async def test_two_peers_come_up_over_udp() -> None:
    async with two_peers() as (a, b, _, _):
        async with asyncio.timeout(5):
            await a.up.wait()
            await b.up.wait()


async def test_admin_down_is_heard() -> None:
    async with two_peers() as (a, b, changes, _):
        async with asyncio.timeout(5):
            await a.up.wait()
        b.close()  # AdminDown on the wire
        async with asyncio.timeout(5):
            await changes.down.wait()
        assert changes.seen[-1].diagnostic is Diagnostic.NEIGHBOR_SIGNALED_SESSION_DOWN


async def test_silence_is_detected() -> None:
    async with two_peers() as (a, b, changes, there):
        async with asyncio.timeout(5):
            await a.up.wait()
            await b.up.wait()
        there.remove(b)  # b stops hearing a, then
        b._closed = True  # stops sending: as if the link were cut
        async with asyncio.timeout(5):
            await changes.down.wait()
        assert changes.seen[-1].diagnostic is Diagnostic.CONTROL_DETECTION_TIME_EXPIRED


async def test_bfd_down_ends_the_bgp_session_with_a_cease() -> None:
    async with pair() as lab:
        async with asyncio.timeout(5):
            await lab.active.established.wait()
            await lab.passive.established.wait()
        lab.active.peer_down()
        events = lab.passive_events
        await events.wait_for(lambda: any(isinstance(e, Closed) for e in events.events))
        closed = next(e for e in events.events if isinstance(e, Closed))
        assert closed.notification is not None and closed.notification.subcode == CeaseSubcode.BFD_DOWN
        mine = next(e for e in lab.active_events.events if isinstance(e, Closed))
        assert mine.reason is CloseReason.PEER_DOWN
