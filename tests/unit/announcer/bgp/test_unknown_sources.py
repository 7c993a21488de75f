"""Connections from sources no BGPPeer names: refused before OPEN, counted, logged once per source and minute.
The rule on a passed-in clock, then the listener over real loopback sockets."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

import pytest

from services.announcer.bgp.listener import Listener
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig
from services.announcer.bgp.unknown_sources import UnknownSources

A, B = ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.2")


def test_a_source_is_logged_at_its_first_attempt_then_once_a_window_with_the_count_since() -> None:
    sources = UnknownSources(log_every=60.0)
    assert sources.refuse(A, now=0.0) == 1  # first attempt: a line
    assert [sources.refuse(A, now=t) for t in (1.0, 30.0, 59.9)] == [None, None, None]
    assert sources.refuse(B, now=10.0) == 1  # another source has its own line
    assert sources.refuse(A, now=60.0) == 4  # the three kept quiet and this one
    assert sources.refuse(A, now=61.0) is None
    assert sources.total == 7


def test_memory_is_bounded_and_a_forgotten_source_is_logged_afresh() -> None:
    sources = UnknownSources(log_every=60.0, remembered=2)
    many = [ipaddress.IPv4Address(f"198.51.100.{i}") for i in range(1, 200)]
    for index, address in enumerate(many):
        assert sources.refuse(address, now=float(index) / 100) == 1
    assert len(sources._sources) == 2
    assert sources.refuse(many[0], now=3.0) == 1  # forgotten long ago: its first line again
    assert sources.refuse(many[-1], now=3.0) is None  # still remembered, within its window


def test_a_source_the_socket_could_not_tell_is_counted_as_one_source() -> None:
    sources = UnknownSources()
    assert sources.refuse(None, now=0.0) == 1
    assert sources.refuse(None, now=1.0) is None


LISTEN, PEER, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3"


def dial_from(source: str, port: int) -> bytes | Exception:
    """What a connection from ``source`` reads before the listener ends it (the reset may come back before
    the connect call does)."""
    try:
        with socket.create_connection((LISTEN, port), timeout=5, source_address=(source, 0)) as sock:
            return sock.recv(4096)
    except OSError as error:
        return error


async def test_a_stranger_is_reset_before_any_open_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    listener = Listener(address=ipaddress.IPv4Address(LISTEN), port=0)
    config = SpeakerConfig(
        session=SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address("10.0.0.1")),
        peer_address=ipaddress.IPv4Address(PEER),
        connect=False,
    )
    caplog.set_level(logging.WARNING, logger="services.announcer.bgp.listener")
    async with listener, Speaker(config) as speaker:
        listener.add(speaker)
        for _ in range(3):
            got = await asyncio.to_thread(dial_from, STRANGER, listener.bound_port)
            assert isinstance(got, ConnectionResetError), got  # a reset: no OPEN, nothing at all
        assert listener.refused == 3
        assert speaker.session.peer_open is None and speaker._connection is None  # the peer's speaker untouched
        refusals = [r.getMessage() for r in caplog.records if "refused before OPEN" in r.getMessage()]
        assert len(refusals) == 1 and f"source={STRANGER}" in refusals[0], refusals

        # the configured peer's own connection is taken and answered with our OPEN
        with socket.create_connection((LISTEN, listener.bound_port), timeout=5, source_address=(PEER, 0)) as sock:
            header = await asyncio.to_thread(sock.recv, 19)
            assert header[:16] == b"\xff" * 16 and header[18] == 1  # an OPEN
        assert listener.refused == 3
