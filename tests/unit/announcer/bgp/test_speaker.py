"""The asyncio shell over real loopback sockets: active dial, passive listener, TCP MD5, clean stop."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from services.announcer.bgp.events import Closed, CloseReason, Event, RoutesReceived, State
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.message import KEEPALIVE, MessageReader, MessageType
from services.announcer.bgp.notification import CeaseSubcode, ErrorCode, HeaderSubcode, Notification
from services.announcer.bgp.open import Open
from services.announcer.bgp.rib import Route
from services.announcer.bgp.session import ReceivedRoutes, Session, SessionConfig
from services.announcer.bgp.speaker import Connection, Speaker, SpeakerConfig

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
    router = SessionConfig(local_as=64513, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.1"), hold_time=9,
                           received_routes=ReceivedRoutes.DECODED)  # fmt: skip
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


async def test_connection_collision_settles_on_one_session() -> None:
    """Both ends dial and listen at once: RFC 4271 §6.8 keeps exactly one connection, on both sides."""
    here, there = ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv4Address("127.0.0.2")
    listener_here, listener_there = Listener(address=here, port=0), Listener(address=there, port=0)
    events_here, events_there = Recorder(), Recorder()
    async with listener_here, listener_there:
        a = Speaker(
            SpeakerConfig(
                session=SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address("10.0.0.1")),
                peer_address=there,
                peer_port=listener_there.bound_port,
                source_address=here,
                min_backoff=0.05,
                connect_time=0.2,
            ),
            on_event=events_here,
        )
        b = Speaker(
            SpeakerConfig(
                session=SessionConfig(
                    local_as=64513,
                    peer_as=64512,
                    router_id=ipaddress.IPv4Address("10.0.0.2"),
                    received_routes=ReceivedRoutes.DECODED,
                ),
                peer_address=here,
                peer_port=listener_here.bound_port,
                source_address=there,
                min_backoff=0.05,
                connect_time=0.2,
            ),
            on_event=events_there,
        )
        listener_here.add(a)
        listener_there.add(b)
        try:
            a.start()
            b.start()
            async with asyncio.timeout(5):
                await a.established.wait()
                await b.established.wait()
            a.set_advertisements(
                {ipaddress.ip_network("198.51.100.1/32"): Route(next_hop=ipaddress.IPv4Address("192.0.2.1"))}
            )
            await events_there.wait_for(
                lambda: any(isinstance(e, RoutesReceived) and e.announced for e in events_there.events)
            )
            assert a.state is State.ESTABLISHED and b.state is State.ESTABLISHED
            assert a._pending is None and b._pending is None
            # the two sides hold the two ends of the same TCP connection
            assert a._connection is not None and b._connection is not None
            assert a._connection.transport is not None and b._connection.transport is not None
            a_ends = (
                a._connection.transport.get_extra_info("sockname"),
                a._connection.transport.get_extra_info("peername"),
            )
            b_ends = (
                b._connection.transport.get_extra_info("peername"),
                b._connection.transport.get_extra_info("sockname"),
            )
            assert a_ends == b_ends
        finally:
            await a.stop()
            await b.stop()


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def take(self) -> bytes:
        data = bytes(self.written)
        self.written.clear()
        return data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("192.0.2.10", 179) if name in ("sockname", "peername") else default


def fake_connection(speaker: Speaker, *, dialled: bool = True) -> tuple[Connection, FakeTransport]:
    """A connection the speaker dialled, or (``dialled=False``) one the peer opened, routed to it."""
    transport = FakeTransport()
    connection = Connection(speaker) if dialled else Connection(route=lambda _address, _scope, _vrf: speaker)
    connection.connection_made(transport)
    return connection, transport


def notifications(data: bytes) -> list[Notification]:
    reader = MessageReader()
    reader.feed(data)
    return [Notification.decode(body) for kind, body in reader if kind is MessageType.NOTIFICATION]


def kinds(data: bytes) -> list[MessageType]:
    reader = MessageReader()
    reader.feed(data)
    return [kind for kind, _ in reader]


@pytest.mark.parametrize(
    ("our_id", "peer_id", "kept"), [("10.0.0.1", "10.0.0.9", "second"), ("10.0.0.9", "10.0.0.1", "first")]
)
async def test_collision_keeps_the_connection_of_the_higher_identifier(our_id: str, peer_id: str, kept: str) -> None:
    """RFC 4271 §6.8 on fake transports: the connection we dialled is opening when the peer's arrives."""
    speaker = Speaker(
        SpeakerConfig(
            session=SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address(our_id)),
            peer_address=ipaddress.IPv4Address("192.0.2.1"),
            connect=False,
        )
    )
    speaker.start()
    first, first_wire = fake_connection(speaker)
    second, second_wire = fake_connection(speaker, dialled=False)
    assert speaker._connection is first and speaker._pending is not None
    assert kinds(first_wire.take()) == kinds(second_wire.take()) == [MessageType.OPEN]  # both sent our OPEN

    peer = Session(SessionConfig(local_as=64513, peer_as=64512, router_id=ipaddress.IPv4Address(peer_id)))
    peer.start(0.0, passive=True)
    peer.connection_made(0.0)
    speaker.data_received(second, peer.data_to_send())  # the peer's OPEN on the second connection

    collision = (ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
    if kept == "second":
        assert speaker._connection is second and speaker._pending is None
        assert [(n.code, n.subcode) for n in notifications(first_wire.take())] == [collision]
        assert first_wire.closed and not second_wire.closed
        assert kinds(second_wire.take()) == [MessageType.KEEPALIVE]
        assert speaker.state is State.OPEN_CONFIRM
    else:
        assert speaker._connection is first and speaker._pending is None
        sent = second_wire.take()
        assert kinds(sent) == [MessageType.NOTIFICATION]  # no KEEPALIVE ever confirms the losing one
        assert [(n.code, n.subcode) for n in notifications(sent)] == [collision]
        assert second_wire.closed and not first_wire.closed
        assert speaker.state is State.OPEN_SENT
    await speaker.stop(grace=0)


async def test_a_hostile_peer_gets_a_notification_and_the_speaker_dials_again() -> None:
    """A peer that sends garbage after the OPEN exchange: NOTIFICATION, close, and a new attempt later."""
    received: list[bytes] = []
    connections = 0
    second = asyncio.Event()

    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections > 1:
            second.set()
            writer.close()
            return
        await reader.read(4096)  # the speaker's OPEN
        peer_open = Open.build(asn=64513, hold_time=9, bgp_identifier=ipaddress.IPv4Address("10.0.0.1"))
        writer.write(peer_open.encode() + KEEPALIVE)
        await reader.read(4096)  # its KEEPALIVE (and End-of-RIB)
        writer.write(b"\x00" * 19)  # not a BGP header at all
        received.append(await reader.read())  # everything until the speaker closes
        writer.close()

    server = await asyncio.start_server(hostile, str(LOOPBACK), 0)
    port = server.sockets[0].getsockname()[1]
    session = SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address("10.0.0.2"))
    recorder = Recorder()
    speaker = Speaker(
        SpeakerConfig(session=session, peer_address=LOOPBACK, peer_port=port, min_backoff=0.05, connect_time=0.2),
        on_event=recorder,
    )
    async with server:
        speaker.start()
        try:
            async with asyncio.timeout(5):
                await second.wait()
        finally:
            await speaker.stop()
    sent = notifications(received[0])
    assert [(n.code, n.subcode) for n in sent] == [
        (ErrorCode.MESSAGE_HEADER, HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED)
    ]
    closed = next(e for e in recorder.events if isinstance(e, Closed))
    assert closed.reason is CloseReason.PROTOCOL_ERROR


async def test_keepalives_from_the_shell_timers_hold_a_short_session() -> None:
    """Hold time 3 s, keepalive 1 s: the shell's call_at timers must keep it up well past the hold time."""
    listener = Listener(address=LOOPBACK, port=0)
    node = SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address("10.0.0.2"), hold_time=3)
    router = SessionConfig(local_as=64513, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.1"), hold_time=3)
    recorder = Recorder()
    async with listener:
        passive = Speaker(SpeakerConfig(session=router, peer_address=LOOPBACK, connect=False), on_event=recorder)
        listener.add(passive)
        passive.start()
        active = Speaker(SpeakerConfig(session=node, peer_address=LOOPBACK, peer_port=listener.bound_port))
        active.start()
        try:
            async with asyncio.timeout(5):
                await passive.established.wait()
            with pytest.raises(TimeoutError):  # nothing closes it within one and a half hold times
                await recorder.wait_for(lambda: any(isinstance(e, Closed) for e in recorder.events), timeout=4.5)
            assert passive.state is State.ESTABLISHED and active.state is State.ESTABLISHED
        finally:
            await active.stop()
            await passive.stop()
