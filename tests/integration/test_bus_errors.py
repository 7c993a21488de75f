"""What callers of the bus see when a request fails, on a real nats-server: the project's errors only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from schemas.events import AnnouncerHeartbeat
from services.common.bus import Bus, BusSettings
from services.common.credentials import BusCredentials
from services.common.errors import Conflict, ConnectionClosed, NotFound, RetryableError, WrongLastSequence
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
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


async def test_a_first_connection_that_cannot_succeed_gives_up_as_told_and_says_why(tmp_path: Path) -> None:
    """The operator commands connect once: a wrong password or no server is an answer in seconds, not a hang."""
    with EmbeddedNats(credentials=BusCredentials.create(tmp_path / "credentials")) as server:
        wrong = server.url_for(BusUser.OPERATOR).replace("operator:", "operator:x")
        # The server answers "Authorization Violation" and closes; now and then the client meets the close
        # (a reset) before it has read the answer. Either way an answer in seconds, never a hang.
        with pytest.raises(RetryableError, match=r"(?i)authorization|reset by peer"):
            await asyncio.wait_for(Bus.connect(BusSettings(url=wrong, initial_attempts=1), producer="t"), 15)
        closed_port = server.plain_url  # the same port once the server is gone
    with pytest.raises(RetryableError, match=r"(?i)refused|connect"):
        await asyncio.wait_for(Bus.connect(BusSettings(url=closed_port, initial_attempts=2), producer="t"), 15)
