"""The asyncio shell over real loopback sockets: active dial, passive listener, TCP MD5, clean stop."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from services.announcer.bgp.events import Closed, CloseReason, Event, RoutesReceived, State
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Listener, Speaker, SpeakerConfig

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


@dataclass
class Recorder:
    events: list[Event] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, predicate: object, timeout: float = 5.0) -> None:
        assert callable(predicate)
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


def configs(*, password: str | None, peer_password: str | None, port: int) -> tuple[SpeakerConfig, SpeakerConfig]:
    node = SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address("10.0.0.2"), hold_time=9)
    router = SessionConfig(local_as=64513, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.1"), hold_time=9)
    active = SpeakerConfig(
        session=node,
        peer_address=LOOPBACK,
        peer_port=port,
        password=password,
        min_backoff=0.05,
        connect_time=0.2,
        connect_timeout=0.5,
    )
    passive = SpeakerConfig(session=router, peer_address=LOOPBACK, connect=False, password=peer_password)
    return active, passive


@dataclass
class Pair:
    active: Speaker
    passive: Speaker
    active_events: Recorder
    passive_events: Recorder


@asynccontextmanager
async def pair(*, password: str | None = None, peer_password: str | None = None) -> AsyncIterator[Pair]:
    listener = Listener(address=LOOPBACK, port=0)
    active_config, passive_config = configs(password=password, peer_password=peer_password, port=listener.bound_port)
    recorder, active_recorder = Recorder(), Recorder()
    async with listener:
        passive = Speaker(passive_config, on_event=recorder)
        listener.add(passive)
        passive.start()
        active = Speaker(active_config, on_event=active_recorder)
        active.start()
        try:
            yield Pair(active, passive, active_recorder, recorder)
        finally:
            await active.stop()
            await passive.stop()


async def test_dials_establishes_advertises_and_stops_with_cease() -> None:
    async with pair() as lab:
        active, passive, recorder = lab.active, lab.passive, lab.passive_events
        async with asyncio.timeout(5):
            await active.established.wait()
            await passive.established.wait()
        active.set_advertisements(
            {
                ipaddress.ip_network("198.51.100.7/32"): Route(
                    next_hop=ipaddress.IPv4Address("192.0.2.10"), communities=(65000 << 16 | 7,)
                )
            }
        )

        def received() -> bool:
            return any(isinstance(e, RoutesReceived) and e.announced for e in recorder.events)

        await recorder.wait_for(received)
        await active.stop(message="bye")
        await recorder.wait_for(lambda: any(isinstance(e, Closed) for e in recorder.events))
        closed = next(e for e in recorder.events if isinstance(e, Closed))
        assert closed.reason is CloseReason.NOTIFICATION_RECEIVED
        assert closed.notification is not None and closed.notification.shutdown_message() == "bye"
        assert active.state is State.IDLE


async def test_tcp_md5_with_matching_keys() -> None:
    async with pair(password="s3cret", peer_password="s3cret") as lab:
        active, passive = lab.active, lab.passive
        async with asyncio.timeout(5):
            await active.established.wait()
            await passive.established.wait()


async def test_tcp_md5_with_a_wrong_key_never_connects() -> None:
    async with pair(password="s3cret", peer_password="other") as lab:
        active, passive = lab.active, lab.passive
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.5):
                await passive.established.wait()
        assert active.state is not State.ESTABLISHED


async def test_reconnects_after_the_peer_drops() -> None:
    async with pair() as lab:
        active, passive = lab.active, lab.passive
        async with asyncio.timeout(5):
            await active.established.wait()
        assert passive._connection is not None and passive._connection.transport is not None
        passive._connection.transport.abort()
        events = lab.active_events
        await events.wait_for(lambda: any(isinstance(e, Closed) for e in events.events))
        async with asyncio.timeout(5):
            await active.established.wait()
            await passive.established.wait()
