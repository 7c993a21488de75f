"""The write rate limit (with a passed-in clock) and the per-object coalescing queue."""

from __future__ import annotations

import asyncio

import pytest

from services.watcher.status.queueing import QueueClosed, TokenBucket, WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spends_the_burst_then_hands_out_future_slots() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, 3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)  # each caller its own slot
    clock.now += 1.0  # refills 10 tokens, capped at the burst, minus the two handed out
    assert bucket.reserve() == 0.0


def test_token_bucket_without_limit() -> None:
    bucket = TokenBucket(0, 1)
    assert all(bucket.reserve() == 0.0 for _ in range(1000))


async def test_queue_coalesces_and_keeps_the_earliest_decision_time() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.put("web", 5.0)
    queue.put("api", 6.0)
    queue.put("web", 3.0)
    queue.put("web", None)
    assert len(queue) == 2
    assert await queue.get() == ("web", 3.0)
    assert await queue.get() == ("api", 6.0)


async def test_a_change_during_a_write_queues_the_object_once_more_afterwards() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.put("web", 1.0)
    key, _ = await queue.get()
    queue.put("web", 2.0)  # arrives while "web" is being written
    queue.put("web", 3.0)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()  # never two writers on one object
    queue.done(key)
    assert await asyncio.wait_for(getter, 1) == ("web", 2.0)


async def test_retry_later_and_close() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.put_later("web", 1.0, 0.01)
    assert await asyncio.wait_for(queue.get(), 1) == ("web", 1.0)
    queue.done("web")
    queue.put_later("api", None, 60)
    queue.close()
    assert len(queue) == 0
    with pytest.raises(QueueClosed):
        await queue.get()


async def test_keys_that_go_first_are_handed_out_before_the_others_each_in_the_order_queued() -> None:
    queue: WorkQueue[str] = WorkQueue(goes_first=lambda key: key.startswith("svc"))
    for key in ("status-a", "svc-1", "status-b", "svc-2"):
        queue.put(key)
    assert [(await queue.get())[0] for _ in range(3)] == ["svc-1", "svc-2", "status-a"]
    queue.put("svc-3")  # queued while others wait: still ahead of them
    assert [(await queue.get())[0] for _ in range(2)] == ["svc-3", "status-b"]
