"""The auth callout's answers, without a server: the server's request is signed here by a server key of
the test's own, and the answers are read back as the server reads them."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import nkeys
import pytest

from services.authenticator.identity import Claim, Refusal, read_claim
from services.authenticator.service import CONCURRENT_ANSWERS, Authenticator, Verifiers
from services.common.nats_jwt import InvalidJwt, SigningKey, decode, encode
from services.common.node_tokens import node_token
from services.common.permissions import ACCOUNT, announcer_permissions

NOW = 1_800_000_000
KEY = b"node-token-key"
ISSUER = SigningKey.new_account()
SERVER = SigningKey.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_SERVER))


def request(user: str, password: str, *, server: SigningKey = SERVER) -> bytes:
    user_nkey = SigningKey.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)).public_key
    claims = {"sub": "nats_user_auth_request", "aud": ISSUER.public_key, "exp": NOW + 2, "nats": {
        "type": "authorization_request", "version": 2, "user_nkey": user_nkey,
        "server_id": {"id": server.public_key, "name": "metalbus-nats-0"},
        "client_info": {"host": "192.0.2.10"}, "connect_opts": {"user": user, "pass": password}}}
    return encode(claims, key=server, now=NOW).encode()


def granted_permissions(answer: str | None) -> dict[str, Any]:
    assert answer is not None
    response = decode(answer, now=NOW)
    assert response["iss"] == ISSUER.public_key and response["aud"] == SERVER.public_key
    nats = response["nats"]
    assert "error" not in nats, nats
    user = decode(nats["jwt"], now=NOW)
    assert user["iss"] == ISSUER.public_key and user["aud"] == ACCOUNT and user["sub"] == response["sub"]
    permissions: dict[str, Any] = user["nats"]
    return permissions


def refusal(answer: str | None) -> str:
    assert answer is not None
    error: str = decode(answer, now=NOW)["nats"]["error"]
    return error


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("services.authenticator.service.time.time", lambda: NOW)


# --- JWTs -----------------------------------------------------------------------------------------------


def test_a_jwt_is_read_back_only_as_signed_and_before_it_expires() -> None:
    token = encode({"sub": "x", "exp": NOW + 10}, key=ISSUER, now=NOW)
    assert decode(token, now=NOW)["sub"] == "x"
    header, _, signature = token.split(".")
    forged = encode({"sub": "y", "exp": NOW + 10}, key=ISSUER, now=NOW).split(".")[1]
    for bad, why in ((f"{header}.{forged}.{signature}", "bad signature"), ("a.b", "three"),
                     (token, "expired")):
        with pytest.raises(InvalidJwt, match=why):
            decode(bad, now=NOW + 11 if why == "expired" else NOW)


# --- claims ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("user", "password", "expected"), [
    ("node-worker-1", "t", Claim("worker-1", "t")),
    ("watcher", "t", Refusal.NOT_A_NODE_USER),
    ("node-", "t", Refusal.BAD_NODE_NAME),
    ("node-a b", "t", Refusal.BAD_NODE_NAME),
    ("node-" + "x" * 254, "t", Refusal.BAD_NODE_NAME),
    ("node-wörker", "t", Refusal.BAD_NODE_NAME),
    ("node-worker-1", "", Refusal.NO_CREDENTIAL),
])
def test_what_a_connection_claims(user: str, password: str, expected: Claim | Refusal) -> None:
    assert read_claim(user, password) == expected


# --- answers --------------------------------------------------------------------------------------------


async def test_a_node_with_its_token_gets_exactly_its_nodes_permissions() -> None:
    authenticator = Authenticator(issuer=ISSUER, verifiers=Verifiers(node_token_key=KEY))
    answer = await authenticator.answer(request("node-worker-1", node_token(KEY, "worker-1")))
    permissions = granted_permissions(answer)
    assert permissions["pub"] == announcer_permissions("worker-1").as_jwt_claims()["pub"]
    assert permissions["sub"]["allow"] == ["_INBOX_node_worker-1.>", "heartbeat.roll-call"]


@pytest.mark.parametrize(("user", "token", "reason"), [
    ("node-worker-1", node_token(KEY, "worker-2"), Refusal.BAD_NODE_TOKEN),
    ("node-worker-1", node_token(b"another key", "worker-1"), Refusal.BAD_NODE_TOKEN),
    ("ipam", "anything", Refusal.NOT_A_NODE_USER),
])
async def test_anything_else_is_refused_with_its_reason(user: str, token: str, reason: Refusal) -> None:
    authenticator = Authenticator(issuer=ISSUER, verifiers=Verifiers(node_token_key=KEY))
    assert refusal(await authenticator.answer(request(user, token))) == f"metalbus: {reason.value}"


async def test_no_verifier_refuses_everyone() -> None:
    authenticator = Authenticator(issuer=ISSUER, verifiers=Verifiers())
    answer = await authenticator.answer(request("node-worker-1", node_token(KEY, "worker-1")))
    assert refusal(answer) == f"metalbus: {Refusal.NO_VERIFIER.value}"


async def test_a_request_not_from_a_server_is_not_answered() -> None:
    authenticator = Authenticator(issuer=ISSUER, verifiers=Verifiers(node_token_key=KEY))
    assert await authenticator.answer(b"not a jwt") is None
    assert await authenticator.answer(b"x" * 70_000) is None
    tampered = request("node-worker-1", node_token(KEY, "worker-1")).replace(b".", b".x", 1)
    assert await authenticator.answer(tampered) is None


@dataclass
class GatedReviewer:
    """A verifier that holds every check until as many are waiting as may run at once."""

    waiting: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def check(self, claim: Claim) -> Refusal | None:
        self.waiting += 1
        if self.waiting >= CONCURRENT_ANSWERS:
            self.gate.set()
        await self.gate.wait()
        return None


@dataclass
class Message:
    data: bytes
    reply: str = "_INBOX.server"
    answers: list[bytes] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def respond(self, data: bytes) -> None:
        self.answers.append(data)
        self.answered.set()


async def test_many_nodes_are_checked_at_once_not_one_after_another() -> None:
    reviewer = GatedReviewer()
    authenticator = Authenticator(issuer=ISSUER, verifiers=Verifiers(token_reviewer=reviewer))  # type: ignore[arg-type]
    messages = [Message(request(f"node-worker-{index}", "token")) for index in range(CONCURRENT_ANSWERS * 2)]
    for message in messages:
        await asyncio.wait_for(authenticator.on_request(message), 5)  # type: ignore[arg-type]
    await asyncio.wait_for(reviewer.gate.wait(), 5)  # only reached with CONCURRENT_ANSWERS checks in flight
    await asyncio.wait_for(asyncio.gather(*(message.answered.wait() for message in messages)), 5)
    assert all(granted_permissions(message.answers[0].decode()) for message in messages)
