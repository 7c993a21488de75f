"""A list is folded a page at a time, and the relist keeps its meaning: what it lacks is tombstoned, what
changed is published again, and nothing else is."""

from __future__ import annotations

import dataclasses

from schemas.events import ObjectDeleted, ObjectKind, ServiceObserved
from services.common.bus import Bus
from services.common.subjects import k8s_subject
from tests.integration.watcher.helpers import FAST, observing, recording, service, stored
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

IN_PAGES_OF_TWO = dataclasses.replace(FAST, list_page=2)


def _svc(name: str) -> str:
    return k8s_subject(ObjectKind.SERVICE, "default", name)


async def test_a_relist_in_pages_tombstones_what_it_lacks_and_publishes_only_what_changed(
    bus: Bus, kube_api: KubeApi
) -> None:
    for index in range(7):
        kube_api.put_object(service(f"svc-{index}", **{"metallb.io/address-pool": "lan"}))
    async with observing(bus, kube_api, settings=IN_PAGES_OF_TWO):
        pass
    assert sorted(await stored(bus, ObjectKind.SERVICE)) == sorted(_svc(f"svc-{i}") for i in range(7))

    # while nobody watches: one Service deleted from the first page, one from the last, one changed between
    kube_api.delete_object("services", "svc-0", "default")
    kube_api.delete_object("services", "svc-6", "default")
    changed = kube_api.get_object("services", "svc-3", "default")
    assert changed is not None
    changed["metadata"]["annotations"]["metallb.io/address-pool"] = "wan"
    kube_api.put_object(changed)

    async with recording(bus) as recorder, observing(bus, kube_api, settings=IN_PAGES_OF_TWO):
        await async_wait_until(lambda: len(recorder.messages) == 3, what="two tombstones and one change")
    published = dict(recorder.messages)
    assert sorted(published) == sorted([_svc("svc-0"), _svc("svc-3"), _svc("svc-6")])
    for gone in ("svc-0", "svc-6"):
        tombstone = published[_svc(gone)]
        assert isinstance(tombstone, ObjectDeleted) and tombstone.name == gone
    again = published[_svc("svc-3")]
    assert isinstance(again, ServiceObserved) and again.annotations["metallb.io/address-pool"] == "wan"
    now = await stored(bus, ObjectKind.SERVICE)
    assert sorted(s for s, event in now.items() if isinstance(event, ServiceObserved)) == sorted(
        _svc(f"svc-{i}") for i in range(1, 6)
    )

    async with recording(bus) as recorder, observing(bus, kube_api, settings=IN_PAGES_OF_TWO):
        pass
    assert recorder.messages == [], "a relist of an unchanged world published something"
