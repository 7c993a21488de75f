"""RBAC in the API stand-in, with the RBAC that ships: each rule the watcher and the authenticator hold is one
they need, what they do not need is refused, and a refusal reads as the API server's."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kubeapi import KubeApi
from tests.kubeapi.rbac import Attributes, Policy, RoleRef, ServiceAccount
from tests.kubeapi.shipped import ANNOUNCER, AUTHENTICATOR, NAMESPACE, WATCHER, shipped_api, shipped_policy

WATCHER_USER = "system:serviceaccount:metallb-system:metalbus-watcher"
LEASE, WEB = "metalbus-watcher", "web"

#: What the watcher asks of the API, as its integration tests (run under this RBAC) are seen asking it.
WATCHER_REQUESTS = (
    *(Attributes(verb, "", "services") for verb in ("list", "watch")),                # the Service reflector
    Attributes("get", "", "services", "default", WEB),                                 # the status writer...
    Attributes("patch", "", "services", "default", WEB),                               # ...pool annotation
    Attributes("patch", "", "services", "default", WEB, "status"),                     # ...ingress
    Attributes("create", "", "events", "default"),                                     # ...IPAllocated & co
    Attributes("patch", "", "events", "default", "web.18ee91c972adf4fd"),              # ...a repeated one
    *(Attributes(verb, "discovery.k8s.io", "endpointslices") for verb in ("list", "watch")),
    *(Attributes(verb, "", kind) for verb in ("list", "watch") for kind in ("nodes", "namespaces")),
    *(Attributes(verb, "", "configmaps", "kube-system", "kube-proxy") for verb in ("list", "watch")),  # strictARP
    *(Attributes(verb, "metallb.io", kind, NAMESPACE)
      for verb in ("list", "watch")
      for kind in ("ipaddresspools", "l2advertisements", "bgpadvertisements", "bgppeers", "bfdprofiles",
                   "communities")),
    Attributes("get", "metallb.io", "ipaddresspools", NAMESPACE, "lan"),
    Attributes("patch", "metallb.io", "ipaddresspools", NAMESPACE, "lan", "status"),   # pool usage
    *(Attributes(verb, "", "secrets", NAMESPACE) for verb in ("list", "watch")),      # BGP passwords
    *(Attributes(verb, "metallb.io", kind, NAMESPACE, name)
      for kind in ("servicel2statuses", "servicebgpstatuses", "configurationstates")
      for verb, name in (("list", None), ("get", "x"), ("create", None))),
    Attributes("delete", "metallb.io", "servicel2statuses", NAMESPACE, "x"),
    *(Attributes("patch", "metallb.io", kind, NAMESPACE, "x", "status")
      for kind in ("servicel2statuses", "servicebgpstatuses", "configurationstates")),
    *(Attributes(verb, "coordination.k8s.io", "leases", NAMESPACE, LEASE) for verb in ("get", "update")),
    Attributes("create", "coordination.k8s.io", "leases", NAMESPACE),                  # leader election
)

#: What the authenticator asks: whose a token is, and (before Kubernetes 1.30) the pod it names.
AUTHENTICATOR_REQUESTS = (
    Attributes("create", "authentication.k8s.io", "tokenreviews"),
    Attributes("get", "", "pods", NAMESPACE, "announcer-7xk2p"),
)

NEEDS = {WATCHER: WATCHER_REQUESTS, AUTHENTICATOR: AUTHENTICATOR_REQUESTS}


def roles_of(policy: Policy, account: ServiceAccount) -> set[RoleRef]:
    return {binding.role for binding in policy.bindings if binding.names(account.user)}


def rules_of(account: ServiceAccount) -> list[tuple[RoleRef, int]]:
    policy = shipped_policy()
    return [(ref, index) for ref, index, _ in policy.rules() if ref in roles_of(policy, account)]


@pytest.mark.parametrize("account", [WATCHER, AUTHENTICATOR], ids=lambda a: a.name)
def test_the_shipped_rbac_allows_what_each_component_asks(account: ServiceAccount) -> None:
    policy = shipped_policy()
    refused = [r for r in NEEDS[account] if not policy.allows(account.user, r)]
    assert refused == []


@pytest.mark.parametrize(
    ("account", "role", "index"),
    [(account, role, index) for account in (WATCHER, AUTHENTICATOR) for role, index in rules_of(account)],
    ids=lambda v: v.name if isinstance(v, (ServiceAccount, RoleRef)) else str(v),
)
def test_without_any_one_of_its_rules_a_component_is_refused(account: ServiceAccount, role: RoleRef,
                                                              index: int) -> None:
    fewer = shipped_policy().without_rule(role, index)
    refused = [r for r in NEEDS[account] if not fewer.allows(account.user, r)]
    assert refused, f"rule {index} of {role} lets {account.name} do nothing it asks: not needed"


def test_every_role_bound_to_the_watcher_and_the_authenticator_has_rules() -> None:
    """The parametrisation above is not vacuous: the shipped roles are found, with their rules."""
    assert len(rules_of(WATCHER)) == 12
    assert len(rules_of(AUTHENTICATOR)) == 2
    assert roles_of(shipped_policy(), ANNOUNCER) == set()


# ---------------------------------------------------------------------------------------------- over HTTP
@pytest.fixture
def rbac_api() -> Iterator[KubeApi]:
    with shipped_api(WATCHER, bookmark_interval=0.2) as api:
        api.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        api.put_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": WEB, "namespace": "default"},
                        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
        yield api


def refusal(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value.body
    status: dict[str, Any] = json.loads(caught.value.body or "{}")
    assert (status["kind"], status["status"], status["reason"], status["code"]) == ("Status", "Failure",
                                                                                     "Forbidden", 403)
    return status


NOT_NEEDED: dict[str, Callable[[client.ApiClient], Any]] = {
    "delete a Service": lambda c: client.CoreV1Api(c).delete_namespaced_service(WEB, "default"),
    "read Secrets in another namespace": lambda c: client.CoreV1Api(c).list_namespaced_secret("default"),
    "read a Secret in another namespace": lambda c: client.CoreV1Api(c).read_namespaced_secret("s", "default"),
    "create pods": lambda c: client.CoreV1Api(c).create_namespaced_pod(
        NAMESPACE, client.V1Pod(metadata=client.V1ObjectMeta(name="p"))),
    "list pods": lambda c: client.CoreV1Api(c).list_pod_for_all_namespaces(),
    "read another ConfigMap of kube-system": lambda c: client.CoreV1Api(c).read_namespaced_config_map(
        "coredns", "kube-system"),
    "list kube-system's ConfigMaps": lambda c: client.CoreV1Api(c).list_namespaced_config_map("kube-system"),
    "review a token": lambda c: client.AuthenticationV1Api(c).create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token="t"))),
    "delete the Lease": lambda c: client.CoordinationV1Api(c).delete_namespaced_lease(LEASE, NAMESPACE),
    "change a Node": lambda c: client.CoreV1Api(c).patch_node("n1", {"metadata": {"labels": {"a": "b"}}}),
    "write an IPAddressPool": lambda c: client.CustomObjectsApi(c).patch_namespaced_custom_object(
        "metallb.io", "v1beta1", NAMESPACE, "ipaddresspools", "lan", {"spec": {}}),
}


@pytest.mark.parametrize("request_", NOT_NEEDED.values(), ids=NOT_NEEDED.keys())
def test_what_the_watcher_does_not_need_stays_refused(rbac_api: KubeApi,
                                                      request_: Callable[[client.ApiClient], Any]) -> None:
    with rbac_api.api_client() as api:
        refusal(lambda: request_(api))
    with rbac_api.api_client(admin=True) as admin:  # refused for want of RBAC, nothing else: not so for the admin
        try:
            request_(admin)
        except ApiException as answer:
            assert answer.status != 403, answer.body


def test_a_refusal_reads_as_the_api_servers(rbac_api: KubeApi) -> None:
    with rbac_api.api_client() as api:
        core = client.CoreV1Api(api)
        named = refusal(lambda: core.delete_namespaced_service(WEB, "default"))
        listed = refusal(lambda: core.list_namespaced_secret("default"))
        cluster = refusal(lambda: core.create_node(client.V1Node(metadata=client.V1ObjectMeta(name="n"))))
        grouped = refusal(lambda: client.CoordinationV1Api(api).delete_namespaced_lease(LEASE, NAMESPACE))
        status = refusal(lambda: core.patch_namespaced_pod_status("p", NAMESPACE, {"status": {}}))
    assert named["message"] == (f'services "{WEB}" is forbidden: User "{WATCHER_USER}" cannot delete resource'
                                ' "services" in API group "" in the namespace "default"')
    assert named["details"] == {"name": WEB, "group": "", "kind": "services"}
    assert listed["message"] == (f'secrets is forbidden: User "{WATCHER_USER}" cannot list resource "secrets"'
                                 ' in API group "" in the namespace "default"')
    assert cluster["message"] == (f'nodes is forbidden: User "{WATCHER_USER}" cannot create resource "nodes"'
                                  ' in API group "" at the cluster scope')
    assert grouped["message"] == (f'leases.coordination.k8s.io "{LEASE}" is forbidden: User "{WATCHER_USER}"'
                                  ' cannot delete resource "leases" in API group "coordination.k8s.io" in the'
                                  f' namespace "{NAMESPACE}"')
    assert status["message"] == (f'pods "p" is forbidden: User "{WATCHER_USER}" cannot patch resource'
                                 f' "pods/status" in API group "" in the namespace "{NAMESPACE}"')
    assert [d.request.verb for d in rbac_api.authorizations(WATCHER) if not d.allowed] == [
        "delete", "list", "create", "delete", "patch"]


def test_what_the_watcher_needs_is_served(rbac_api: KubeApi) -> None:
    with rbac_api.api_client() as api:
        core = client.CoreV1Api(api)
        assert [s.metadata and s.metadata.name for s in core.list_service_for_all_namespaces().items] == [WEB]
        core.patch_namespaced_service_status(WEB, "default", {"status": {"loadBalancer": {"ingress": [
            {"ip": "192.0.2.1"}]}}})
        core.list_namespaced_config_map("kube-system", field_selector="metadata.name=kube-proxy")
        core.list_namespaced_secret(NAMESPACE)
    served = rbac_api.get_object("services", WEB) or {}
    assert served["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.1"}]


def test_the_authenticator_reviews_and_reads_its_own_namespaces_pods_only(rbac_api: KubeApi) -> None:
    rbac_api.put_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": NAMESPACE}})
    rbac_api.put_object({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "b", "namespace": "default"}})
    with rbac_api.api_client(service_account=AUTHENTICATOR) as api:
        core = client.CoreV1Api(api)
        token = rbac_api.issue_token(namespace=NAMESPACE, service_account=ANNOUNCER.name)
        review = client.AuthenticationV1Api(api).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token)))
        assert review.status and review.status.user
        assert review.status.user.username == f"system:serviceaccount:{NAMESPACE}:{ANNOUNCER.name}"
        pod = core.read_namespaced_pod("a", NAMESPACE).metadata
        assert pod and pod.name == "a"
        refusal(lambda: core.read_namespaced_pod("b", "default"))
        refusal(lambda: core.list_namespaced_pod(NAMESPACE))
        refusal(lambda: core.list_namespaced_secret(NAMESPACE))


def test_only_the_stand_ins_own_tokens_get_in(rbac_api: KubeApi) -> None:
    configuration = rbac_api.configuration()
    configuration.api_key = {"authorization": "Bearer not-a-token-of-this-api"}
    with client.ApiClient(configuration) as api, pytest.raises(ApiException) as caught:
        client.CoreV1Api(api).list_namespace()
    assert caught.value.status == 401
    assert json.loads(caught.value.body or "{}")["reason"] == "Unauthorized"
    configuration.api_key = {}
    with client.ApiClient(configuration) as api:
        anonymous = refusal(lambda: client.CoreV1Api(api).list_namespace())
    assert anonymous["message"].startswith('namespaces is forbidden: User "system:anonymous" cannot list')
    with rbac_api.api_client(service_account=ANNOUNCER) as api:  # no binding: nothing at all
        refusal(lambda: client.CoreV1Api(api).list_namespace())


def test_without_rbac_every_client_may_do_anything(kube_api: KubeApi) -> None:
    """RBAC is the stand-in's choice: the others serve the watcher's token as before, and decide nothing."""
    kube_api.put_object({"apiVersion": "v1", "kind": "Service", "metadata": {"name": WEB, "namespace": "default"},
                         "spec": {"ports": [{"port": 80}]}})
    with kube_api.api_client(service_account=WATCHER) as api:
        client.CoreV1Api(api).delete_namespaced_service(WEB, "default")
    assert kube_api.get_object("services", WEB) is None
    assert kube_api.authorizations() == []
