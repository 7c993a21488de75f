"""A stream holds events of several releases: a consumer handles the older ones as today's model and
dead-letters those of a newer release with the reason, while the rest flows."""

from __future__ import annotations

from schemas.events import AllocationFailed, AllocationFailureReason
from services.common.bus import Bus, Header
from services.common.consumer import Consumer, ConsumerSpec
from services.common.subjects import StreamName, dead_letter_subject, ipam_allocation_subject
from tests.integration.test_bus import Recorder, running
from tests.unit.test_upcasting import failed_body
from tests.waiting import async_wait_until


async def test_an_older_event_is_handled_as_today_and_a_newer_one_dead_lettered(bus: Bus) -> None:
    await bus.js.publish(ipam_allocation_subject("default", "old"), failed_body(version=1, reason="no_available_ip"))
    newer = failed_body(version=3, reason="NoFreeAddress", retry_after_seconds=30)
    await bus.js.publish(ipam_allocation_subject("default", "newer"), newer)
    await bus.js.publish(ipam_allocation_subject("default", "now"), failed_body(version=2, reason="PoolExhausted"))
    recorder = Recorder()
    spec = ConsumerSpec(stream=StreamName.IPAM, durable="versions")
    async with running(Consumer(bus, spec, recorder)) as consumer:
        await async_wait_until(lambda: len(recorder.seen) == 2, what="the old and the current event")
        await async_wait_until(lambda: consumer.stats.dead_lettered == 1, what="the newer event dead-lettered")
    reasons = [m.event.reason for m in recorder.seen if isinstance(m.event, AllocationFailed)]
    assert reasons == [AllocationFailureReason.NO_AVAILABLE_IP, AllocationFailureReason.POOL_EXHAUSTED]
    dead = await bus.js.get_last_msg(StreamName.DEAD_LETTER.value, dead_letter_subject(StreamName.IPAM, "versions"))
    assert dead.data == newer
    assert dead.headers is not None
    assert dead.headers[Header.ORIGINAL_SUBJECT] == ipam_allocation_subject("default", "newer")
    assert "AllocationFailed schema version 3 is newer than the 2" in dead.headers[Header.ERROR]
