"""The bus counts as lost when the server stops answering round trips, and as back at the first answer.

The watch is given its clock, and here that clock is an event loop's whose time moves only when the story
says so: its timer fires exactly when the time passes ``stale_after``, whatever the machine's load."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from services.announcer.agents.bus_contact import PUT_OFF_AT_MOST, BusContact
from services.announcer.agents.layer2_ownership import Connectivity


class ManualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock stands still until :meth:`advance` moves it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        """Move the clock on; returns once every timer due by then has run (they fire before this one,
        which is due last)."""
        self.now += seconds
        reached = self.create_future()
        self.call_at(self.now, reached.set_result, None)
        await reached


def run_story(story: Callable[[ManualTimeLoop], Coroutine[Any, Any, None]]) -> None:
    loop = ManualTimeLoop()
    try:
        loop.run_until_complete(story(loop))
    finally:
        loop.close()


def test_lost_after_silence_back_at_the_first_answer() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost, back = asyncio.Event(), asyncio.Event()
        watch = BusContact(stale_after=0.05, clock=loop.time, on_lost=lost.set, on_back=back.set)
        try:
            watch.answered()
            assert watch.connectivity(connected=True) is Connectivity.CONNECTED
            assert watch.connectivity(connected=False) is Connectivity.PARTITIONED  # the client knows better
            await loop.advance(0.049)
            assert not lost.is_set() and watch.connectivity(connected=True) is Connectivity.CONNECTED
            await loop.advance(0.002)  # past stale_after with no answer
            assert lost.is_set()
            assert watch.partitioned and not watch.back.is_set()
            assert watch.connectivity(connected=True) is Connectivity.PARTITIONED
            assert not back.is_set()
            watch.answered()
            assert back.is_set() and watch.back.is_set() and not watch.partitioned
            assert watch.connectivity(connected=True) is Connectivity.CONNECTED
        finally:
            watch.close()

    run_story(story)


def test_answers_in_time_keep_it_connected() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost = asyncio.Event()
        watch = BusContact(stale_after=0.2, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
        try:
            for _ in range(6):
                watch.answered()
                await loop.advance(0.05)  # the round trip period in this story, well inside stale_after
            assert not lost.is_set() and not watch.partitioned
            await loop.advance(0.2)  # and the first silence as long as stale_after loses it
            assert lost.is_set() and watch.partitioned
        finally:
            watch.close()

    run_story(story)


def test_a_held_loop_is_no_partition_the_answer_read_after_it_counts() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost = asyncio.Event()
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
        try:
            watch.answered()
            await loop.advance(2.0)  # the loop held for 2 s (a long fold): the timer fires 1.7 s late
            assert not lost.is_set() and not watch.partitioned and watch.late_wakeups == 1
            assert watch.connectivity(connected=True) is Connectivity.CONNECTED  # not judged yet
            watch.answered()  # the answer that waited in the socket is read on the next turn
            await loop.advance(0.29)
            assert not lost.is_set() and watch.late_wakeups == 1
        finally:
            watch.close()

    run_story(story)


def test_silence_after_a_held_loop_counts_once_the_loop_wakes_on_time() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost = asyncio.Event()
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
        try:
            watch.answered()
            await loop.advance(1.0)  # held: judged later
            assert not lost.is_set() and watch.late_wakeups == 1
            await loop.advance(0.29)  # a free loop, still no answer: inside the fresh window
            assert not lost.is_set()
            await loop.advance(0.02)  # the fresh window passes on time with no answer: a real cut
            assert lost.is_set() and watch.partitioned and watch.late_wakeups == 1
        finally:
            watch.close()

    run_story(story)


def test_a_timer_a_little_late_still_judges() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost = asyncio.Event()
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
        try:
            watch.answered()
            await loop.advance(0.35)  # 50 ms late: less than a third of the window, the loop was free enough
            assert lost.is_set() and watch.partitioned and watch.late_wakeups == 0
        finally:
            watch.close()

    run_story(story)


def test_messages_from_the_server_meanwhile_put_the_judgement_off_silence_does_not() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost, received = asyncio.Event(), [0]
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None,
                           heard=lambda: received[0])  # fmt: skip
        try:
            watch.answered()
            await loop.advance(0.2)
            received[0] += 500  # a batch of placements arrives: the answer is behind it
            await loop.advance(0.11)
            assert not lost.is_set() and watch.heard_meanwhile == 1
            await loop.advance(0.31)  # then nothing at all, on a free loop: a cut
            assert lost.is_set() and watch.partitioned and watch.heard_meanwhile == 1
        finally:
            watch.close()

    run_story(story)


def test_a_loop_late_for_good_still_has_a_cut_declared_within_the_bound() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost = asyncio.Event()
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
        try:
            watch.answered()
            waited = 0.0
            while not lost.is_set() and waited < 10.0:
                await loop.advance(0.45)  # every timer 0.15 s late: more than a third of its window
                waited += 0.45
            assert lost.is_set() and watch.partitioned
            assert waited <= 0.3 + PUT_OFF_AT_MOST + 2 * 0.45 + 0.01  # the bound, then one last window (late too)
            assert watch.late_wakeups >= 3  # it was put off while the silence was short
        finally:
            watch.close()

    run_story(story)


def test_messages_without_an_answer_put_the_judgement_off_for_as_long_as_they_arrive() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost, received = asyncio.Event(), [0]
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None,
                           heard=lambda: received[0])  # fmt: skip
        try:
            watch.answered()
            for _ in range(200):  # 10 s of a cold start's decisions, the answer behind them all the while
                received[0] += 1
                await loop.advance(0.05)
            assert not lost.is_set() and not watch.partitioned
            assert watch.connectivity(connected=True) is Connectivity.CONNECTED
            waited = 0.0
            while not lost.is_set() and waited < 10.0:  # then nothing arrives: a cut
                await loop.advance(0.05)
                waited += 0.05
            assert lost.is_set() and waited <= 2 * 0.3 + 0.01  # the window running, at most one more
        finally:
            watch.close()

    run_story(story)


def test_a_loop_held_past_the_bound_once_still_reads_the_waiting_answer() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost = asyncio.Event()
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
        try:
            watch.answered()
            await loop.advance(5.0)  # held far past the bound: a last window opens
            assert not lost.is_set()
            watch.answered()  # the answer read on the next turns, within it
            await loop.advance(0.29)
            assert not lost.is_set() and not watch.partitioned
        finally:
            watch.close()

    run_story(story)


def test_a_loop_held_in_the_middle_of_the_window_puts_the_judgement_off() -> None:
    async def story(loop: ManualTimeLoop) -> None:
        lost = asyncio.Event()
        watch = BusContact(stale_after=0.3, clock=loop.time, on_lost=lost.set, on_back=lambda: None)
        try:
            watch.answered()
            await loop.advance(0.1)
            watch.loop_was_late(0.15)  # the round trip task woke 150 ms late: its send (and answer) with it
            await loop.advance(0.21)  # the timer itself fires on time
            assert not lost.is_set() and watch.late_wakeups == 1
            await loop.advance(0.31)  # a window of a free loop with no answer: a cut
            assert lost.is_set() and watch.partitioned
        finally:
            watch.close()

    run_story(story)
