"""The auth callout service: answers the NATS server's ``$SYS.REQ.USER.AUTH`` requests.

For each connecting client that is not a static user, the server sends a signed authorization request.
The answer grants the user ``node-<node>`` exactly its node's permissions when its credential proves it
is that node (a node token, or a Kubernetes projected token), and refuses anything else with the reason.
Every answer is counted (``metalbus_authenticator_answers_total{verdict}``) and every refusal logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import partial

from nats.aio.msg import Msg
from prometheus_client import Counter

from services.authenticator.identity import Claim, Refusal, check_node_token, read_claim
from services.authenticator.kubernetes_tokens import TokenReviewer
from services.common.aio import until_done
from services.common.nats_jwt import (
    AuthorizationRequest,
    InvalidJwt,
    SigningKey,
    authorization_response,
    read_authorization_request,
)
from services.common.permissions import ACCOUNT, AUTH_CALLOUT_SUBJECT, announcer_permissions
from services.common.runtime import ServiceContext

log = logging.getLogger(__name__)

ANSWERS = Counter("metalbus_authenticator_answers_total", "Connections the authenticator answered, by verdict",
                  ["verdict"])
GRANTED = "Granted"
#: Authenticators of every NATS server share the requests.
QUEUE_GROUP = "metalbus-authenticator"
#: A request larger than this is not a NATS authorization request (they are a few kilobytes).
MAX_REQUEST_BYTES = 64 * 1024
#: Requests answered at once (each may wait on a TokenReview in a worker thread).
CONCURRENT_ANSWERS = 16


@dataclass(frozen=True, slots=True)
class Verifiers:
    """How a node's credential is checked: a node-token key (no Kubernetes), a TokenReview, or both."""

    node_token_key: bytes | None = None
    token_reviewer: TokenReviewer | None = None

    async def check(self, claim: Claim) -> Refusal | None:
        if self.node_token_key is not None and check_node_token(self.node_token_key, claim) is None:
            return None
        if self.token_reviewer is not None:
            return await self.token_reviewer.check(claim)
        return Refusal.BAD_NODE_TOKEN if self.node_token_key is not None else Refusal.NO_VERIFIER


class Authenticator:
    def __init__(self, *, issuer: SigningKey, verifiers: Verifiers) -> None:
        self._issuer = issuer
        self._verifiers = verifiers
        self._concurrency = asyncio.Semaphore(CONCURRENT_ANSWERS)
        self._answering: set[asyncio.Task[None]] = set()

    async def answer(self, data: bytes) -> str | None:
        """The signed answer to one request; None when the request itself is not one to answer."""
        now = int(time.time())
        if len(data) > MAX_REQUEST_BYTES:
            log.warning("authorization request refused reason=%s bytes=%d", Refusal.BAD_REQUEST, len(data))
            ANSWERS.labels(verdict=Refusal.BAD_REQUEST.value).inc()
            return None
        try:
            request = read_authorization_request(data.decode(errors="replace"), now=now)
        except InvalidJwt as error:
            log.warning("authorization request refused reason=%s error=%s", Refusal.BAD_REQUEST, error)
            ANSWERS.labels(verdict=Refusal.BAD_REQUEST.value).inc()
            return None
        verdict = await self._verdict(request)
        if isinstance(verdict, Refusal):
            log.warning("connection refused reason=%s user=%.80r host=%s", verdict, request.user,
                        request.client_host)
            ANSWERS.labels(verdict=verdict.value).inc()
            return authorization_response(request, key=self._issuer, now=now, account=ACCOUNT,
                                          error=f"metalbus: {verdict.value}")
        log.info("node authenticated node=%s host=%s", verdict.node, request.client_host)
        ANSWERS.labels(verdict=GRANTED).inc()
        return authorization_response(request, key=self._issuer, now=now, account=ACCOUNT, name=request.user,
                                      permissions=announcer_permissions(verdict.node))

    async def _verdict(self, request: AuthorizationRequest) -> Claim | Refusal:
        claim = read_claim(request.user, request.password)
        if isinstance(claim, Refusal):
            return claim
        refusal = await self._verifiers.check(claim)
        return claim if refusal is None else refusal

    async def on_request(self, message: Msg) -> None:
        """Answer in a task of its own: a subscription's callbacks run one after another, and a TokenReview
        takes a round trip to the Kubernetes API — a thousand nodes reconnecting at once must not queue
        behind each other (at most ``CONCURRENT_ANSWERS`` at a time)."""
        task = asyncio.create_task(self._answer_one(message))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    async def _answer_one(self, message: Msg) -> None:
        async with self._concurrency:
            try:
                answer = await self.answer(message.data)
            except Exception:  # an answer is owed whatever happened: the server would wait for its timeout
                log.exception("authorization request failed")
                ANSWERS.labels(verdict=Refusal.VERIFIER_UNAVAILABLE.value).inc()
                return
        if answer is not None and message.reply:
            try:
                await message.respond(answer.encode())
            except Exception as error:  # the connection went away: the server asks again, or times out
                log.warning("authorization answer not sent error=%r", error)


async def run_authenticator(ctx: ServiceContext, *, issuer: SigningKey, verifiers: Verifiers) -> None:
    """Answer authorization requests until told to stop."""
    authenticator = Authenticator(issuer=issuer, verifiers=verifiers)
    subscription = await ctx.bus.subscribe(AUTH_CALLOUT_SUBJECT, queue=QUEUE_GROUP, cb=authenticator.on_request)
    # Ready once the server has the subscription: a node connecting before would wait for the callout's
    # timeout, and the server's pings close a connection still waiting on its authorization after ~1.25 s.
    await until_done(partial(ctx.bus.flush, within=5), stopping=ctx.stopping, retry_in=0.5,
                     what="authenticator subscription")
    ctx.health.set_ready("starting", True)
    log.info("authenticator answering issuer=%s node_tokens=%s token_review=%s", issuer.public_key,
             verifiers.node_token_key is not None, verifiers.token_reviewer is not None)
    try:
        await ctx.stopping.wait()
    finally:
        await asyncio.shield(subscription.close())
