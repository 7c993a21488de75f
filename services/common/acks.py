"""Acks of pipelined JetStream publishes, read on one wildcard inbox of the connection.

A pipelined publish sends now and is confirmed later: the server's answer arrives on a reply subject
of its own, which resolves the publish's future. nats-py's ``publish_async`` does the same but never
resolves the future of a publish the server refuses (its error parser raises inside the reply
callback), so a refused fence would look like a lost ack; here a refusal is the JetStream API error it
is (``nats.js.errors.BadRequestError`` with the server's error code), at once.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api

#: The status header of a request nobody answered (no stream holds the subject).
_NO_RESPONDERS = "503"


class AckInbox:
    def __init__(self, client: NatsClient) -> None:
        self._client = client
        self._prefix: str | None = None
        self._tokens = itertools.count()
        self._pending: dict[str, asyncio.Future[api.PubAck]] = {}

    async def expect(self) -> tuple[str, asyncio.Future[api.PubAck]]:
        """A reply subject for one publish, and the future its ack (or refusal) resolves."""
        if self._prefix is None:
            prefix = self._client.new_inbox()
            await self._client.subscribe(f"{prefix}.*", cb=self._on_reply)
            self._prefix = prefix
        token = str(next(self._tokens))
        future: asyncio.Future[api.PubAck] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        future.add_done_callback(lambda _: self._settled(token, future))
        return f"{self._prefix}.{token}", future

    def _settled(self, token: str, future: asyncio.Future[api.PubAck]) -> None:
        """Answered, or given up on. A refusal is seen by whoever still waits for it; nobody may (a writer
        that stepped down dropped the appends it had not confirmed), so it is marked read here, or asyncio
        would report each one as an error never retrieved."""
        self._pending.pop(token, None)
        if not future.cancelled():
            future.exception()

    async def _on_reply(self, message: Msg) -> None:
        future = self._pending.get(message.subject.rpartition(".")[2])
        if future is None or future.done():
            return
        if message.headers and message.headers.get(api.Header.STATUS) == _NO_RESPONDERS:
            future.set_exception(nats.js.errors.NoStreamResponseError())
            return
        try:
            answer = json.loads(message.data)
        except ValueError as error:
            future.set_exception(nats.js.errors.Error(f"unreadable publish ack: {error}"))
            return
        if "error" in answer:
            future.set_exception(_api_error(answer["error"]))
        else:
            future.set_result(api.PubAck.from_response(answer))


def _api_error(error: dict[str, object]) -> nats.js.errors.APIError:
    """The client's error class for a JetStream API error (its factory raises it rather than return it)."""
    try:
        made: object = nats.js.errors.APIError.from_error(error)
    except nats.js.errors.APIError as raised:
        return raised
    assert isinstance(made, nats.js.errors.APIError)
    return made
