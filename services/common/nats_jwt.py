"""NATS JWTs signed with nkeys: what an auth callout reads and answers.

The server asks an auth callout service about each connecting client with an *authorization request*,
a JWT signed by the server's own nkey. The service answers with an *authorization response* naming a
*user* JWT, both signed by the account key the server trusts as the callout's issuer. The formats are
NATS's (``nats-io/jwt``, claims version 2); this module only encodes, signs, decodes and verifies them.
It reads no clock (callers pass ``now``) and does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing
import nkeys

_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
#: How long a user JWT the callout issues stays valid: a reconnect after that asks the callout again.
USER_JWT_SECONDS = 3600


class InvalidJwt(ValueError):
    """A token that is not a well-formed NATS JWT signed by the key it names."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _public_key_bytes(public_key: str) -> bytes:
    """The raw ed25519 key inside an nkey public key (prefix byte, 32 bytes, CRC16)."""
    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError) as error:
        raise InvalidJwt(f"issuer {public_key[:60]!r} is not an nkey") from error
    if len(raw) != 35 or nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        raise InvalidJwt(f"issuer {public_key[:60]!r} is not an nkey")
    return raw[1:33]


@dataclass(frozen=True)
class SigningKey:
    """An nkey that signs JWTs (an account key: the callout's issuer)."""

    seed: bytes
    _pair: Any = field(repr=False, compare=False)

    @classmethod
    def from_seed(cls, seed: str | bytes) -> SigningKey:
        raw = seed.encode() if isinstance(seed, str) else bytes(seed)
        raw = raw.strip()
        try:
            pair = nkeys.from_seed(bytearray(raw))
        except (nkeys.NkeysError, ValueError, binascii.Error) as error:
            raise ValueError("not an nkey seed") from error
        return cls(raw, pair)

    @classmethod
    def new_account(cls) -> SigningKey:
        return cls.from_seed(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT))

    @property
    def public_key(self) -> str:
        return str(self._pair.public_key.decode())

    def sign(self, data: bytes) -> bytes:
        return bytes(self._pair.sign(data))


def encode(claims: dict[str, Any], *, key: SigningKey, now: int) -> str:
    """A signed JWT of ``claims`` issued by ``key`` at ``now`` (``iss``, ``iat`` and ``jti`` are set here)."""
    body = dict(claims, iss=key.public_key, iat=now)
    body["jti"] = base64.b32encode(hashlib.sha256(_canonical(body)).digest()).decode().rstrip("=")
    signed = f"{_b64(_canonical(_HEADER))}.{_b64(_canonical(body))}"
    return f"{signed}.{_b64(key.sign(signed.encode()))}"


def decode(token: str, *, now: int) -> dict[str, Any]:
    """The claims of ``token`` once its signature by its own ``iss`` and its expiry are checked."""
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidJwt("not three dot-separated parts")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, binascii.Error) as error:
        raise InvalidJwt(f"undecodable: {error}") from error
    if not isinstance(header, dict) or header.get("alg") != _HEADER["alg"] or not isinstance(claims, dict):
        raise InvalidJwt("not an ed25519-nkey JWT")
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise InvalidJwt("no issuer")
    try:
        nacl.signing.VerifyKey(_public_key_bytes(issuer)).verify(f"{parts[0]}.{parts[1]}".encode(), signature)
    except (nacl.exceptions.BadSignatureError, ValueError) as error:
        raise InvalidJwt("bad signature") from error
    expires = claims.get("exp")
    if isinstance(expires, int) and expires < now:
        raise InvalidJwt("expired")
    return claims


def _canonical(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class SubjectPermissions:
    """NATS subject permissions: what a user may publish and subscribe to."""

    publish_allow: tuple[str, ...] = ()
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()
    allow_responses: bool = False

    def as_jwt_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "pub": _allow_deny(self.publish_allow, self.publish_deny),
            "sub": _allow_deny(self.subscribe_allow, self.subscribe_deny),
        }
        if self.allow_responses:
            claims["resp"] = {"max": 1, "ttl": 0}
        return claims


def _allow_deny(allow: tuple[str, ...], deny: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if allow:
        out["allow"] = list(allow)
    if deny:
        out["deny"] = list(deny)
    if not out:
        out["deny"] = [">"]  # nothing allowed: an empty permission would allow everything
    return out


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """What the server tells the callout about a connecting client."""

    server_id: str
    user_nkey: str
    user: str
    password: str
    client_host: str


def read_authorization_request(token: str, *, now: int) -> AuthorizationRequest:
    """Decode and verify the server's request (signed by the server's nkey, named in the claims)."""
    claims = decode(token, now=now)
    nats_claims = claims.get("nats")
    if not isinstance(nats_claims, dict) or nats_claims.get("type") != "authorization_request":
        raise InvalidJwt("not an authorization request")
    server = nats_claims.get("server_id")
    options = nats_claims.get("connect_opts")
    client = nats_claims.get("client_info")
    user_nkey = nats_claims.get("user_nkey")
    if not isinstance(server, dict) or not isinstance(options, dict) or not isinstance(user_nkey, str):
        raise InvalidJwt("authorization request without server, options or user nkey")
    if server.get("id") != claims.get("iss"):
        raise InvalidJwt("authorization request not signed by the server it names")
    return AuthorizationRequest(
        server_id=str(server.get("id")),
        user_nkey=user_nkey,
        user=str(options.get("user") or ""),
        password=str(options.get("pass") or ""),
        client_host=str(client.get("host") or "") if isinstance(client, dict) else "",
    )


def authorization_response(
    request: AuthorizationRequest,
    *,
    key: SigningKey,
    now: int,
    account: str,
    name: str | None = None,
    permissions: SubjectPermissions | None = None,
    error: str | None = None,
) -> str:
    """The signed answer: a user JWT for ``request``'s client in ``account`` with ``permissions``, or
    ``error`` (the client is refused)."""
    response: dict[str, Any] = {"type": "authorization_response", "version": 2}
    if error is not None:
        response["error"] = error
    else:
        if permissions is None or name is None:
            raise ValueError("a granted response needs a name and permissions")
        user_claims = {
            "sub": request.user_nkey,
            "aud": account,
            "name": name,
            "exp": now + USER_JWT_SECONDS,
            "nats": {**permissions.as_jwt_claims(), "type": "user", "version": 2},
        }
        response["jwt"] = encode(user_claims, key=key, now=now)
    return encode({"sub": request.user_nkey, "aud": request.server_id, "nats": response}, key=key, now=now)
