"""CRUD through the official client: resourceVersion, conflicts, generation, generateName, patches."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.kubeapi import KubeApi


def _service(name: str, **labels: str) -> dict:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "selector": {"app": name}},
    }


def test_crud_bumps_one_global_resource_version(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    start = int(kube_api.resource_version)
    created = core.create_namespaced_service("default", _service("web"))
    assert int(created.metadata.resource_version) == start + 1
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.generation == 1
    assert created.spec.cluster_ip and created.spec.ip_families == ["IPv4"]

    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert kube_api.resource_version == str(start + 2)

    got = core.read_namespaced_service("web", "default")
    assert got.metadata.resource_version == created.metadata.resource_version

    got.spec.ports[0].port = 8080
    updated = core.replace_namespaced_service("web", "default", got)
    assert int(updated.metadata.resource_version) == start + 3
    assert updated.metadata.generation == 2
    assert updated.metadata.uid == created.metadata.uid

    listed = core.list_namespaced_service("default")
    assert listed.metadata.resource_version == str(start + 3)
    assert [s.metadata.name for s in listed.items] == ["web"]

    deleted = core.delete_namespaced_service("web", "default")
    assert deleted.metadata.name == "web"
    assert kube_api.resource_version == str(start + 4)
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_service("web", "default")
    assert info.value.status == 404


def test_create_twice_is_already_exists(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    assert info.value.status == 409
    assert '"reason": "AlreadyExists"' in info.value.body


def test_stale_update_is_conflict(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    second = core.read_namespaced_config_map("cm", "default")
    second.data = {"a": "2"}
    core.replace_namespaced_config_map("cm", "default", second)

    first.data = {"a": "3"}
    with pytest.raises(client.ApiException) as info:
        core.replace_namespaced_config_map("cm", "default", first)
    assert info.value.status == 409
    assert '"reason": "Conflict"' in info.value.body
    assert core.read_namespaced_config_map("cm", "default").data == {"a": "2"}


def test_no_op_update_keeps_resource_version(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    again = core.replace_namespaced_config_map("cm", "default", cm)
    assert again.metadata.resource_version == cm.metadata.resource_version
    assert kube_api.resource_version == cm.metadata.resource_version


def test_generate_name(core: client.CoreV1Api) -> None:
    names = {
        core.create_namespaced_secret("default", {"metadata": {"generateName": "tok-"}}).metadata.name for _ in range(5)
    }
    assert len(names) == 5
    assert all(n.startswith("tok-") and len(n) == len("tok-") + 5 for n in names)


def test_status_subresource_is_isolated(core: client.CoreV1Api) -> None:
    svc = core.create_namespaced_service(
        "default", {**_service("web"), "status": {"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}]}}}
    )
    assert not svc.status or not svc.status.load_balancer or not svc.status.load_balancer.ingress

    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.5", "ipMode": "VIP"}]}}}
    patched = core.patch_namespaced_service_status("web", "default", {**ingress, "spec": {"type": "ClusterIP"}})
    assert patched.status.load_balancer.ingress[0].ip == "192.168.10.5"
    assert patched.spec.type == "LoadBalancer"
    assert patched.metadata.generation == 1

    patched.spec.ports[0].port = 81
    patched.status.load_balancer.ingress = []
    replaced = core.replace_namespaced_service("web", "default", patched)
    assert replaced.metadata.generation == 2
    assert replaced.status.load_balancer.ingress[0].ip == "192.168.10.5"

    replaced.status.load_balancer.ingress = None
    cleared = core.replace_namespaced_service_status("web", "default", replaced)
    assert not cleared.status.load_balancer.ingress
    assert cleared.spec.ports[0].port == 81


def test_status_write_takes_metadata_of_builtin_kinds_only(core: client.CoreV1Api) -> None:
    """A Service's status strategy resets only its spec: annotations written with its status are kept. A custom
    resource's status write changes nothing but its status."""
    core.create_namespaced_service("default", _service("web"))
    written = core.patch_namespaced_service_status("web", "default", {
        "metadata": {"annotations": {"note": "kept"}},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.168.10.5"}]}},
        "spec": {"type": "ClusterIP"},
    })
    assert written.metadata.annotations == {"note": "kept"}
    assert written.spec.type == "LoadBalancer" and written.status.load_balancer.ingress[0].ip == "192.168.10.5"
    assert core.read_namespaced_service("web", "default").metadata.annotations == {"note": "kept"}

    custom = client.CustomObjectsApi(core.api_client)
    where = ("metallb.io", "v1beta1", "default", "ipaddresspools")
    custom.create_namespaced_custom_object(*where, {
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool", "metadata": {"name": "lan"},
        "spec": {"addresses": ["192.168.10.0/24"]}})
    pool = custom.patch_namespaced_custom_object_status(*where, "lan", {
        "metadata": {"annotations": {"note": "dropped"}}, "status": {"assignedIPv4": 1}})
    assert pool["status"] == {"assignedIPv4": 1}
    assert "note" not in (pool["metadata"].get("annotations") or {})


def test_status_write_with_stale_version_conflicts(core: client.CoreV1Api) -> None:
    svc = core.create_namespaced_service("default", _service("web"))
    core.patch_namespaced_service("web", "default", {"metadata": {"annotations": {"x": "y"}}})
    svc.status = client.V1ServiceStatus(load_balancer=client.V1LoadBalancerStatus(ingress=[]))
    with pytest.raises(client.ApiException) as info:
        core.replace_namespaced_service_status("web", "default", svc)
    assert info.value.status == 409
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_service_status(
            "web", "default", {"metadata": {"resourceVersion": svc.metadata.resource_version}, "status": {}}
        )
    assert info.value.status == 409


def test_patches(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm", "labels": {"a": "1"}}, "data": {"k": "v"}})
    merged = core.patch_namespaced_config_map("cm", "default", {"metadata": {"labels": {"a": None, "b": "2"}}})
    assert merged.metadata.labels == {"b": "2"}
    ops = [{"op": "add", "path": "/data/k2", "value": "v2"}, {"op": "remove", "path": "/data/k"}]
    patched = core.patch_namespaced_config_map("cm", "default", ops)
    assert patched.data == {"k2": "v2"}
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_config_map("cm", "default", [{"op": "test", "path": "/data/k2", "value": "no"}])
    assert info.value.status == 422
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_config_map("nope", "default", {"data": {}})
    assert info.value.status == 404


def test_finalizers_hold_deletion(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("cm", "default")
    held = core.read_namespaced_config_map("cm", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("cm", "default", {"metadata": {"finalizers": None}})
    assert kube_api.get_object("configmaps", "cm") is None


def test_delete_preconditions(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    core.patch_namespaced_config_map("cm", "default", {"data": {"a": "b"}})
    with pytest.raises(client.ApiException) as info:
        core.delete_namespaced_config_map(
            "cm",
            "default",
            body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(resource_version=cm.metadata.resource_version)
            ),
        )
    assert info.value.status == 409


def test_cluster_scoped_and_cross_namespace(core: client.CoreV1Api) -> None:
    core.create_node({"metadata": {"name": "node-a", "labels": {"zone": "a"}}})
    core.create_namespace({"metadata": {"name": "apps"}})
    core.create_namespaced_service("apps", _service("one"))
    core.create_namespaced_service("default", _service("two"))
    assert [n.metadata.name for n in core.list_node().items] == ["node-a"]
    assert [n.metadata.namespace for n in core.list_node().items] == [None]
    everywhere = core.list_service_for_all_namespaces()
    assert sorted((s.metadata.namespace, s.metadata.name) for s in everywhere.items) == [
        ("apps", "one"),
        ("default", "two"),
    ]
    assert [s.metadata.name for s in core.list_namespaced_service("apps").items] == ["one"]
    core.delete_namespace("apps")
    assert [s.metadata.name for s in core.list_service_for_all_namespaces().items] == ["two"]


def test_fail_next_injects_one_error(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    core.create_namespaced_service("default", _service("web"))
    kube_api.fail_next("patch", "services/status", 500)
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_service_status("web", "default", {"status": {}})
    assert info.value.status == 500
    core.patch_namespaced_service_status("web", "default", {"status": {}})

    kube_api.fail_next("update", "services", 409, times=2)
    svc = core.read_namespaced_service("web", "default")
    for _ in range(2):
        with pytest.raises(client.ApiException) as info:
            core.replace_namespaced_service("web", "default", svc)
        assert info.value.status == 409
    core.replace_namespaced_service("web", "default", svc)
    assert [r.code for r in kube_api.requests("update", "services")] == [409, 409, 200]
    assert [r.code for r in kube_api.requests("patch", "services", subresource="status")] == [500, 200]


def test_list_pages_and_exact_versions(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
    at = kube_api.resource_version
    first = core.list_namespaced_config_map("default", limit=2)
    core.delete_namespaced_config_map("cm-4", "default")
    names = [c.metadata.name for c in first.items]
    token = first.metadata._continue
    while token:
        page = core.list_namespaced_config_map("default", limit=2, _continue=token)
        assert page.metadata.resource_version == at
        names += [c.metadata.name for c in page.items]
        token = page.metadata._continue
    assert names == [f"cm-{i}" for i in range(5)]

    past = core.list_namespaced_config_map("default", resource_version=at, resource_version_match="Exact")
    assert len(past.items) == 5
    kube_api.compact()
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_config_map("default", resource_version=at, resource_version_match="Exact")
    assert info.value.status == 410
    assert len(core.list_namespaced_config_map("default", resource_version="0").items) == 4


def test_list_pages_across_namespaces_show_the_first_pages_version(core: client.CoreV1Api) -> None:
    """Pages follow (namespace, name), even where one namespace's name begins another's ("a", "a-b"), and
    every page shows the objects as they were at the first page: added, deleted and changed ones alike."""
    for namespace in ("a", "a-b", "b"):
        core.create_namespace({"metadata": {"name": namespace}})
        for name in ("x", "y", "z"):
            core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"v": "1"}})
    first = core.list_config_map_for_all_namespaces(limit=2)
    seen = [(c.metadata.namespace, c.metadata.name, c.data) for c in first.items]
    core.delete_namespaced_config_map("x", "a-b")
    core.create_namespaced_config_map("a-b", {"metadata": {"name": "w"}})
    core.patch_namespaced_config_map("z", "b", {"data": {"v": "2"}})
    token = first.metadata._continue
    while token:
        page = core.list_config_map_for_all_namespaces(limit=2, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        seen += [(c.metadata.namespace, c.metadata.name, c.data) for c in page.items]
        token = page.metadata._continue
    assert seen == [(namespace, name, {"v": "1"}) for namespace in ("a", "a-b", "b") for name in ("x", "y", "z")]
    now = core.list_config_map_for_all_namespaces()
    assert [(c.metadata.namespace, c.metadata.name) for c in now.items] == [
        ("a", "x"), ("a", "y"), ("a", "z"), ("a-b", "w"), ("a-b", "y"), ("a-b", "z"), ("b", "x"), ("b", "y"),
        ("b", "z")]


def test_direct_helpers(kube_api: KubeApi, core: client.CoreV1Api) -> None:
    node = kube_api.put_object(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1"},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]},
        }
    )
    assert core.read_node("n1").status.conditions[0].type == "NetworkUnavailable"
    assert kube_api.get_object("nodes", "n1") == node
    final = kube_api.delete_object("nodes", "n1")
    assert final is not None and int(final["metadata"]["resourceVersion"]) > int(node["metadata"]["resourceVersion"])
    assert [c.type.value for c in kube_api.history("nodes", "n1")] == ["ADDED", "DELETED"]
