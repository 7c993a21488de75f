"""What callers of the bus see when a request fails, on a real nats-server: the project's errors only."""

from __future__ import annotations

import pytest

from schemas.events import AnnouncerHeartbeat
from services.common.bus import Bus, BusSettings
from services.common.errors import Conflict, ConnectionClosed, NotFound, RetryableError, WrongLastSequence
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import StreamName, ipam_allocation_subject
from tests.integration.test_bus import allocated


async def test_a_stream_that_is_not_there_is_not_found(bus: Bus) -> None:
    await bus.js.delete_stream(StreamName.IPAM.value)
    assert await bus.missing_streams() == [StreamName.IPAM]
    with pytest.raises(NotFound):
        await bus.last_sequence(StreamName.IPAM)
    with pytest.raises(NotFound):
        [received async for received in bus.read(StreamName.IPAM)]
    with pytest.raises(NotFound):
        await bus.replay(StreamName.IPAM, lambda received: None)
    await provision(bus)  # and provisioning makes it again
    assert await bus.missing_streams() == []


async def test_a_publish_no_stream_takes_is_retried_not_given_up(bus: Bus) -> None:
    await bus.js.delete_stream(StreamName.IPAM.value)
    with pytest.raises(RetryableError):  # nobody answers: the stream may be on its way back
        await bus.publish(ipam_allocation_subject("default", "web"), allocated("web"))


async def test_a_stale_fence_is_a_conflict(bus: Bus) -> None:
    subject = ipam_allocation_subject("default", "web")
    await bus.publish(subject, allocated("web"))
    with pytest.raises(Conflict) as raised:
        await bus.publish(subject, allocated("web", "10.0.0.2"), expected_last_subject_sequence=0)
    assert isinstance(raised.value, WrongLastSequence)


async def test_a_plain_subscription_waits_answers_none_and_says_when_its_connection_is_closed(
    nats_server: EmbeddedNats,
) -> None:
    bus = await Bus.connect(BusSettings(url=nats_server.url), producer="test/subscription")
    subscription = await bus.subscribe("heartbeat.announcer.n1")
    assert await subscription.next(wait=0.05) is None
    await bus.notify("heartbeat.announcer.n1", AnnouncerHeartbeat(node="n1", instance="i", sequence=1))
    await bus.flush(within=1)
    message = await subscription.next(wait=1.0)
    assert message is not None and message.subject == "heartbeat.announcer.n1"
    await bus.close()
    with pytest.raises(ConnectionClosed):
        await subscription.next(wait=0.05)
    with pytest.raises(ConnectionClosed):
        await bus.notify("heartbeat.announcer.n1", AnnouncerHeartbeat(node="n1", instance="i", sequence=2))
