"""A NATS client that tries things and tells whether the server refused them (a permissions violation)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client

from services.common.bus import BusSettings, connection_options

#: How long an allowed request may take to be answered here (a refused one is told at once).
ANSWER_TIMEOUT = 3.0


class Probe:
    def __init__(self, client: Client, violations: list[str]) -> None:
        self.client = client
        self.violations = violations

    async def _refused(self, subject: str, before: int) -> bool:
        """Whether the server reported a violation naming ``subject`` since ``before``."""
        quoted = f'"{subject}"'.lower()  # the client reports the server's error in lower case
        for _ in range(100):
            if any(quoted in violation.lower() for violation in self.violations[before:]):
                return True
            await self.client.flush(timeout=ANSWER_TIMEOUT)
            await asyncio.sleep(0.01)  # the error arrives asynchronously after the flush's PONG
        return False

    async def publish_refused(self, subject: str, data: bytes = b"{}") -> bool:
        before = len(self.violations)
        await self.client.publish(subject, data)
        return await self._refused(subject, before)

    async def request(self, subject: str, payload: dict[str, Any] | None = None) -> tuple[bool, dict[str, Any]]:
        """(refused, answer): a JetStream API call as the user, answered or refused (whichever comes first)."""
        before = len(self.violations)
        data = json.dumps(payload or {}).encode()
        answer = asyncio.ensure_future(self.client.request(subject, data, timeout=ANSWER_TIMEOUT))
        refusal = asyncio.ensure_future(self._refused(subject, before))
        await asyncio.wait({answer, refusal}, return_when=asyncio.FIRST_COMPLETED)
        if refusal.done() and refusal.result():
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await answer
            return True, {}
        try:
            message = await answer
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            return await refusal, {}
        refusal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refusal
        return False, json.loads(message.data or b"{}")

    async def subscribe_refused(self, subject: str) -> bool:
        before = len(self.violations)
        subscription = await self.client.subscribe(subject)
        refused = await self._refused(subject, before)
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()
        return refused


@contextlib.asynccontextmanager
async def probe(url: str, *, ca_file: str | None = None, user: str | None = None) -> AsyncIterator[Probe]:
    """A client connected as ``url``'s user, with that user's private inbox, as metalbus connects."""
    violations: list[str] = []

    async def on_error(error: Exception) -> None:
        violations.append(str(error))

    options = connection_options(BusSettings(url=url, tls_ca_file=ca_file, user=user))
    client = await nats.connect(url, error_cb=on_error, allow_reconnect=False, connect_timeout=5, **options)
    try:
        yield Probe(client, violations)
    finally:
        with contextlib.suppress(nats.errors.Error):
            await client.close()


async def refused_connection(url: str, *, ca_file: str | None = None) -> str | None:
    """The server's refusal of a connection with these credentials; None when it is let in."""
    options = connection_options(BusSettings(url=url, tls_ca_file=ca_file))
    try:
        client = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5,
                                    **options)
    except (nats.errors.Error, OSError) as error:
        return str(error)
    await client.close()
    return None
