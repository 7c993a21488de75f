"""The bus counts as lost when our own heartbeat stops coming back, and as back at the first echo."""

from __future__ import annotations

import asyncio

from services.announcer.l2.echo import EchoWatch
from services.announcer.l2.ownership import Connectivity


async def test_lost_after_silence_back_at_the_first_echo() -> None:
    loop = asyncio.get_running_loop()
    lost, back = asyncio.Event(), asyncio.Event()
    watch = EchoWatch(stale_after=0.05, clock=loop.time, on_lost=lost.set, on_back=back.set)
    try:
        watch.heard()
        assert watch.connectivity(connected=True) is Connectivity.CONNECTED
        assert watch.connectivity(connected=False) is Connectivity.PARTITIONED  # the client knows better
        await asyncio.wait_for(lost.wait(), 2)
        assert watch.partitioned and not watch.back.is_set()
        assert watch.connectivity(connected=True) is Connectivity.PARTITIONED
        assert not back.is_set()
        watch.heard()
        assert back.is_set() and watch.back.is_set() and not watch.partitioned
        assert watch.connectivity(connected=True) is Connectivity.CONNECTED
    finally:
        watch.close()


async def test_echoes_in_time_keep_it_connected() -> None:
    loop = asyncio.get_running_loop()
    lost = asyncio.Event()
    watch = EchoWatch(stale_after=0.2, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
    try:
        for _ in range(6):
            watch.heard()
            await asyncio.sleep(0.05)  # the heartbeat period in this story, well inside stale_after
        assert not lost.is_set() and not watch.partitioned
    finally:
        watch.close()
