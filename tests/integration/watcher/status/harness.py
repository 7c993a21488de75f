"""A status writer wired to a real nats-server and the Kubernetes API stand-in, and ways to look."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from schemas.events import Event, ServiceId
from services.common.bus import Bus
from services.watcher.kube import KubeClients
from services.watcher.sightings import Sightings
from services.watcher.status import FEEDS
from services.watcher.status.writer import StatusWriter, StatusWriterSettings
from tests.kubeapi.handle import KubeApi
from tests.kubeapi.store import EventType

NAMESPACE = "metallb-system"
Obj = dict[str, Any]


@dataclass
class Harness:
    bus: Bus
    api: KubeApi
    writer: StatusWriter
    stopping: asyncio.Event
    task: asyncio.Task[None]

    async def publish(self, subject: str, event: Event) -> int:
        return (await self.bus.publish(subject, event)).sequence


@asynccontextmanager
async def running_writer(bus: Bus, api: KubeApi, *, sightings: Sightings | None = None,
                         **settings: Any) -> AsyncIterator[Harness]:
    """Start a writer, wait until its consumers are in place, stop it (promptly) afterwards.
    ``sightings``: what the observe side reads, as the watcher wires it (see ``observing``)."""
    clients = KubeClients.from_api_client(api.api_client())
    stopping = asyncio.Event()
    options = {"retry_delay": 0.05, "max_retry_delay": 0.5, **settings}
    writer = StatusWriter(bus=bus, clients=clients, namespace=NAMESPACE, stopping=stopping,
                          settings=StatusWriterSettings(**options))

    async def run() -> None:
        with sightings.listening(writer.seen) if sightings is not None else contextlib.nullcontext():
            await writer.run()

    task = asyncio.create_task(run())
    try:
        ready = asyncio.create_task(writer.ready.wait())
        done, _ = await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if task in done:
            task.result()
        assert writer.ready.is_set(), "the status writer did not start in time"
        yield Harness(bus, api, writer, stopping, task)
    finally:
        stopping.set()
        await asyncio.wait_for(task, timeout=5)
        clients.close()


async def without_status_durables(bus: Bus) -> None:
    """As before the status writer's first start on a bus provisioned by an older release: its durable
    consumers do not exist yet, so what the streams hold is folded by the rebuild, never told as news."""
    for feed in FEEDS:
        await bus.js.delete_consumer(feed.stream.value, feed.name)


def put_service(api: KubeApi, name: str, namespace: str = "default", **metadata: Any) -> ServiceId:
    obj = api.put_object({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    })
    return ServiceId(namespace=namespace, name=name, uid=obj["metadata"]["uid"])


def objects(api: KubeApi, resource: str, namespace: str | None = None) -> list[Obj]:
    """The objects of ``resource`` as they are now (from the stand-in's change history)."""
    latest: dict[Any, Obj] = {}
    for change in api.history(resource, namespace=namespace):
        if change.type is EventType.DELETED:
            latest.pop(change.key, None)
        else:
            latest[change.key] = change.obj
    return list(latest.values())


def events(api: KubeApi, namespace: str, *, reason: str | None = None, name: str | None = None) -> list[Obj]:
    return [
        event for event in objects(api, "events", namespace)
        if (reason is None or event.get("reason") == reason)
        and (name is None or event["involvedObject"]["name"] == name)
    ]


def ingress(api: KubeApi, name: str, namespace: str = "default") -> list[Obj]:
    obj = api.get_object("services", name, namespace) or {}
    return list(((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


def service_annotations(api: KubeApi, name: str, namespace: str = "default") -> dict[str, str]:
    obj = api.get_object("services", name, namespace) or {}
    return dict(obj.get("metadata", {}).get("annotations") or {})
