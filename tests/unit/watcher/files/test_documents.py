"""Files → objects: multi-document YAML, kinds sorted into resources, uids and versions assigned."""

from __future__ import annotations

from services.watcher.files.documents import (
    Document,
    Problem,
    Resource,
    content_version,
    derived_uid,
    load_documents,
    parse_documents,
    resource_of,
)

MANIFEST = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer}
---
# a comment-only document is nothing
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan}
spec: {addresses: [192.168.10.0/24]}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: node1, namespace: ignored}}
- {apiVersion: apps/v1, kind: Deployment, metadata: {name: web, namespace: default}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-proxy, namespace: kube-system}
data: {config.conf: "mode: ipvs"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other, namespace: kube-system}
"""


def load(text: str) -> dict[Resource, list[dict[str, object]]]:
    documents, skipped = parse_documents(text, origin="a.yaml")
    assert skipped == []
    return load_documents(documents, config_namespace="metallb-system").objects


def meta(obj: dict[str, object]) -> dict[str, str]:
    value = obj["metadata"]
    assert isinstance(value, dict)
    return value


def test_kinds_go_to_their_resources_and_the_rest_is_ignored() -> None:
    objects = load(MANIFEST)
    assert [meta(o)["name"] for o in objects[Resource.SERVICES]] == ["web"]
    assert [meta(o)["name"] for o in objects[Resource.IP_ADDRESS_POOLS]] == ["lan"]
    assert [meta(o)["name"] for o in objects[Resource.NODES]] == ["node1"]
    assert [meta(o)["name"] for o in objects[Resource.KUBE_PROXY]] == ["kube-proxy"]
    assert sum(len(items) for items in objects.values()) == 4  # the Deployment and other ConfigMap are not read


def test_namespaces_default_as_kubectl_apply_would_and_config_goes_to_the_config_namespace() -> None:
    objects = load(MANIFEST)
    assert meta(objects[Resource.SERVICES][0])["namespace"] == "default"
    assert meta(objects[Resource.IP_ADDRESS_POOLS][0])["namespace"] == "metallb-system"
    assert "namespace" not in meta(objects[Resource.NODES][0])  # cluster-scoped


def test_uid_follows_the_name_and_version_follows_the_content() -> None:
    first = load(MANIFEST)[Resource.SERVICES][0]
    again = load(MANIFEST)[Resource.SERVICES][0]
    edited = load(MANIFEST.replace("type: LoadBalancer", "type: ClusterIP"))[Resource.SERVICES][0]
    assert meta(first)["uid"] == meta(again)["uid"] == meta(edited)["uid"] == derived_uid("Service", "default", "web")
    assert meta(first)["resourceVersion"] == meta(again)["resourceVersion"] == content_version(first)
    assert meta(edited)["resourceVersion"] != meta(first)["resourceVersion"]


def test_a_uid_written_in_the_file_is_kept() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, uid: given}\n"
    assert meta(load(text)[Resource.SERVICES][0])["uid"] == "given"


def test_bad_documents_are_reported_and_the_rest_still_counts() -> None:
    documents, skipped = parse_documents("kind: Service\nmetadata: {}\n---\n- a list\n---\n"
                                         "apiVersion: v1\nkind: Node\nmetadata: {name: n}\n", origin="b.yaml")
    assert [s.problem for s in skipped] == [Problem.NO_NAME, Problem.NOT_AN_OBJECT]
    assert [d.obj["kind"] for d in documents] == ["Node"]
    assert parse_documents("a: [", origin="c.yaml")[1][0].problem is Problem.UNREADABLE_YAML


def test_the_later_of_two_copies_wins() -> None:
    first = Document("a.yaml#1", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                  "spec": {"type": "ClusterIP"}})
    second = Document("b.yaml#1", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                   "spec": {"type": "LoadBalancer"}})
    loaded = load_documents([first, second], config_namespace="metallb-system")
    assert [o["spec"] for o in loaded.objects[Resource.SERVICES]] == [{"type": "LoadBalancer"}]
    assert [s.problem for s in loaded.skipped] == [Problem.DUPLICATE]


def test_metallb_kinds_need_the_metallb_group() -> None:
    assert resource_of({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer"}) is Resource.BGP_PEERS
    assert resource_of({"apiVersion": "example.com/v1", "kind": "BGPPeer"}) is None
    assert resource_of({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice"}) is Resource.ENDPOINT_SLICES
