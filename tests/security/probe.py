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

#: How long an allowed request may take to be answered here, in seconds (a refused one is told at once).
ANSWER_TIMEOUT = 3


class Violations:
    """The permission violations the server reported to one connection, in order; one can wait for them."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Condition()

    async def add(self, error: Exception) -> None:
        async with self._changed:
            self.seen.append(str(error))
            self._changed.notify_all()

    def naming(self, subject: str, *, since: int) -> bool:
        quoted = f'"{subject}"'.lower()  # the client reports the server's error in lower case
        return any(quoted in violation.lower() for violation in self.seen[since:])

    async def wait_naming(self, subject: str, *, since: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.naming(subject, since=since))


class Probe:
    def __init__(self, client: Client, violations: Violations) -> None:
        self.client = client
        self.violations = violations

    async def _refused(self, subject: str, before: int) -> bool:
        """Whether the server reported a violation naming ``subject`` since ``before``.

        Two round trips tell. The server answers a connection's operations in order (a violation's -ERR before
        the PONG of a later PING), and the client runs its error callback as it reads the -ERR, before it reads
        that PONG. But the client writes a PING at once, ahead of the commands it has queued: by the end of the
        first round trip its flusher has written them, so the second PING follows them on the wire."""
        await self.client.flush(timeout=ANSWER_TIMEOUT)
        await self.client.flush(timeout=ANSWER_TIMEOUT)
        return self.violations.naming(subject, since=before)

    async def publish_refused(self, subject: str, data: bytes = b"{}") -> bool:
        before = len(self.violations.seen)
        await self.client.publish(subject, data)
        return await self._refused(subject, before)

    async def request(self, subject: str, payload: dict[str, Any] | None = None) -> tuple[bool, dict[str, Any]]:
        """(refused, answer): a JetStream API call as the user, answered or refused (whichever comes first)."""
        before = len(self.violations.seen)
        data = json.dumps(payload or {}).encode()
        answer = asyncio.ensure_future(self.client.request(subject, data, timeout=ANSWER_TIMEOUT))
        refusal = asyncio.ensure_future(self.violations.wait_naming(subject, since=before))
        await asyncio.wait({answer, refusal}, return_when=asyncio.FIRST_COMPLETED)
        if refusal.done():
            answer.cancel()
            with contextlib.suppress(asyncio.CancelledError, nats.errors.Error):
                await answer
            return True, {}
        try:
            message = answer.result()
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            # no answer: the refusal may still be on its way on a loaded machine — wait for it, bounded
            try:
                await asyncio.wait_for(refusal, ANSWER_TIMEOUT)
            except TimeoutError:
                # JetStream answers every request it is allowed to see, so silence is no success: ask the
                # server in order (two round trips) whether it refused the request, as for a publish.
                return await self._refused(subject, before), {}
            return True, {}
        refusal.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refusal
        return False, json.loads(message.data or b"{}")

    async def subscribe_refused(self, subject: str) -> bool:
        before = len(self.violations.seen)
        subscription = await self.client.subscribe(subject)
        refused = await self._refused(subject, before)
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()
        return refused


@contextlib.asynccontextmanager
async def probe(url: str, *, ca_file: str | None = None, user: str | None = None) -> AsyncIterator[Probe]:
    """A client connected as ``url``'s user, with that user's private inbox, as metalbus connects."""
    violations = Violations()
    options = connection_options(BusSettings(url=url, tls_ca_file=ca_file, user=user))
    client = await nats.connect(url, error_cb=violations.add, allow_reconnect=False, connect_timeout=5, **options)
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
