"""Node tokens: what authenticates an announcer as its node where there is no Kubernetes.

A node token is an HMAC of the node's name under a key that only the authenticator and the
administrative step hold (``metalbus bus node-token``); it authenticates its node and no other.
"""

from __future__ import annotations

import hashlib
import hmac

_CONTEXT = b"metalbus node token v1:"


def node_token(key: bytes, node: str) -> str:
    """The token that authenticates ``node`` under ``key``."""
    return hmac.new(key, _CONTEXT + node.encode(), hashlib.sha256).hexdigest()


def is_node_token(key: bytes, node: str, token: str) -> bool:
    return hmac.compare_digest(node_token(key, node), token)
