"""``TokenReviewer.check`` against the Kubernetes API stand-in: an announcer's projected token lets it in as its
own node and no other; every other token is refused with its own reason, and the API's word is logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from services.authenticator.identity import Claim, Refusal
from services.authenticator.kubernetes_tokens import AnnouncerAccount, TokenReviewer
from tests.announcer_pods import ANNOUNCERS, projected_token, schedule_announcer
from tests.kubeapi import KubeApi
from tests.kubeapi.tokens import API_AUDIENCE

NODE, OTHER_NODE = "worker-1", "worker-2"


@pytest.fixture
def reviewer(kube_api: KubeApi) -> Iterator[TokenReviewer]:
    with kube_api.api_client() as api_client:
        yield TokenReviewer(api_client, account=ANNOUNCERS)


def own(api: KubeApi, **options: object) -> str:
    return projected_token(api, schedule_announcer(api, node=NODE), **options)  # type: ignore[arg-type]


def other_nodes(api: KubeApi, **options: object) -> str:
    return projected_token(api, schedule_announcer(api, node=OTHER_NODE), **options)  # type: ignore[arg-type]


def of_account(namespace: str, name: str) -> Callable[[KubeApi], str]:
    def token(api: KubeApi) -> str:
        account = AnnouncerAccount(namespace, name)
        return projected_token(api, schedule_announcer(api, node=NODE, account=account), account=account)
    return token


def of_a_deleted_pod(api: KubeApi) -> str:
    pod = schedule_announcer(api, node=NODE)
    token = projected_token(api, pod)
    api.delete_object("pods", pod, ANNOUNCERS.namespace)
    return token


def bound_to_no_pod(api: KubeApi) -> str:
    return api.issue_token(namespace=ANNOUNCERS.namespace, service_account=ANNOUNCERS.service_account,
                           audiences=["metalbus-nats"])


@dataclass(frozen=True)
class Case:
    token: Callable[[KubeApi], str]
    verdict: Refusal | None
    api_says: str = ""
    """What the API answered, found in the reviewer's log line (refused reviews only)."""


CASES = {
    "its own pod's token (Kubernetes 1.30+ names the node)": Case(own, None),
    "its own pod's token (before 1.30: the pod is read)": Case(lambda api: own(api, pod_node_info=False), None),
    "another node's token": Case(other_nodes, Refusal.WRONG_NODE),
    "another node's token (before 1.30)": Case(lambda api: other_nodes(api, pod_node_info=False),
                                               Refusal.WRONG_NODE),
    "its own pod's token for the Kubernetes API": Case(lambda api: own(api, audiences=[API_AUDIENCE]),
                                                       Refusal.TOKEN_NOT_AUTHENTICATED, "token audiences"),
    "another service account's token on the node": Case(of_account("metallb-system", "metalbus-watcher"),
                                                         Refusal.WRONG_SERVICE_ACCOUNT),
    "the announcers' account name in another namespace": Case(of_account("default", "metalbus-announcer"),
                                                              Refusal.WRONG_SERVICE_ACCOUNT),
    "its own token, expired an hour ago": Case(lambda api: own(api, issued_at=time.time() - 7200),
                                               Refusal.TOKEN_NOT_AUTHENTICATED, "has expired"),
    "the token of a deleted pod": Case(of_a_deleted_pod, Refusal.TOKEN_NOT_AUTHENTICATED, "invalidated"),
    "a token the API never issued": Case(lambda api: KubeApi().issue_token(
        namespace=ANNOUNCERS.namespace, service_account=ANNOUNCERS.service_account, audiences=["metalbus-nats"]),
        Refusal.TOKEN_NOT_AUTHENTICATED, "invalid bearer token"),
    "a token of the announcers' account bound to no pod": Case(bound_to_no_pod, Refusal.WRONG_NODE),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_a_token_is_its_own_nodes_only(kube_api: KubeApi, reviewer: TokenReviewer, case: Case,
                                              caplog: pytest.LogCaptureFixture) -> None:
    token = case.token(kube_api)
    with caplog.at_level(logging.INFO, logger="services.authenticator.kubernetes_tokens"):
        assert await reviewer.check(Claim(node=NODE, credential=token)) is case.verdict
    assert case.api_says in caplog.text
    if case.verdict is None:  # control: the same token claims another node in vain
        assert await reviewer.check(Claim(node=OTHER_NODE, credential=token)) is Refusal.WRONG_NODE


async def test_only_clusters_before_1_30_have_the_pod_read(kube_api: KubeApi, reviewer: TokenReviewer) -> None:
    assert await reviewer.check(Claim(node=NODE, credential=own(kube_api))) is None
    assert kube_api.requests("get", "pods") == []
    assert await reviewer.check(Claim(node=NODE, credential=own(kube_api, pod_node_info=False))) is None
    assert [(r.namespace, r.name) for r in kube_api.requests("get", "pods")] == [
        (ANNOUNCERS.namespace, f"{ANNOUNCERS.service_account}-{NODE}")]


async def test_an_unreachable_api_is_told_apart_from_a_refused_token(kube_api: KubeApi,
                                                                     reviewer: TokenReviewer) -> None:
    token = own(kube_api)
    assert await reviewer.check(Claim(node=NODE, credential=token)) is None  # control
    kube_api.stop()
    assert await reviewer.check(Claim(node=NODE, credential=token)) is Refusal.VERIFIER_UNAVAILABLE
