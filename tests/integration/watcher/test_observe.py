"""The observe side against the API stand-in and a real nats-server: lists, watches, resumes, relists,
tombstones and idempotent restarts."""

from __future__ import annotations

import pytest

from schemas.events import NodeObserved, ObjectDeleted, ObjectKind, ServiceObserved
from services.common.bus import Bus
from services.common.subjects import k8s_subject
from services.watcher.annotations import POOL_ANNOTATION
from services.watcher.observe import metrics
from tests.integration.watcher.helpers import observing, recording, service, stored, wait_stored
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until


def _svc(name: str, namespace: str = "default") -> str:
    return k8s_subject(ObjectKind.SERVICE, namespace, name)


def _node(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


async def test_initial_list_then_a_change(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object(service("web", **{"metallb.io/address-pool": "lan", "other.io/x": "y"}))
    async with recording(bus) as recorder, observing(bus, kube_api):
        web = (await stored(bus, ObjectKind.SERVICE))[_svc("web")]
        assert isinstance(web, ServiceObserved)
        assert web.annotations == {"metallb.io/address-pool": "lan"}
        namespaces = await stored(bus, ObjectKind.NAMESPACE)
        assert k8s_subject(ObjectKind.NAMESPACE, "", "kube-system") in namespaces
        obj = kube_api.get_object("services", "web", "default")
        assert obj is not None
        obj["metadata"]["annotations"]["metallb.io/address-pool"] = "wan"
        kube_api.put_object(obj)
        await wait_stored(
            bus, ObjectKind.SERVICE, "default", "web",
            lambda e: isinstance(e, ServiceObserved) and e.annotations.get("metallb.io/address-pool") == "wan",
            "the changed service",
        )
        assert len(recorder.on(_svc("web"))) == 2


async def test_a_change_of_nothing_published_is_not_published_again(bus: Bus, kube_api: KubeApi) -> None:
    """The pool annotation the status writer puts on a Service (and annotations of other components) is no
    input: that change reaches no consumer; the next change that is one is published with its version."""
    kube_api.put_object(service("web", **{"metallb.io/address-pool": "lan"}))
    async with recording(bus) as recorder, observing(bus, kube_api):
        await wait_stored(bus, ObjectKind.SERVICE, "default", "web", lambda e: True, "the service")
        obj = kube_api.get_object("services", "web", "default")
        assert obj is not None
        obj["metadata"]["annotations"].update({POOL_ANNOTATION: "lan", "other.io/x": "y"})
        kube_api.put_object(obj)
        obj = kube_api.get_object("services", "web", "default")
        assert obj is not None
        obj["metadata"]["labels"] = {"tier": "front"}
        kube_api.put_object(obj)
        obj = kube_api.get_object("services", "web", "default")
        assert obj is not None
        labelled = obj["metadata"]["resourceVersion"]
        await wait_stored(bus, ObjectKind.SERVICE, "default", "web",
                          lambda e: isinstance(e, ServiceObserved) and e.labels == {"tier": "front"}, "the labels")
        versions = [e.ref.resource_version for e in recorder.on(_svc("web")) if isinstance(e, ServiceObserved)]
        assert len(versions) == 2 and versions[-1] == labelled, versions


@pytest.mark.parametrize("abrupt", [True, False])
async def test_resume_after_dropped_watches_loses_and_duplicates_nothing(
    bus: Bus, kube_api: KubeApi, abrupt: bool
) -> None:
    async with recording(bus) as recorder, observing(bus, kube_api):
        for index in range(60):
            kube_api.put_object(service(f"svc-{index}"))
            if index % 15 == 7:
                kube_api.drop_watches(abrupt=abrupt)
        for index in range(0, 60, 2):  # and a second version of every other one
            obj = kube_api.get_object("services", f"svc-{index}", "default")
            assert obj is not None
            obj["metadata"]["labels"] = {"round": "2"}
            kube_api.put_object(obj)
            if index % 20 == 10:
                kube_api.drop_watches(abrupt=abrupt)
        kube_api.put_object(service("last"))
        await wait_stored(bus, ObjectKind.SERVICE, "default", "last", lambda e: True, "the last service")
        for index in range(60):
            versions = [e.ref.resource_version for e in recorder.on(_svc(f"svc-{index}"))
                        if isinstance(e, ServiceObserved)]
            assert len(versions) == (2 if index % 2 == 0 else 1), (index, versions)
            assert versions == sorted(versions, key=int)
            current = kube_api.get_object("services", f"svc-{index}", "default")
            assert current is not None and versions[-1] == current["metadata"]["resourceVersion"]


async def test_relist_after_410_publishes_what_the_gap_hid(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object(service("stays"))
    kube_api.put_object(service("goes"))
    before = metrics.RELISTS.labels("service", "expired")._value.get()
    async with recording(bus) as recorder, observing(bus, kube_api):
        with kube_api.store.cond:  # atomically: changes the watch has not seen, history gone, watches cut
            kube_api.put_object(service("new"))
            kube_api.delete_object("services", "goes", "default")
            kube_api.compact()
            kube_api.drop_watches()
        await wait_stored(bus, ObjectKind.SERVICE, "default", "new", lambda e: True, "the service made in the gap")
        await wait_stored(bus, ObjectKind.SERVICE, "default", "goes", lambda e: isinstance(e, ObjectDeleted),
                          "the tombstone of the service deleted in the gap")
        assert metrics.RELISTS.labels("service", "expired")._value.get() > before
        assert len(recorder.on(_svc("stays"))) == 1  # the relist republished nothing it had


async def test_deletions_while_stopped_become_tombstones_and_a_restart_publishes_nothing_new(
    bus: Bus, kube_api: KubeApi
) -> None:
    for name in ("a", "b", "c"):
        kube_api.put_object(service(name))
    kube_api.put_object(_node("node-1", zone="x"))
    async with observing(bus, kube_api):
        pass
    async with recording(bus) as recorder, observing(bus, kube_api):
        pass
    assert recorder.messages == [], "a plain restart republished something"

    kube_api.delete_object("services", "b", "default")
    node = kube_api.get_object("nodes", "node-1")
    assert node is not None
    node["metadata"]["labels"]["zone"] = "y"
    kube_api.put_object(node)
    async with recording(bus) as recorder, observing(bus, kube_api):
        await async_wait_until(lambda: len(recorder.messages) == 2, what="the two changes made while stopped")
    published = dict(recorder.messages)
    tombstone = published[_svc("b")]
    assert isinstance(tombstone, ObjectDeleted) and tombstone.kind is ObjectKind.SERVICE and tombstone.uid
    relabelled = published[k8s_subject(ObjectKind.NODE, "", "node-1")]
    assert isinstance(relabelled, NodeObserved) and relabelled.labels == {"zone": "y"}

    async with recording(bus) as recorder, observing(bus, kube_api):
        pass
    assert recorder.messages == [], "a restart after the tombstone republished something"


async def test_a_deleted_object_becomes_a_tombstone_while_watching(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object(_node("node-1"))
    async with observing(bus, kube_api):
        kube_api.delete_object("nodes", "node-1")
        deleted = await wait_stored(bus, ObjectKind.NODE, "", "node-1", lambda e: isinstance(e, ObjectDeleted),
                                    "the node's tombstone")
        assert isinstance(deleted, ObjectDeleted) and deleted.name == "node-1"


async def test_api_errors_are_retried(bus: Bus, kube_api: KubeApi) -> None:
    kube_api.put_object(_node("node-1"))
    kube_api.fail_next("list", "nodes", 500, times=2)
    kube_api.fail_next("watch", "services", 503, times=2)
    async with observing(bus, kube_api):
        assert k8s_subject(ObjectKind.NODE, "", "node-1") in await stored(bus, ObjectKind.NODE)
        kube_api.put_object(service("after-errors"))
        await wait_stored(bus, ObjectKind.SERVICE, "default", "after-errors", lambda e: True,
                          "a service observed after failed watches")
