"""TokenReview through the official client: the stand-in answers like the API server for the tokens it issues."""

from __future__ import annotations

import base64
import json
import time

import pytest
from kubernetes import client

from tests.kubeapi import KubeApi
from tests.kubeapi.tokens import (
    API_AUDIENCE,
    CREDENTIAL_ID_EXTRA,
    EXPIRED,
    INVALIDATED,
    NODE_NAME_EXTRA,
    NODE_UID_EXTRA,
    NOT_A_TOKEN,
    NOT_SIGNED_HERE,
    POD_NAME_EXTRA,
    POD_UID_EXTRA,
    REVIEW_STORAGE,
    service_account_uid,
)

NS, ACCOUNT, POD, NODE = "metallb-system", "metalbus-announcer", "announcer-7xk2p", "worker-1"
NATS = "metalbus-nats"


@pytest.fixture
def pod(kube_api: KubeApi) -> dict[str, object]:
    kube_api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}})
    return kube_api.put_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": NS},
                                "spec": {"nodeName": NODE, "serviceAccountName": ACCOUNT}})


def review(api_client: client.ApiClient, token: str, *audiences: str) -> client.V1TokenReviewStatus:
    body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=list(audiences) or None))
    answer = client.AuthenticationV1Api(api_client).create_token_review(body)
    assert answer.spec.token == token  # the request comes back with its status
    return answer.status


def announcer_token(kube_api: KubeApi, **options: object) -> str:
    return kube_api.issue_token(namespace=NS, service_account=ACCOUNT, pod=POD, audiences=[NATS], **options)


def test_a_pod_bound_token_names_the_account_the_pod_and_its_node(
        kube_api: KubeApi, api_client: client.ApiClient, pod: dict[str, object]) -> None:
    status = review(api_client, announcer_token(kube_api), NATS)
    assert status.authenticated and status.error is None
    assert status.audiences == [NATS]
    user = status.user
    assert user.username == f"system:serviceaccount:{NS}:{ACCOUNT}"
    assert user.uid == service_account_uid(NS, ACCOUNT)
    assert user.groups == ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"]
    node = kube_api.get_object("nodes", NODE)
    assert node is not None
    assert user.extra[POD_NAME_EXTRA] == [POD]
    assert user.extra[POD_UID_EXTRA] == [pod["metadata"]["uid"]]  # type: ignore[index]
    assert user.extra[NODE_NAME_EXTRA] == [NODE]
    assert user.extra[NODE_UID_EXTRA] == [node["metadata"]["uid"]]
    assert user.extra[CREDENTIAL_ID_EXTRA][0].startswith("JTI=")
    assert [r.code for r in kube_api.requests("create") if r.resource == REVIEW_STORAGE] == [201]


def test_clusters_before_1_30_name_the_pod_but_not_its_node(
        kube_api: KubeApi, api_client: client.ApiClient, pod: dict[str, object]) -> None:
    status = review(api_client, announcer_token(kube_api, pod_node_info=False), NATS)
    assert status.authenticated
    assert status.user.extra[POD_NAME_EXTRA] == [POD]
    assert NODE_NAME_EXTRA not in status.user.extra and NODE_UID_EXTRA not in status.user.extra


def test_the_audiences_answered_are_those_asked_that_the_token_holds(
        kube_api: KubeApi, api_client: client.ApiClient, pod: dict[str, object]) -> None:
    token = kube_api.issue_token(namespace=NS, service_account=ACCOUNT, pod=POD, audiences=["a", NATS])
    assert review(api_client, token, "b", NATS, "a").audiences == [NATS, "a"]

    refused = review(api_client, token, "b")
    assert not refused.authenticated and refused.audiences is None
    assert refused.user.username is None and refused.user.extra is None
    assert refused.error == ('[invalid bearer token, token audiences ["a" "metalbus-nats"] is invalid for the'
                             ' target audiences ["b"]]')


def test_the_api_does_not_accept_a_metalbus_nats_token_for_itself(
        kube_api: KubeApi, api_client: client.ApiClient, pod: dict[str, object]) -> None:
    """No audience asked means the API server's own, as when it authenticates a request bearing the token."""
    refused = review(api_client, announcer_token(kube_api))
    assert not refused.authenticated
    assert API_AUDIENCE in (refused.error or "")
    # control: a token for the API's audience is accepted by it
    assert review(api_client, kube_api.issue_token(namespace=NS, service_account=ACCOUNT, pod=POD)).authenticated


def test_an_expired_token_is_refused_after_the_api_servers_minute_of_leeway(
        kube_api: KubeApi, api_client: client.ApiClient, pod: dict[str, object]) -> None:
    expired_30s_ago = announcer_token(kube_api, issued_at=time.time() - 630, expiration_seconds=600)
    assert review(api_client, expired_30s_ago, NATS).authenticated
    expired_2m_ago = announcer_token(kube_api, issued_at=time.time() - 720, expiration_seconds=600)
    refused = review(api_client, expired_2m_ago, NATS)
    assert (refused.authenticated, refused.error) == (False, EXPIRED)


def test_a_token_dies_with_its_pod_even_when_a_pod_of_that_name_comes_back(
        kube_api: KubeApi, api_client: client.ApiClient, pod: dict[str, object]) -> None:
    token = announcer_token(kube_api)
    kube_api.delete_object("pods", POD, NS)
    assert review(api_client, token, NATS).error == INVALIDATED
    kube_api.put_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": NS},
                         "spec": {"nodeName": NODE}})
    refused = review(api_client, token, NATS)
    assert (refused.authenticated, refused.error) == (False, INVALIDATED)
    assert review(api_client, announcer_token(kube_api), NATS).authenticated  # control: the new pod's token


def test_tokens_not_issued_by_this_api_are_refused(
        kube_api: KubeApi, api_client: client.ApiClient, pod: dict[str, object]) -> None:
    header, claims, signature = announcer_token(kube_api).split(".")
    forged = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    forged["kubernetes.io"]["node"]["name"] = "worker-2"
    forged_claims = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    for token, error in [("not-a-jwt", NOT_A_TOKEN), (f"{header}.{forged_claims}.{signature}", NOT_SIGNED_HERE),
                         (KubeApi().issue_token(namespace=NS, service_account=ACCOUNT), NOT_SIGNED_HERE)]:
        status = review(api_client, token, NATS)
        assert (status.authenticated, status.error) == (False, error), token


def test_a_review_without_a_token_is_a_bad_request(api_client: client.ApiClient) -> None:
    api = client.AuthenticationV1Api(api_client)
    with pytest.raises(client.ApiException) as info:
        api.create_token_review(client.V1TokenReview(spec=client.V1TokenReviewSpec(token="")))
    assert info.value.status == 400 and "token is required" in info.value.body


def test_tokens_are_issued_only_for_stored_pods_and_for_ten_minutes_at_least(kube_api: KubeApi) -> None:
    with pytest.raises(KeyError, match="not found"):
        kube_api.issue_token(namespace=NS, service_account=ACCOUNT, pod="gone")
    with pytest.raises(ValueError, match="at least 600"):
        kube_api.issue_token(namespace=NS, service_account=ACCOUNT, expiration_seconds=60)
