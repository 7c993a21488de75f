"""Shared fixtures: a real nats-server with JetStream for the whole session, and a clean bus per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from services.common.bus import Bus, BusSettings
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision


@pytest.fixture(scope="session")
def nats_server() -> Iterator[EmbeddedNats]:
    """One nats-server (random port, temporary store) for the test session."""
    with EmbeddedNats() as server:
        yield server


@pytest.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[Bus]:
    """A connected bus on an empty server with metalbus' streams created (all removed after the test)."""
    connection = await Bus.connect(BusSettings(url=nats_server.url), producer="test/bus")
    await _delete_streams(connection)
    await provision(connection)
    try:
        yield connection
    finally:
        await _delete_streams(connection)
        await connection.close()


async def _delete_streams(connection: Bus) -> None:
    """Every stream on the server goes, key-value buckets (leases) included: each test starts empty."""
    for info in await connection.js.streams_info():
        await connection.js.delete_stream(info.config.name)
