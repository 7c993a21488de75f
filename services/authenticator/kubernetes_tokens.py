"""Announcers' identity in Kubernetes: a projected ServiceAccount token, checked with a TokenReview.

The announcer DaemonSet mounts a token of its ServiceAccount whose audience is ``metalbus-nats`` only:
the Kubernetes API refuses it for any request of its own (wrong audience), yet a TokenReview naming that
audience says whose it is. The token is bound to the announcer's pod, and the pod to its node: the review
names the node (``authentication.kubernetes.io/node-name``, Kubernetes 1.30+), or the pod it names is
read for its ``spec.nodeName``. So a node's token authenticates that node and no other.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from services.authenticator.identity import Claim, Refusal

log = logging.getLogger(__name__)

TOKEN_AUDIENCE = "metalbus-nats"
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
#: Seconds an API request may take: the NATS server has given up on the connection long before.
API_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class AnnouncerAccount:
    namespace: str
    service_account: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


class TokenReviewer:
    """Checks an announcer's projected token through the Kubernetes API (TokenReview)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, *, account: AnnouncerAccount,
                 audience: str = TOKEN_AUDIENCE) -> None:
        self._authentication = kubernetes.client.AuthenticationV1Api(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._account = account
        self._audience = audience

    @classmethod
    def connect(cls, kubeconfig: str | None, *, account: AnnouncerAccount) -> TokenReviewer:
        """A reviewer using ``kubeconfig``, or the in-cluster service account when it is None."""
        configuration = kubernetes.client.Configuration()
        if kubeconfig:
            kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        return cls(kubernetes.client.ApiClient(configuration), account=account)

    async def check(self, claim: Claim) -> Refusal | None:
        """None when ``claim``'s credential is a live token of the announcer's pod on ``claim.node``."""
        try:
            return await asyncio.to_thread(self._check, claim)
        except ApiException as error:
            log.warning("token review failed status=%s reason=%s", error.status, error.reason)
            return Refusal.VERIFIER_UNAVAILABLE
        except (OSError, ValueError, urllib3.exceptions.HTTPError) as error:  # unreachable, or a wrong answer
            log.warning("token review failed error=%r", error)
            return Refusal.VERIFIER_UNAVAILABLE

    def _check(self, claim: Claim) -> Refusal | None:
        review = kubernetes.client.V1TokenReview(
            spec=kubernetes.client.V1TokenReviewSpec(token=claim.credential, audiences=[self._audience]))
        status = self._authentication.create_token_review(review, _request_timeout=API_TIMEOUT).status
        if status is None or not status.authenticated or self._audience not in (status.audiences or []):
            log.info("token review refused node=%s error=%s", claim.node, status.error if status else None)
            return Refusal.TOKEN_NOT_AUTHENTICATED
        user = status.user
        if user is None or user.username != self._account.username:
            return Refusal.WRONG_SERVICE_ACCOUNT
        extra: dict[str, Any] = user.extra or {}
        nodes = extra.get(NODE_NAME_EXTRA) or []
        if not nodes:
            pods = extra.get(POD_NAME_EXTRA) or []
            if not pods:
                return Refusal.WRONG_NODE
            pod = self._core.read_namespaced_pod(pods[0], self._account.namespace, _request_timeout=API_TIMEOUT)
            nodes = [pod.spec.node_name] if pod.spec and pod.spec.node_name else []
        return None if nodes == [claim.node] else Refusal.WRONG_NODE
