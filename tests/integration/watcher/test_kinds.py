"""Kinds with rules of their own: EndpointSlices folded per node, only referenced Secrets, BGPPeer
versions, the kube-proxy ConfigMap."""

from __future__ import annotations

import base64
from typing import Any

from schemas.events import (
    ConfigObjectObserved,
    EndpointsObserved,
    KubeProxyObserved,
    NodeEndpoints,
    ObjectDeleted,
    ObjectKind,
    SecretObserved,
)
from services.common.bus import Bus
from services.common.subjects import StreamName, k8s_subject
from tests.integration.watcher.helpers import NAMESPACE, observing, recording, stored, wait_stored
from tests.kubeapi import KubeApi
from tests.kubeapi.resources import RESOURCES


def _slice(name: str, service: str, *endpoints: tuple[str | None, bool | None, bool | None]) -> dict[str, Any]:
    items = []
    for index, (node, ready, serving) in enumerate(endpoints):
        conditions = {k: v for k, v in (("ready", ready), ("serving", serving)) if v is not None}
        item: dict[str, Any] = {"addresses": [f"10.0.0.{index + 1}"], "conditions": conditions}
        if node is not None:
            item["nodeName"] = node
        items.append(item)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": items,
    }


def _service(name: str, service_type: str = "LoadBalancer") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": service_type, "ports": [{"port": 80, "protocol": "TCP"}]}}


def _set_type(kube_api: KubeApi, name: str, service_type: str) -> None:
    obj = kube_api.get_object("services", name, "default")
    assert obj is not None
    obj["spec"]["type"] = service_type
    kube_api.put_object(obj)


async def test_endpoint_slices_are_folded_per_service_and_node(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object(_service("web"))
    kube_api.put_object(_service("other"))
    kube_api.put_object(_slice("web-a", "web", ("n1", True, True), ("n2", False, True), (None, None, None)))
    kube_api.put_object(_slice("web-b", "web", ("n1", True, None)))
    kube_api.put_object(_slice("other-a", "other", ("n3", False, False)))
    subject = k8s_subject(ObjectKind.ENDPOINTS, "default", "web")
    async with recording(bus) as recorder, observing(bus, kube_api):
        web = (await stored(bus, ObjectKind.ENDPOINTS))[subject]
        assert isinstance(web, EndpointsObserved)
        assert web.nodes == (
            NodeEndpoints(node="", ready=1, serving=1),
            NodeEndpoints(node="n1", ready=2, serving=2),
            NodeEndpoints(node="n2", ready=0, serving=1),
        )
        kube_api.delete_object("endpointslices", "web-a", "default")
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "web",
                          lambda e: isinstance(e, EndpointsObserved) and len(e.nodes) == 1, "the refold")
        kube_api.put_object(_slice("web-b", "web", ("n1", True, True)))  # same counts: nothing to publish
        kube_api.delete_object("endpointslices", "web-b", "default")
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "web", lambda e: isinstance(e, ObjectDeleted),
                          "the tombstone once no slice is left")
        assert [type(e).__name__ for e in recorder.on(subject)] == ["EndpointsObserved"] * 2 + ["ObjectDeleted"]
        kube_api.put_object(_slice("web-c", "web", ("n1", True, True), ("n1", True, True)))
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "web",
                          lambda e: isinstance(e, EndpointsObserved) and e.nodes[0].ready == 2, "the new slice")
    async with recording(bus) as recorder, observing(bus, kube_api):
        pass
    assert recorder.messages == [], "a restart republished folds"


async def test_only_the_endpoints_of_load_balancers_are_published(bus: Bus, kube_api: KubeApi) -> None:
    """Nobody reads the endpoints of other Services: a Service's fold is published while it is a
    LoadBalancer, tombstoned when it stops being one, whichever object changes first."""
    kube_api.put_object(_service("internal", "ClusterIP"))
    kube_api.put_object(_slice("internal-a", "internal", ("n1", True, True)))
    kube_api.put_object(_service("web"))
    kube_api.put_object(_slice("web-a", "web", ("n1", True, True)))
    internal = k8s_subject(ObjectKind.ENDPOINTS, "default", "internal")
    async with recording(bus) as recorder, observing(bus, kube_api):
        assert set(await stored(bus, ObjectKind.ENDPOINTS)) == {k8s_subject(ObjectKind.ENDPOINTS, "default", "web")}
        # becomes a LoadBalancer: its fold is published, with no change of its slices
        _set_type(kube_api, "internal", "LoadBalancer")
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "internal",
                          lambda e: isinstance(e, EndpointsObserved) and e.nodes[0].node == "n1", "the fold")
        # stops being one: tombstoned, and its slices' changes publish nothing from then on
        _set_type(kube_api, "internal", "NodePort")
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "internal", lambda e: isinstance(e, ObjectDeleted),
                          "the tombstone of a Service no longer a LoadBalancer")
        kube_api.put_object(_slice("internal-a", "internal", ("n2", True, True)))
        # slices first, then the Service: published once the Service exists as a LoadBalancer
        kube_api.put_object(_slice("late-a", "late", ("n3", True, True)))
        kube_api.put_object(_service("late"))
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "late",
                          lambda e: isinstance(e, EndpointsObserved) and e.nodes[0].node == "n3", "the late fold")
        # the Service deleted while its slices stay (the endpoints controller removes them later)
        kube_api.delete_object("services", "late", "default")
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "late", lambda e: isinstance(e, ObjectDeleted),
                          "the tombstone of a deleted Service's fold")
        assert [type(e).__name__ for e in recorder.on(internal)] == ["EndpointsObserved", "ObjectDeleted"]
    async with recording(bus) as recorder, observing(bus, kube_api):
        pass
    assert recorder.messages == [], "a restart republished folds"
    # what changed while nobody watched: a LoadBalancer again
    _set_type(kube_api, "internal", "LoadBalancer")
    async with observing(bus, kube_api):
        await wait_stored(bus, ObjectKind.ENDPOINTS, "default", "internal",
                          lambda e: isinstance(e, EndpointsObserved) and e.nodes[0].node == "n2", "the fold again")


def _secret(name: str, password: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {"password": base64.b64encode(password.encode()).decode()},
    }


def _peer(name: str, secret: str | None, version: str = "v1beta2") -> dict[str, Any]:
    spec: dict[str, Any] = {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1"}
    if secret is not None:
        spec["passwordSecret"] = {"name": secret, "namespace": NAMESPACE}
    return {"apiVersion": f"metallb.io/{version}", "kind": "BGPPeer",
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec}


async def test_only_the_secrets_bgp_peers_reference_are_observed(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    for name in ("bgp-a", "bgp-b", "unrelated"):
        kube_api.put_object(_secret(name, f"pw-{name}"))
    kube_api.put_object(_peer("peer-1", "bgp-a"))
    async with observing(bus, kube_api):
        secrets = await stored(bus, ObjectKind.SECRET)
        assert list(secrets) == [k8s_subject(ObjectKind.SECRET, NAMESPACE, "bgp-a")]
        secret = secrets[k8s_subject(ObjectKind.SECRET, NAMESPACE, "bgp-a")]
        assert isinstance(secret, SecretObserved) and secret.data == {"password": "pw-bgp-a"}
        # passwords stay off the K8S stream everyone reads: the SECRETS stream is the announcers' only
        assert await bus.last_value(StreamName.K8S, k8s_subject(ObjectKind.SECRET, NAMESPACE, "bgp-a")) is None
        assert await bus.last_value(StreamName.SECRETS, k8s_subject(ObjectKind.SECRET, NAMESPACE, "bgp-a"))

        kube_api.put_object(_peer("peer-1", "bgp-b"))  # the peer now references another secret
        await wait_stored(bus, ObjectKind.SECRET, NAMESPACE, "bgp-b",
                          lambda e: isinstance(e, SecretObserved) and e.data == {"password": "pw-bgp-b"},
                          "the newly referenced secret")
        await wait_stored(bus, ObjectKind.SECRET, NAMESPACE, "bgp-a", lambda e: isinstance(e, ObjectDeleted),
                          "the no longer referenced secret withdrawn")
        kube_api.put_object(_secret("bgp-b", "rotated"))
        await wait_stored(bus, ObjectKind.SECRET, NAMESPACE, "bgp-b",
                          lambda e: isinstance(e, SecretObserved) and e.data == {"password": "rotated"},
                          "the rotated password")
        kube_api.put_object(_secret("unrelated", "changed"))
        kube_api.put_object(_peer("peer-2", None))
        await wait_stored(bus, ObjectKind.BGP_PEER, NAMESPACE, "peer-2", lambda e: True, "the second peer")
        assert k8s_subject(ObjectKind.SECRET, NAMESPACE, "unrelated") not in await stored(bus, ObjectKind.SECRET)


async def test_bgp_peers_are_read_as_v1beta2_and_as_v1beta1_where_that_is_all_there_is(bus: Bus) -> None:
    without_v1beta2 = tuple(r for r in RESOURCES if not (r.plural == "bgppeers" and r.version == "v1beta2"))
    for resources, version in ((RESOURCES, "v1beta2"), (without_v1beta2, "v1beta1")):
        with KubeApi(bookmark_interval=0.2, resources=resources) as kube_api:
            kube_api.put_object(_peer("peer-1", None, version="v1beta1"))
            async with observing(bus, kube_api):
                peer = (await stored(bus, ObjectKind.BGP_PEER))[k8s_subject(ObjectKind.BGP_PEER, NAMESPACE, "peer-1")]
                assert isinstance(peer, ConfigObjectObserved)
                assert peer.api_version == f"metallb.io/{version}" and peer.kind == "BGPPeer"
                assert peer.raw["spec"]["peerASN"] == 64501


async def test_config_objects_and_the_kube_proxy_config_map(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "lan", "namespace": NAMESPACE}, "spec": {"addresses": ["192.168.10.0/24"]},
    })
    kube_api.put_object({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "elsewhere", "namespace": "default"}, "spec": {"addresses": ["10.9.0.0/24"]},
    })
    kube_api.put_object({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "kind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: false\n"},
    })
    kube_api.put_object({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "other", "namespace": "kube-system"}, "data": {}})
    async with observing(bus, kube_api):
        pools = await stored(bus, ObjectKind.IP_ADDRESS_POOL)
        assert list(pools) == [k8s_subject(ObjectKind.IP_ADDRESS_POOL, NAMESPACE, "lan")]
        proxy = await stored(bus, ObjectKind.KUBE_PROXY)
        assert list(proxy) == [k8s_subject(ObjectKind.KUBE_PROXY, "kube-system", "kube-proxy")]
        observed = next(iter(proxy.values()))
        assert isinstance(observed, KubeProxyObserved) and (observed.mode, observed.strict_arp) == ("ipvs", False)
        config = kube_api.get_object("configmaps", "kube-proxy", "kube-system")
        assert config is not None
        config["data"]["config.conf"] = "mode: ipvs\nipvs:\n  strictARP: true\n"
        kube_api.put_object(config)
        await wait_stored(bus, ObjectKind.KUBE_PROXY, "kube-system", "kube-proxy",
                          lambda e: isinstance(e, KubeProxyObserved) and e.strict_arp, "strictARP turned on")


async def test_without_the_metallb_crds_the_rest_is_still_observed(bus: Bus) -> None:
    without_metallb = tuple(r for r in RESOURCES if r.group != "metallb.io")
    with KubeApi(bookmark_interval=0.2, resources=without_metallb) as kube_api:
        kube_api.put_object({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
        async with observing(bus, kube_api):
            assert list(await stored(bus, ObjectKind.NODE)) == [k8s_subject(ObjectKind.NODE, "", "node-1")]
            assert await stored(bus, ObjectKind.IP_ADDRESS_POOL) == {}
