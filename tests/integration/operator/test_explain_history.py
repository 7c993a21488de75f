"""`metalbus explain` and `metalbus history` on a running pipeline: YAML files → watcher (directory source) →
ipam → a heartbeating node that reports what it answers; the assertions read what a user reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import yaml
from rich.console import Console

from schemas.events import AnnouncementMode, AnnouncementReported, L2PlacementDecided, ServiceId
from services.announcer.heartbeat import send_heartbeats
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.subjects import IPAM_PLACEMENTS, StreamName, announce_subject
from services.operator.explain import show_explain
from services.operator.history import show_history
from tests.integration.ipam.test_ipam_service import replica
from tests.integration.watcher.files.test_directory_source import CONFIG, watching
from tests.waiting import async_wait_until

CLUSTER = """\
apiVersion: v1
kind: Node
metadata: {name: node-a}
status: {addresses: [{type: InternalIP, address: 192.168.10.2}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: [10.244.0.5], conditions: {ready: true}, nodeName: node-a}]
"""


def service_yaml(ip: str | None = None) -> str:
    annotations = {"metallb.io/loadBalancerIPs": ip} if ip else {}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], "ipFamilies": ["IPv4"]},
    })


@contextlib.asynccontextmanager
async def heartbeating(bus: Bus, node: str) -> AsyncIterator[None]:
    stopping = asyncio.Event()
    task = asyncio.create_task(send_heartbeats(bus, node=node, instance=f"{node}-1", stopping=stopping))
    try:
        yield
    finally:
        stopping.set()
        await task


async def placements(bus: Bus) -> dict[str, tuple[str, int]]:
    found = {}
    async for received in bus.read(StreamName.IPAM, subjects=[IPAM_PLACEMENTS], last_per_subject=True):
        if isinstance(received.event, L2PlacementDecided):
            found[received.event.ip] = (received.event.node, received.sequence)
    return found


async def report(bus: Bus, ip: str, epoch: int, *, announcing: bool = True) -> None:
    """What node-a's announcer reports once it answers for ``ip``."""
    event = AnnouncementReported(node="node-a", ip=ip, mode=AnnouncementMode.L2, announcing=announcing,
                                 services=(ServiceId(namespace="default", name="web"),),
                                 interfaces=("eth0",) if announcing else (), placement_epoch=epoch)
    await bus.publish(announce_subject("node-a", ip), event)


async def said(command: object) -> str:
    console = Console(record=True, width=300)
    assert await command(console=console) == 0  # type: ignore[operator]
    return console.export_text()


async def test_explain_and_history_tell_the_story(bus: Bus, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    url = nats_server.url
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "web.yaml").write_text(service_yaml())
    async with heartbeating(bus, "node-a"), replica(url, "a"), watching(url, tmp_path):
        await async_wait_until(lambda: _placed(bus, "192.168.10.0"), timeout=15, what="web placed on node-a")
        assert (await placements(bus))["192.168.10.0"][0] == "node-a"
        epoch = (await placements(bus))["192.168.10.0"][1]
        await report(bus, "192.168.10.0", epoch)

        text = await said(lambda console: show_explain(url, "default/web", console=console))
        assert "It holds 192.168.10.0 from pool lan" in text
        assert "Why: lowest free address" in text
        assert f"ipam placed it on node-a (epoch {epoch}" in text
        assert f"node-a answers ARP on eth0, acting on epoch {epoch}" in text

        # The user asks for another address: the old one is released, the new one placed.
        (tmp_path / "web.yaml").write_text(service_yaml("192.168.10.77"))
        await async_wait_until(lambda: _placed(bus, "192.168.10.77"), timeout=15, what="the new address placed")
        await report(bus, "192.168.10.0", epoch, announcing=False)

        old = await said(lambda console: show_history(url, "192.168.10.0", console=console))
        assert "default/web holds 192.168.10.0 (pool lan)" in old
        assert "default/web released 192.168.10.0 (Replaced)" in old
        assert "192.168.10.0 placed on node node-a" in old
        assert "node node-a announces 192.168.10.0 (layer2 via eth0" in old
        assert "node node-a stopped announcing 192.168.10.0" in old
        assert old.index("holds 192.168.10.0") < old.index("released 192.168.10.0")

        story = await said(lambda console: show_history(url, "default/web", console=console))
        assert story.index("holds 192.168.10.0") < story.index("holds 192.168.10.77")
        assert "192.168.10.77 placed on node node-a" in story

        # An impossible request: no IP, and the reason in words.
        (tmp_path / "web.yaml").write_text(service_yaml("10.9.9.9"))
        await async_wait_until(lambda: _failed(url), timeout=15, what="the allocation to fail")
        text = await said(lambda console: show_explain(url, "default/web", console=console))
        assert "It has no IP: allocation failed" in text and "10.9.9.9" in text
        assert "It asks for: metallb.io/loadBalancerIPs=10.9.9.9" in text


async def test_explain_a_service_nobody_has_seen(bus: Bus, nats_server: EmbeddedNats) -> None:
    text = await said(lambda console: show_explain(nats_server.url, "default/ghost", console=console))
    assert "The watcher has not published a Service default/ghost" in text
    assert "ipam has made no decision about it yet" in text


async def _placed(bus: Bus, ip: str) -> bool:
    return ip in await placements(bus)


async def _failed(url: str) -> bool:
    console = Console(record=True, width=300)
    await show_explain(url, "default/web", console=console)
    return "It has no IP" in console.export_text()
