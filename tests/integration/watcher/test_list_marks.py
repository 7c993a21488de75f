"""The watcher says how complete ``K8S`` is: each kind's list marked begun and complete (``KindListed``), a lost
stream noticed and listed again, and a relist that lands whatever ids the server still remembers."""

from __future__ import annotations

import pytest

from schemas.events import Event, KindListed, ObjectDeleted, ObjectKind, ServiceObserved
from services.common.bus import Bus
from services.common.provision import provision
from services.common.subjects import StreamName, k8s_listed_subject, k8s_subject
from services.watcher.observe import marks
from tests.integration.watcher.helpers import observing, recording, service, wait_stored
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

WEB = k8s_subject(ObjectKind.SERVICE, "default", "web")


async def mark(bus: Bus, kind: ObjectKind) -> KindListed | None:
    held = await bus.last_value(StreamName.K8S, k8s_listed_subject(kind))
    return held.event if held is not None and isinstance(held.event, KindListed) else None


async def lose_k8s(bus: Bus) -> None:
    await bus.js.delete_stream(StreamName.K8S.value)
    await provision(bus)


async def test_every_kind_is_marked_begun_before_any_object_and_complete_after_its_list(
    bus: Bus, kube_api: KubeApi
) -> None:
    kube_api.put_object(service("web"))
    async with recording(bus) as recorder, observing(bus, kube_api):
        for kind in (ObjectKind.SERVICE, ObjectKind.ENDPOINTS, ObjectKind.NODE, ObjectKind.IP_ADDRESS_POOL):
            await async_wait_until(lambda k=kind: _complete(bus, k), what=f"{kind.value} marked complete")
        services = recorder.on(k8s_listed_subject(ObjectKind.SERVICE))
        assert [m.complete for m in services if isinstance(m, KindListed)] == [False, True]
        order = [subject for subject, _ in recorder.messages]
        assert order.index(k8s_listed_subject(ObjectKind.SERVICE)) < order.index(WEB)
        assert (await mark(bus, ObjectKind.SERVICE)) == KindListed(
            kind=ObjectKind.SERVICE, complete=True, resource_version=_listed_version(services), objects=1)
    assert await mark(bus, ObjectKind.SECRET) is None  # the SECRETS kinds are not ipam's: not marked
    async with recording(bus) as recorder, observing(bus, kube_api):
        pass
    assert recorder.messages == [], "a term that finds everything in place publishes nothing, marks neither"


async def test_a_lost_stream_is_marked_begun_and_listed_again_by_a_running_watcher(
    bus: Bus, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(marks, "CHECK_EVERY", 0.2)
    kube_api.put_object(service("web"))
    async with observing(bus, kube_api):
        await async_wait_until(lambda: _complete(bus, ObjectKind.SERVICE), what="the first list marked")
        await lose_k8s(bus)
        await wait_stored(bus, ObjectKind.SERVICE, "default", "web", lambda e: isinstance(e, ServiceObserved),
                          "web in the stream again")
        await async_wait_until(lambda: _complete(bus, ObjectKind.SERVICE), what="the list marked complete again")


async def test_a_relist_lands_whatever_message_ids_the_server_still_remembers(bus: Bus, kube_api: KubeApi) -> None:
    web = kube_api.put_object(service("web"))
    async with observing(bus, kube_api):
        pass
    await lose_k8s(bus)
    # the new stream remembers the id the watcher published web's version with (as a stream restored or
    # purged within its duplicate window does): a relist that used it again would be dropped as a repeat
    metadata = web["metadata"]
    ack = await bus.publish(k8s_subject(ObjectKind.SERVICE, "default", "decoy"),
                            ObjectDeleted(kind=ObjectKind.SERVICE, namespace="default", name="decoy"),
                            msg_id=f"{metadata['uid']}/{metadata['resourceVersion']}")
    assert not ack.duplicate
    async with observing(bus, kube_api):
        await wait_stored(bus, ObjectKind.SERVICE, "default", "web", lambda e: isinstance(e, ServiceObserved),
                          "web in the new stream")


async def _complete(bus: Bus, kind: ObjectKind) -> bool:
    found = await mark(bus, kind)
    return found is not None and found.complete


def _listed_version(messages: list[Event]) -> str:
    return next(m.resource_version for m in messages if isinstance(m, KindListed) and m.complete)

