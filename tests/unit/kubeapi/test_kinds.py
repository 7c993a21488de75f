"""The other kinds a controller uses: Leases, metallb.io custom resources, EndpointSlices, Events, kubeconfig."""

from __future__ import annotations

import datetime
import threading
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.kubeapi import KubeApi
from tests.kubeapi.recording import WatchRecorder

NS = "metallb-system"


def test_lease_create_update_and_conflict(api_client: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(api_client)
    now = datetime.datetime.now(datetime.UTC)
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="metalbus-watcher"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15, acquire_time=now, renew_time=now),
    )
    created = leases.create_namespaced_lease(NS, body)
    with pytest.raises(client.ApiException) as info:
        leases.create_namespaced_lease(NS, body)
    assert info.value.status == 409

    mine = leases.read_namespaced_lease("metalbus-watcher", NS)
    theirs = leases.read_namespaced_lease("metalbus-watcher", NS)
    theirs.spec.holder_identity = "b"
    taken = leases.replace_namespaced_lease("metalbus-watcher", NS, theirs)
    assert taken.spec.holder_identity == "b"
    assert int(taken.metadata.resource_version) > int(created.metadata.resource_version)

    mine.spec.renew_time = datetime.datetime.now(datetime.UTC)
    with pytest.raises(client.ApiException) as info:
        leases.replace_namespaced_lease("metalbus-watcher", NS, mine)
    assert info.value.status == 409
    assert leases.read_namespaced_lease("metalbus-watcher", NS).spec.holder_identity == "b"


def _pool(name: str) -> dict:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name},
        "spec": {"addresses": ["192.168.10.0/24"]},
    }


def test_custom_objects_with_status(kube_api: KubeApi, custom: client.CustomObjectsApi) -> None:
    args = ("metallb.io", "v1beta1", NS, "ipaddresspools")
    created = custom.create_namespaced_custom_object(*args, _pool("lan"))
    assert created["metadata"]["generation"] == 1
    assert created["metadata"]["namespace"] == NS

    status = {"status": {"assignedIPv4": 3, "availableIPv4": 251}, "spec": {"addresses": ["10.0.0.0/8"]}}
    patched = custom.patch_namespaced_custom_object_status(*args, "lan", status)
    assert patched["status"]["assignedIPv4"] == 3
    assert patched["spec"]["addresses"] == ["192.168.10.0/24"]
    assert patched["metadata"]["generation"] == 1

    patched["spec"]["autoAssign"] = False
    patched["status"] = {}
    replaced = custom.replace_namespaced_custom_object(*args, "lan", patched)
    assert replaced["metadata"]["generation"] == 2
    assert replaced["status"]["assignedIPv4"] == 3

    stale = dict(created)
    with pytest.raises(client.ApiException) as info:
        custom.replace_namespaced_custom_object(*args, "lan", stale)
    assert info.value.status == 409
    unversioned = {**replaced, "metadata": {"name": "lan"}}
    with pytest.raises(client.ApiException) as info:
        custom.replace_namespaced_custom_object(*args, "lan", unversioned)
    assert info.value.status == 422

    listed = custom.list_namespaced_custom_object(*args)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["lan"]
    assert listed["metadata"]["resourceVersion"] == kube_api.resource_version
    custom.delete_namespaced_custom_object(*args, "lan")
    assert custom.list_namespaced_custom_object(*args)["items"] == []


@pytest.mark.parametrize(
    "plural",
    [
        "ipaddresspools",
        "l2advertisements",
        "bgpadvertisements",
        "bfdprofiles",
        "communities",
        "servicel2statuses",
        "servicebgpstatuses",
        "configurationstates",
    ],
)
def test_every_metallb_kind_is_served(custom: client.CustomObjectsApi, plural: str) -> None:
    body = {"metadata": {"name": "x"}, "spec": {}}
    custom.create_namespaced_custom_object("metallb.io", "v1beta1", NS, plural, body)
    got = custom.get_namespaced_custom_object("metallb.io", "v1beta1", NS, plural, "x")
    assert got["apiVersion"] == "metallb.io/v1beta1"
    custom.patch_namespaced_custom_object_status("metallb.io", "v1beta1", NS, plural, "x", {"status": {"a": 1}})


def test_bgppeer_versions_share_storage(custom: client.CustomObjectsApi) -> None:
    peer = {"metadata": {"name": "router"}, "spec": {"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.1"}}
    custom.create_namespaced_custom_object("metallb.io", "v1beta2", NS, "bgppeers", peer)
    old = custom.get_namespaced_custom_object("metallb.io", "v1beta1", NS, "bgppeers", "router")
    assert old["apiVersion"] == "metallb.io/v1beta1"
    assert old["kind"] == "BGPPeer"
    assert old["spec"]["peerASN"] == 64501


def test_custom_object_watch(kube_api: KubeApi, custom: client.CustomObjectsApi) -> None:
    start = kube_api.resource_version
    args = ("metallb.io", "v1beta1", NS, "l2advertisements")
    with WatchRecorder(custom.list_namespaced_custom_object, *args, resource_version=start) as rec:
        custom.create_namespaced_custom_object(*args, {"metadata": {"name": "l2"}, "spec": {}})
        custom.patch_namespaced_custom_object_status(*args, "l2", {"status": {"ok": True}})
        custom.delete_namespaced_custom_object(*args, "l2")
        events = rec.take(3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["status"] == {"ok": True}
    assert rec.watch.resource_version == kube_api.resource_version


def test_cluster_custom_object_list(custom: client.CustomObjectsApi) -> None:
    for ns in ("a", "b"):
        custom.create_namespaced_custom_object(
            "metallb.io", "v1beta1", ns, "communities", {"metadata": {"name": "c"}, "spec": {}}
        )
    items = custom.list_cluster_custom_object("metallb.io", "v1beta1", "communities")["items"]
    assert sorted(i["metadata"]["namespace"] for i in items) == ["a", "b"]


def test_endpointslices_by_service_name_label(api_client: client.ApiClient) -> None:
    discovery = client.DiscoveryV1Api(api_client)
    for svc, node in (("web", "n1"), ("web", "n2"), ("db", "n1")):
        discovery.create_namespaced_endpoint_slice(
            "default",
            {
                "metadata": {"generateName": f"{svc}-", "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.0.1"], "nodeName": node, "conditions": {"ready": True}}],
            },
        )
    slices = discovery.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=web")
    assert sorted(s.endpoints[0].node_name for s in slices.items) == ["n1", "n2"]
    assert all(s.metadata.name.startswith("web-") for s in slices.items)


def test_events_both_apis(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    events = client.EventsV1Api(api_client)
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "web."},
            "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
            "reason": "IPAllocated",
            "message": "Assigned IP",
            "type": "Normal",
        },
    )
    now = datetime.datetime.now(datetime.UTC)
    events.create_namespaced_event(
        "default",
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(generate_name="web."),
            event_time=now,
            reason="nodeAssigned",
            action="Announce",
            type="Normal",
            reporting_controller="metallb.io/speaker",
            reporting_instance="n1",
            regarding=client.V1ObjectReference(kind="Service", name="web", namespace="default"),
        ),
    )
    legacy = core.list_namespaced_event("default", field_selector="involvedObject.name=web,reason=IPAllocated")
    assert [e.reason for e in legacy.items] == ["IPAllocated"]
    new = events.list_namespaced_event("default", field_selector="reason=nodeAssigned")
    assert [e.reporting_controller for e in new.items] == ["metallb.io/speaker"]


def test_kubeconfig_connects_an_unchanged_client(kube_api: KubeApi, tmp_path: Path) -> None:
    path = kube_api.kubeconfig(tmp_path / "kubeconfig")
    api = config.new_client_from_config(config_file=str(path))
    with api:
        names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "default" in names and "kube-system" in names


def test_stop_joins_every_thread(core: client.CoreV1Api) -> None:
    before = set(threading.enumerate())
    server = KubeApi(bookmark_interval=0.05)
    with server, server.api_client() as api:
        v1 = client.CoreV1Api(api)
        v1.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
        recorder = WatchRecorder(v1.list_namespaced_config_map, "default", allow_watch_bookmarks=True).start()
        assert server.wait_for_watches(1)
    recorder.wait_ended()
    recorder.stop()
    assert set(threading.enumerate()) <= before
