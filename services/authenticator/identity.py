"""Who a connecting announcer is: what it claims, and the verdicts. Pure: no clock, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.common.node_tokens import is_node_token
from services.common.permissions import NODE_USER_PREFIX

#: A Kubernetes node name is a DNS subdomain: at most 253 characters.
MAX_NODE_NAME = 253


class Refusal(StrEnum):
    """Why a connection was refused (also the metric label)."""

    NOT_A_NODE_USER = "NotANodeUser"
    BAD_NODE_NAME = "BadNodeName"
    NO_CREDENTIAL = "NoCredential"
    BAD_NODE_TOKEN = "BadNodeToken"
    TOKEN_NOT_AUTHENTICATED = "TokenNotAuthenticated"
    WRONG_SERVICE_ACCOUNT = "WrongServiceAccount"
    WRONG_NODE = "WrongNode"
    NO_VERIFIER = "NoVerifier"
    VERIFIER_UNAVAILABLE = "VerifierUnavailable"
    BAD_REQUEST = "BadRequest"


@dataclass(frozen=True, slots=True)
class Claim:
    """What a connecting client says it is."""

    node: str
    credential: str


def read_claim(user: str, password: str) -> Claim | Refusal:
    """The node a connection claims to be, from its NATS user (``node-<node>``) and password."""
    if not user.startswith(NODE_USER_PREFIX):
        return Refusal.NOT_A_NODE_USER
    node = user.removeprefix(NODE_USER_PREFIX)
    if not node or len(node) > MAX_NODE_NAME or not node.isascii() or not node.isprintable() or " " in node:
        return Refusal.BAD_NODE_NAME
    if not password:
        return Refusal.NO_CREDENTIAL
    return Claim(node=node, credential=password)


def check_node_token(key: bytes, claim: Claim) -> Refusal | None:
    """None when ``claim`` carries its node's token."""
    return None if is_node_token(key, claim.node, claim.credential) else Refusal.BAD_NODE_TOKEN
