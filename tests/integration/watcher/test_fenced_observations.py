"""A watcher that lost its leadership cannot overwrite a newer observation: every publish is fenced on the
sequence its subject had when this watcher last read or wrote it."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.events import NodeObserved, ObjectKind
from services.common.bus import Bus
from services.common.errors import Conflict
from services.common.subjects import StreamName, k8s_subject
from services.watcher.observe.projection import ObjectProjection
from services.watcher.observe.publishing import ProjectionPublisher
from services.watcher.observe.translate import node_observed

SUBJECT = k8s_subject(ObjectKind.NODE, "", "n1")


def node(version: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "uid": "uid-n1", "resourceVersion": version, "labels": labels}}


def watcher(bus: Bus) -> ProjectionPublisher:
    def fail(obj: object, error: Exception) -> None:
        raise error

    return ProjectionPublisher(projection=ObjectProjection(ObjectKind.NODE, node_observed, on_error=fail), bus=bus)


async def saw(publisher: ProjectionPublisher, obj: dict[str, Any]) -> None:
    """The watcher's watch brings ``obj``: it publishes what changed."""
    changed = publisher.projection.apply("MODIFIED", obj)
    await publisher.publish(publisher.changes(changed, trigger=obj["metadata"]["resourceVersion"]))


async def labels_held(bus: Bus) -> dict[str, str]:
    held = await bus.last_value(StreamName.K8S, SUBJECT)
    assert held is not None and isinstance(held.event, NodeObserved)
    return dict(held.event.labels)


async def test_a_deposed_watchers_late_observation_is_refused_and_the_leaders_stays(bus: Bus) -> None:
    old, new = watcher(bus), watcher(bus)
    await saw(old, node("5", zone="a"))  # the old leader publishes; then loses its leadership unaware
    await new.read_stored()  # the new leader reads the stream, then observes a newer version
    await saw(new, node("9", zone="b"))
    with pytest.raises(Conflict):
        await saw(old, node("7", zone="stale"))  # a change the old leader still had buffered
    assert await labels_held(bus) == {"zone": "b"}
    await old.read_stored()  # once it reads the stream again, it writes on what the stream holds
    await saw(old, node("11", zone="c"))
    assert await labels_held(bus) == {"zone": "c"}


async def test_two_versions_of_one_object_in_one_batch_both_land(bus: Bus) -> None:
    publisher = watcher(bus)
    batch = []
    for version, zone in (("3", "a"), ("4", "b")):
        changed = publisher.projection.apply("MODIFIED", node(version, zone=zone))
        batch += publisher.changes(changed, trigger=version)
    await publisher.publish(batch)
    versions = [r.event.ref.resource_version async for r in bus.read(StreamName.K8S, subjects=[SUBJECT])
                if isinstance(r.event, NodeObserved)]
    assert versions == ["4"]  # the stream keeps the newest per subject; neither publish was refused
    assert await labels_held(bus) == {"zone": "b"}
