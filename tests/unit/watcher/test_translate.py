"""Raw Kubernetes JSON → observed events: what is kept, what is dropped, what odd input becomes."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from schemas.events import (
    ConfigObjectObserved,
    EndpointsObserved,
    KubeProxyObserved,
    NodeEndpoints,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    SecretObserved,
    ServiceObserved,
    ServicePort,
)
from services.watcher.observe.translate import (
    Identity,
    Untranslatable,
    config_observed,
    endpoints_observed,
    fold_endpoints,
    kube_proxy_observed,
    kube_proxy_settings,
    namespace_observed,
    node_observed,
    referenced_secrets,
    secret_observed,
    service_observed,
    slice_summary,
    stored_identity,
    tombstone,
)


def meta(name: str, namespace: str = "", rv: str = "7", uid: str = "u-1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": rv, **extra}


SERVICE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": meta(
        "web", "shop",
        labels={"app": "web"},
        annotations={
            "metallb.io/loadBalancerIPs": "192.168.10.5",
            "metallb.universe.tf/allow-shared-ip": "k",
            "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        },
    ),
    "spec": {
        "type": "LoadBalancer",
        "loadBalancerClass": "metallb",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"},
                  {"port": 0}, {"port": 99999}, "junk"],
        "ipFamilies": ["IPv4", "IPv6", "IPv9"],
        "ipFamilyPolicy": "PreferDualStack",
        "clusterIPs": ["10.96.0.10", "fd00::10"],
        "externalTrafficPolicy": "Local",
        "selector": {"app": "web"},
    },
    "status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.5", "ipMode": "VIP"}, {"hostname": "x.example"}]}},
}


def test_service_keeps_metallb_annotations_and_ingress_ips() -> None:
    observed = service_observed(SERVICE)
    event = observed.event
    assert isinstance(event, ServiceObserved)
    assert observed.subject == "k8s.service.shop.web"
    assert observed.msg_id == "u-1/7" and observed.identity.uid == "u-1"
    assert event.annotations == {
        "metallb.io/loadBalancerIPs": "192.168.10.5",
        "metallb.universe.tf/allow-shared-ip": "k",
    }
    assert event.ports == (ServicePort(name="http", protocol="TCP", port=80), ServicePort(protocol="UDP", port=53))
    assert event.ip_families == ("IPv4", "IPv6")
    assert event.ip_family_policy == "PreferDualStack"
    assert event.external_traffic_policy == "Local"
    assert event.load_balancer_class == "metallb"
    assert event.ingress_ips == ("192.168.10.5",)
    assert event.labels == {"app": "web"} and event.selector == {"app": "web"}


def test_a_bare_service_gets_defaults_and_headless_cluster_ips_are_dropped() -> None:
    event = service_observed({"metadata": meta("bare", "default"), "spec": {"clusterIPs": ["None"]}}).event
    assert isinstance(event, ServiceObserved)
    assert (event.service_type, event.external_traffic_policy, event.cluster_ips) == ("ClusterIP", "Cluster", ())
    assert event.ip_family_policy is None and event.load_balancer_ip is None


@pytest.mark.parametrize("broken", [
    {},
    {"metadata": None},
    {"metadata": {"name": "x", "uid": "u"}},
    {"metadata": {"name": "", "uid": "u", "resourceVersion": "1"}},
])
def test_an_object_without_identity_is_untranslatable(broken: dict[str, Any]) -> None:
    with pytest.raises(Untranslatable):
        service_observed(broken)


def _endpoints(*items: tuple[str | None, Any, Any]) -> list[dict[str, Any]]:
    out = []
    for node, ready, serving in items:
        conditions = {k: v for k, v in (("ready", ready), ("serving", serving)) if v is not None}
        endpoint: dict[str, Any] = {"addresses": ["10.0.0.1"], "conditions": conditions}
        if node is not None:
            endpoint["nodeName"] = node
        out.append(endpoint)
    return out


def test_slice_counts_ready_and_serving_per_node() -> None:
    summary = slice_summary({
        "metadata": meta("web-x1", "shop", labels={"kubernetes.io/service-name": "web"}),
        "endpoints": _endpoints(("n1", True, True), ("n1", False, True), ("n2", False, False), (None, None, None),
                                ("n2", None, False)),
    })
    assert summary.service == "web"
    assert dict(summary.counts) == {"n1": (1, 2), "n2": (1, 0), "": (1, 1)}


def test_a_slice_without_service_label_belongs_to_no_service() -> None:
    assert slice_summary({"metadata": meta("orphan", "shop"), "endpoints": None}).service == ""


def test_fold_sums_slices_sorted_by_node_and_hash_ids_change_with_the_trigger() -> None:
    one = slice_summary({"metadata": meta("a", "s", labels={"kubernetes.io/service-name": "web"}),
                         "endpoints": _endpoints(("n2", True, True))})
    two = slice_summary({"metadata": meta("b", "s", labels={"kubernetes.io/service-name": "web"}),
                         "endpoints": _endpoints(("n1", True, True), ("n2", False, True))})
    nodes = fold_endpoints([one, two])
    assert nodes == (NodeEndpoints(node="n1", ready=1, serving=1), NodeEndpoints(node="n2", ready=1, serving=2))
    first = endpoints_observed("s", "web", nodes, "10")
    again = endpoints_observed("s", "web", nodes, "12")
    assert isinstance(first.event, EndpointsObserved) and first.subject == "k8s.endpoints.s.web"
    assert first.identity == again.identity and first.msg_id != again.msg_id
    assert stored_identity(first.event) == first.identity


def test_node_network_unavailable_and_addresses() -> None:
    event = node_observed({
        "metadata": meta("node-1", labels={"zone": "a"}),
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "NetworkUnavailable", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": ""}],
        },
    }).event
    assert isinstance(event, NodeObserved)
    assert event.network_unavailable and event.labels == {"zone": "a"}
    assert [(a.type, a.address) for a in event.addresses] == [("InternalIP", "10.0.0.1")]
    calm = node_observed({"metadata": meta("n2"), "status": {"conditions": [
        {"type": "NetworkUnavailable", "status": "False"}]}}).event
    assert isinstance(calm, NodeObserved) and not calm.network_unavailable


def test_namespace_labels_and_cluster_scoped_subject() -> None:
    observed = namespace_observed({"metadata": meta("shop", labels={"team": "x"})})
    assert observed.subject == "k8s.namespace._.shop"


def test_config_objects_are_kept_whole_without_managed_fields() -> None:
    obj = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
           "metadata": meta("lan", "metallb-system", managedFields=[{"manager": "kubectl"}]),
           "spec": {"addresses": ["192.168.10.0/24"]}}
    observed = config_observed(obj)
    event = observed.event
    assert isinstance(event, ConfigObjectObserved)
    assert observed.subject == "k8s.ipaddresspool.metallb-system.lan"
    assert event.raw["spec"] == obj["spec"] and "managedFields" not in event.raw["metadata"]
    assert "managedFields" in obj["metadata"], "the input was changed"
    with pytest.raises(Untranslatable):
        config_observed({**obj, "kind": "ServiceL2Status"})


def test_referenced_secrets_only_in_the_namespace() -> None:
    peers = [
        {"spec": {"passwordSecret": {"name": "a", "namespace": "metallb-system"}}},
        {"spec": {"passwordSecret": {"name": "b"}}},
        {"spec": {"passwordSecret": {"name": "c", "namespace": "elsewhere"}}},
        {"spec": {"password": "inline"}},
        {"spec": None},
    ]
    assert referenced_secrets(peers, "metallb-system") == {"a", "b"}


def test_secret_data_is_decoded_and_bad_base64_dropped() -> None:
    observed = secret_observed({"metadata": meta("bgp", "metallb-system"), "type": "kubernetes.io/basic-auth",
                                "data": {"password": base64.b64encode(b"s3cret").decode(), "bad": "%%%"}})
    event = observed.event
    assert isinstance(event, SecretObserved)
    assert event.data == {"password": "s3cret"} and event.secret_type == "kubernetes.io/basic-auth"


@pytest.mark.parametrize(("text", "expected"), [
    ("mode: ipvs\nipvs:\n  strictARP: true\n", ("ipvs", True)),
    ("mode: ipvs\nipvs:\n  strictARP: false\n", ("ipvs", False)),
    ("mode: \"\"\n", ("", False)),
    ("mode: iptables\nipvs: null\n", ("iptables", False)),
    ("{ not yaml: [", ("", False)),
    ("", ("", False)),
    ("- a list\n", ("", False)),
])
def test_kube_proxy_settings(text: str, expected: tuple[str, bool]) -> None:
    assert kube_proxy_settings(text) == expected


def test_kube_proxy_observed() -> None:
    event = kube_proxy_observed({"metadata": meta("kube-proxy", "kube-system"),
                                 "data": {"config.conf": "mode: ipvs\nipvs:\n  strictARP: true\n"}}).event
    assert isinstance(event, KubeProxyObserved) and event.mode == "ipvs" and event.strict_arp


def test_tombstones_are_per_uid_or_per_trigger_for_folds() -> None:
    gone = tombstone(ObjectKind.SERVICE, "shop", "web", "u-1", "99")
    assert isinstance(gone.event, ObjectDeleted)
    assert gone.msg_id == "u-1/deleted" and gone.identity == Identity("u-1", "", deleted=True)
    fold = tombstone(ObjectKind.ENDPOINTS, "shop", "web", "", "99")
    assert fold.msg_id == "endpoints/shop/web/99/deleted"
    assert stored_identity(gone.event) == gone.identity


def test_a_status_written_back_on_a_pool_is_no_change_of_configuration() -> None:
    """metalbus writes IPAddressPool status: that bumps the resourceVersion but is no configuration, so the
    pool is not published again (ipam would record the whole configuration anew at every allocation)."""
    pool = {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": meta("lan", "metallb-system"),
            "spec": {"addresses": ["192.168.10.0/24"]}}
    first = config_observed(pool)
    counted = config_observed({**pool, "metadata": {**pool["metadata"], "resourceVersion": "8"},
                               "status": {"assignedIPv4": 1, "availableIPv4": 255}})
    assert counted.identity == first.identity and stored_identity(counted.event) == first.identity
    event = counted.event
    assert isinstance(event, ConfigObjectObserved) and "status" not in event.raw
    labelled = config_observed({**pool, "metadata": {**pool["metadata"], "resourceVersion": "9",
                                                     "labels": {"tier": "public"}}})
    assert labelled.identity != first.identity and labelled.msg_id != first.msg_id  # labels select pools


def test_a_pool_annotation_written_back_on_a_service_is_no_change() -> None:
    """metalbus writes a Service's pool annotation (MetalLB's ``ip-allocated-from-pool``) after its status: that
    bumps the resourceVersion but changes nothing metalbus reads, so the Service is not published again (both
    ipam replicas read each as a change in a cold start). Its status's addresses are published: after a loss of
    the decisions they are what each Service keeps."""
    shown = service_observed(SERVICE)
    annotated = {**SERVICE["metadata"], "resourceVersion": "8",
                 "annotations": {**SERVICE["metadata"]["annotations"], "metallb.io/ip-allocated-from-pool": "lan",
                                 "metallb.universe.tf/ip-allocated-from-pool": "old", "other.example/x": "y"},
                 "managedFields": [{"manager": "metalbus"}]}
    written = service_observed({**SERVICE, "metadata": annotated})
    event = written.event
    assert isinstance(event, ServiceObserved) and event.ref.resource_version == "8"
    assert "metallb.io/ip-allocated-from-pool" not in event.annotations
    assert written.identity == shown.identity and stored_identity(event) == shown.identity
    assert written.msg_id == "u-1/8"  # published with the version it was read at, when it is published
    moved = service_observed({**SERVICE, "metadata": {**annotated, "resourceVersion": "9"},
                              "status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.6"}]}}})
    assert moved.identity != shown.identity and stored_identity(moved.event) == moved.identity
    asked = service_observed({**SERVICE, "metadata": {**annotated, "resourceVersion": "10", "annotations": {
        "metallb.io/loadBalancerIPs": "192.168.10.7"}}})
    assert asked.identity != shown.identity
