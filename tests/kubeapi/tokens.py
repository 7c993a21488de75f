"""ServiceAccount tokens and their TokenReview, answered as the Kubernetes API server answers them.

    token = api.issue_token(namespace="metallb-system", service_account="metalbus-announcer",
                            pod="announcer-x", audiences=["metalbus-nats"])
    AuthenticationV1Api(client).create_token_review(V1TokenReview(spec=V1TokenReviewSpec(token=token,
                                                                                          audiences=[...])))

A token is a JWT shaped like the API server's (``sub``, ``aud``, ``exp``, ``jti`` and the ``kubernetes.io``
claims naming the namespace, service account, pod and node), signed by a key of this stand-in alone: a token
it did not issue, or one changed after issue, is not authenticated. A review (``POST
/apis/authentication.k8s.io/v1/tokenreviews``, answered 201) checks, in the API server's order:

- the signature, then the audiences: ``status.audiences`` is the requested audiences that the token holds
  (the API's own audience when none is requested); none in common is not authenticated;
- the expiry, with the API server's leeway of a minute;
- the binding: a token bound to a pod is invalidated once that pod is gone or replaced (another uid).

An authenticated answer names the user as the API server does — ``system:serviceaccount:<ns>:<name>``,
the service account's uid, its groups, and ``extra``: the pod's name and uid, the credential id, and the
node's name (and uid when the Node is stored), which Kubernetes 1.30+ embeds in pod-bound tokens
(``pod_node_info=False`` issues a token as older clusters do, naming no node). A refused answer holds
``authenticated: false``, an empty ``user`` and the ``error`` string the API server gives. Service accounts
are not checked for existence (the stand-in stores none). Who may review is RBAC's to say when the
stand-in enforces it (``tests.kubeapi.rbac``); a token for the API's own audience also authenticates its
service account's requests there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from tests.kubeapi.errors import ApiError
from tests.kubeapi.store import Store

Obj = dict[str, Any]

REVIEW_GROUP, REVIEW_VERSION = "authentication.k8s.io", "v1"
REVIEW_PATH = f"/apis/{REVIEW_GROUP}/{REVIEW_VERSION}/tokenreviews"
#: How a review appears in the stand-in's request log (``Request.resource``).
REVIEW_STORAGE = f"tokenreviews.{REVIEW_GROUP}"

#: The API server's own audience (and issuer): what a token is for when no audience is asked.
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
#: A token is accepted this long after its expiry, as the API server's JWT validation allows.
EXPIRY_LEEWAY = 60
#: The shortest lifetime a TokenRequest grants.
MIN_EXPIRATION_SECONDS = 600

POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
NODE_UID_EXTRA = "authentication.kubernetes.io/node-uid"
CREDENTIAL_ID_EXTRA = "authentication.kubernetes.io/credential-id"

#: The API server's ``status.error`` for each way a token fails.
NOT_A_TOKEN = "invalid bearer token"
NOT_SIGNED_HERE = "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
EXPIRED = "[invalid bearer token, service account token has expired]"
INVALIDATED = "[invalid bearer token, service account token has been invalidated]"


def _encode(part: Obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(part, separators=(",", ":")).encode()).rstrip(b"=").decode()


def _decode(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def _go_strings(values: Sequence[str]) -> str:
    """A list of strings as Go's ``%q`` prints it (the API server's audience message)."""
    return "[" + " ".join(json.dumps(value) for value in values) + "]"


def service_account_uid(namespace: str, name: str) -> str:
    """The uid the stand-in gives a service account (it stores none): stable for one name."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"serviceaccount/{namespace}/{name}"))


class Rejection(Exception):
    """Why a token is not authenticated: the API server's ``status.error``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class TokenAuthority:
    """Issues tokens (a test control, as a TokenRequest would) and reviews them (the HTTP API)."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._key = secrets.token_bytes(32)

    # ------------------------------------------------------------------ issue
    def issue(self, *, namespace: str, service_account: str, pod: str | None = None,
              audiences: Sequence[str] = (API_AUDIENCE,), expiration_seconds: int = 3600,
              issued_at: float | None = None, pod_node_info: bool = True) -> str:
        """A signed token of ``namespace/service_account``, bound to ``pod`` (which must be stored) when named."""
        if expiration_seconds < MIN_EXPIRATION_SECONDS:
            raise ValueError(f"expiration_seconds must be at least {MIN_EXPIRATION_SECONDS}")
        if not audiences:
            raise ValueError("a token needs an audience")
        now = int(self._clock() if issued_at is None else issued_at)
        private: Obj = {"namespace": namespace,
                        "serviceaccount": {"name": service_account,
                                           "uid": service_account_uid(namespace, service_account)}}
        if pod is not None:
            bound = self._pod(namespace, pod)
            if bound is None:
                raise KeyError(f'pods "{pod}" not found in {namespace}: a token is bound to a stored pod')
            private["pod"] = {"name": pod, "uid": bound["metadata"]["uid"]}
            node = (bound.get("spec") or {}).get("nodeName")
            if pod_node_info and node:
                private["node"] = {"name": node, **self._node_uid(node)}
        claims: Obj = {"aud": list(audiences), "exp": now + expiration_seconds, "iat": now, "nbf": now,
                       "iss": API_AUDIENCE, "jti": str(uuid.uuid4()),
                       "sub": f"system:serviceaccount:{namespace}:{service_account}", "kubernetes.io": private}
        signed = f"{_encode({'alg': 'HS256', 'kid': 'kubeapi'})}.{_encode(claims)}"
        return f"{signed}.{self._signature(signed)}"

    # ------------------------------------------------------------------ review
    def review(self, body: Any) -> Obj:
        """The TokenReview ``body`` with its ``status`` filled in."""
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be an object")
        spec = body.get("spec") or {}
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(400, "token is required for TokenReview in authentication")
        requested = list(spec.get("audiences") or [API_AUDIENCE])
        try:
            status = self._authenticate(token, requested)
        except Rejection as rejection:
            status = {"authenticated": False, "user": {}, "error": rejection.error}
        return {"kind": "TokenReview", "apiVersion": f"{REVIEW_GROUP}/{REVIEW_VERSION}",
                "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}

    def user(self, token: str) -> Obj | None:
        """Whom a bearer token speaks for at the API itself (its own audience), or None when not authenticated."""
        try:
            user: Obj = self._authenticate(token, [API_AUDIENCE])["user"]
        except Rejection:
            return None
        return user

    def _authenticate(self, token: str, requested: list[str]) -> Obj:
        claims = self._verified_claims(token)
        audiences = [audience for audience in requested if audience in claims["aud"]]
        if not audiences:
            raise Rejection(f"[invalid bearer token, token audiences {_go_strings(claims['aud'])} is invalid for"
                            f" the target audiences {_go_strings(requested)}]")
        if self._clock() > claims["exp"] + EXPIRY_LEEWAY:
            raise Rejection(EXPIRED)
        private: Obj = claims["kubernetes.io"]
        namespace, account = private["namespace"], private["serviceaccount"]
        extra: dict[str, list[str]] = {CREDENTIAL_ID_EXTRA: [f"JTI={claims['jti']}"]}
        if "pod" in private:
            pod = self._pod(namespace, private["pod"]["name"])
            if pod is None or pod["metadata"]["uid"] != private["pod"]["uid"]:
                raise Rejection(INVALIDATED)
            extra |= {POD_NAME_EXTRA: [private["pod"]["name"]], POD_UID_EXTRA: [private["pod"]["uid"]]}
        if "node" in private:
            extra[NODE_NAME_EXTRA] = [private["node"]["name"]]
            if "uid" in private["node"]:
                extra[NODE_UID_EXTRA] = [private["node"]["uid"]]
        user = {"username": claims["sub"], "uid": account["uid"],
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
                "extra": extra}
        return {"authenticated": True, "user": user, "audiences": audiences}

    def _verified_claims(self, token: str) -> Obj:
        parts = token.split(".")
        if len(parts) != 3:
            raise Rejection(NOT_A_TOKEN)
        if not hmac.compare_digest(parts[2], self._signature(f"{parts[0]}.{parts[1]}")):
            raise Rejection(NOT_SIGNED_HERE)
        claims: Obj = _decode(parts[1])
        return claims

    def _signature(self, signed: str) -> str:
        digest = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # ------------------------------------------------------------------ the bound objects
    def _pod(self, namespace: str, name: str) -> Obj | None:
        return self._store.peek(self._store.table.by_name("pods"), namespace, name)

    def _node_uid(self, name: str) -> dict[str, str]:
        node = self._store.peek(self._store.table.by_name("nodes"), None, name)
        return {"uid": node["metadata"]["uid"]} if node is not None else {}
