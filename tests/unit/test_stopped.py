"""Stopping a task ends it, even when it loses a cancellation (as Python 3.11's ``asyncio.wait_for`` may)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from services.common.aio import first_of, stopped


async def _loses_one_cancellation(ended: list[str]) -> None:
    # lost, as a reply arriving with the cancellation makes asyncio.wait_for lose it
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(3600)
    try:
        await asyncio.sleep(3600)
    finally:
        ended.append("ended")


async def test_a_task_that_lost_its_cancellation_is_cancelled_again_until_it_ends() -> None:
    ended: list[str] = []
    task = asyncio.ensure_future(_loses_one_cancellation(ended))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await stopped(task)
    assert ended == ["ended"] and task.cancelled()


async def test_an_error_the_task_ended_with_is_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("broken")

    task = asyncio.ensure_future(fails())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="broken"):
        await stopped(task)


async def test_first_of_ends_the_loser_even_when_it_loses_its_cancellation() -> None:
    ended: list[str] = []
    async with asyncio.timeout(5):
        assert await first_of(asyncio.sleep(0, result="work"), _loses_one_cancellation(ended)) == "work"
    assert ended == ["ended"]
