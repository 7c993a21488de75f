"""Running the observe side against the API stand-in, and reading what it put on the bus."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg

from schemas.events import Event, ObjectKind
from schemas.events.codec import decode
from services.common.bus import Bus
from services.common.subjects import k8s_kind_filter, k8s_subject, observed_stream
from services.watcher.kube import KubeClients
from services.watcher.observe import Observers, ReflectorSettings, build_observers
from services.watcher.service import observe_clients
from services.watcher.sightings import Sightings
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

NAMESPACE = "metallb-system"
FAST = ReflectorSettings(backoff_initial=0.05, backoff_max=0.5, absent_retry=0.5, watch_timeout_seconds=30)


@dataclass
class Recorder:
    """Every message published on ``k8s.>``, in order — a plain subscription, so it also sees a
    publish the stream would drop as a duplicate (the watcher should not even send one)."""

    messages: list[tuple[str, Event]] = field(default_factory=list)

    async def on_message(self, msg: Msg) -> None:
        self.messages.append((msg.subject, decode(msg.data).event))

    def on(self, subject: str) -> list[Event]:
        return [event for s, event in self.messages if s == subject]

    def subjects(self, kind: ObjectKind) -> set[str]:
        prefix = k8s_kind_filter(kind)[:-1]
        return {s for s, _ in self.messages if s.startswith(prefix)}


@contextlib.asynccontextmanager
async def recording(bus: Bus) -> AsyncIterator[Recorder]:
    recorder = Recorder()
    subscription = await bus.client.subscribe("k8s.>", cb=recorder.on_message)
    await bus.client.flush()
    try:
        yield recorder
    finally:
        await subscription.unsubscribe()


@contextlib.asynccontextmanager
async def observing(
    bus: Bus, kube_api: KubeApi, *, namespace: str = NAMESPACE, settings: ReflectorSettings = FAST,
    sightings: Sightings | None = None,
) -> AsyncIterator[Observers]:
    """The observe side running until the block ends; entered once every initial list is published.
    ``sightings``: told the Services and pools read, as the watcher tells its status writer."""
    clients = observe_clients(KubeClients.from_api_client(kube_api.api_client()))
    observers = build_observers(bus=bus, clients=clients, namespace=namespace, settings=settings,
                                seen=sightings.tell if sightings is not None else None)
    task = asyncio.create_task(observers.run())
    try:
        await asyncio.wait_for(observers.wait_synced(), 20)
        yield observers
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(clients.close)


async def stored(bus: Bus, kind: ObjectKind) -> dict[str, Event]:
    """The current world of one kind: last value per subject in its stream (K8S, or SECRETS)."""
    return {
        r.subject: r.event
        async for r in bus.read(observed_stream(kind), subjects=[k8s_kind_filter(kind)], last_per_subject=True)
    }


async def wait_stored(bus: Bus, kind: ObjectKind, namespace: str, name: str, check: Any, what: str) -> Event:
    subject = k8s_subject(kind, namespace, name)
    found: list[Event] = []

    async def holds() -> bool:
        value = await bus.last_value(observed_stream(kind), subject)
        if value is not None and check(value.event):
            found.append(value.event)
            return True
        return False

    await async_wait_until(holds, timeout=10, what=what)
    return found[-1]


def service(name: str, namespace: str = "default", **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}},
    }


def http_ready(port: int) -> bool:
    """Whether a watcher process serving its probes on ``port`` answers /readyz with 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False
