"""The watcher's directory source on a real nats-server, with a real ipam: files in, IPs and status files out.
NATS runs the least-privilege accounts: the watcher and the ipam each connect with their own credential."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import yaml

from schemas.events import DECISION_KINDS, KindListed, ObjectDeleted, ObjectKind, ServiceObserved
from services.common.bus import Bus, BusSettings
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from services.common.provision import provision
from services.common.subjects import K8S_LISTED_PREFIX, StreamName
from services.ipam.replica import ReplicaSettings
from services.watcher.files.source import DirectorySource
from services.watcher.files.status import run_file_status, status_path
from tests.integration.ipam.helpers import allocations
from tests.integration.ipam.test_ipam_service import replica
from tests.waiting import async_wait_until

CONFIG = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec:
  addresses: [192.168.10.0/24]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec:
  ipAddressPools: [lan]
"""


def service_yaml(name: str, *, ip: str | None = None) -> str:
    annotations = {"metallb.io/loadBalancerIPs": ip} if ip else {}
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "ipFamilies": ["IPv4"]},
    })


@contextlib.asynccontextmanager
async def watching(url: str, directory: Path) -> AsyncIterator[DirectorySource]:
    """The directory source and the status files, in process, until the block ends."""
    bus = await Bus.connect(BusSettings(url=url), producer="watcher/files-test")
    source = DirectorySource(bus=bus, directory=directory, namespace="metallb-system")
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(source.run(stopping)),
             asyncio.create_task(run_file_status(bus=bus, directory=source.directory, namespace="metallb-system",
                                                 stopping=stopping))]
    try:
        await asyncio.wait_for(source.synced.wait(), 10)
        yield source
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await bus.close()


async def k8s_messages(bus: Bus) -> list[tuple[str, object]]:
    return [(r.subject, r.event) async for r in bus.read(StreamName.K8S)]


def status_of(directory: Path, name: str) -> dict[str, object] | None:
    path = status_path(directory, "default", name)
    if not path.exists():
        return None
    loaded = yaml.safe_load(path.read_text())
    return loaded if isinstance(loaded, dict) else None


def ingress_of(directory: Path, name: str) -> list[str]:
    document = status_of(directory, name) or {}
    status = document.get("status") or {}
    assert isinstance(status, dict)
    return [entry["ip"] for entry in (status.get("loadBalancer") or {}).get("ingress") or ()]


async def test_edits_show_live_and_status_is_written_next_to_the_files(
    admin_bus: Bus, secured_server: EmbeddedNats, tmp_path: Path
) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "web.yaml").write_text(service_yaml("web"))
    ipam, watcher = secured_server.url_for(BusUser.IPAM), secured_server.url_for(BusUser.WATCHER)
    async with replica(ipam, "a", settings=ReplicaSettings()), watching(watcher, tmp_path):
        await async_wait_until(lambda: ingress_of(tmp_path, "web") != [], timeout=15,
                               what="a status file with web's IP")
        assert tuple(ingress_of(tmp_path, "web")) == (await allocations(admin_bus))["default/web"] != ()
        document = status_of(tmp_path, "web") or {}
        events = document["metalbus"]["events"]  # type: ignore[index]
        assert any(e["reason"] == "IPAllocated" for e in events)

        # An edit: the Service asks for a specific address; it moves there.
        (tmp_path / "web.yaml").write_text(service_yaml("web", ip="192.168.10.77"))
        await async_wait_until(lambda: ingress_of(tmp_path, "web") == ["192.168.10.77"], timeout=15,
                               what="web moved to the requested address")

        # A removal: a tombstone, the allocation released, the status file gone.
        (tmp_path / "web.yaml").unlink()
        await async_wait_until(lambda: status_of(tmp_path, "web") is None, timeout=15,
                               what="web's status file removed")
        last = [event for subject, event in await k8s_messages(admin_bus) if subject == "k8s.service.default.web"][-1]
        assert isinstance(last, ObjectDeleted)

        # Back as it was first: published again (never swallowed as a duplicate), gets an IP again.
        (tmp_path / "web.yaml").write_text(service_yaml("web"))
        await async_wait_until(lambda: ingress_of(tmp_path, "web") != [], timeout=15, what="web back with an IP")


async def test_a_restart_on_an_unchanged_directory_publishes_nothing(
    admin_bus: Bus, secured_server: EmbeddedNats, tmp_path: Path
) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "web.yaml").write_text(service_yaml("web"))
    (tmp_path / "notes.txt").write_text("not YAML: never read")
    async with watching(secured_server.url_for(BusUser.WATCHER), tmp_path):
        first = await k8s_messages(admin_bus)
    services = [e for _, e in first if isinstance(e, ServiceObserved)]
    assert len(services) == 1 and services[0].ref.uid and services[0].ref.resource_version
    async with watching(secured_server.url_for(BusUser.WATCHER), tmp_path) as source:
        assert source.scans >= 1
        assert await k8s_messages(admin_bus) == first


async def complete_marks(bus: Bus) -> set[ObjectKind]:
    return {r.event.kind async for r in bus.read(StreamName.K8S, subjects=[f"{K8S_LISTED_PREFIX}.>"],
                                               last_per_subject=True)
            if isinstance(r.event, KindListed) and r.event.complete}


async def test_its_lists_are_marked_and_a_lost_stream_gets_the_directory_again(
    admin_bus: Bus, secured_server: EmbeddedNats, tmp_path: Path
) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "web.yaml").write_text(service_yaml("web"))
    ipam = secured_server.url_for(BusUser.IPAM)
    async with replica(ipam, "a", settings=ReplicaSettings()), watching(
            secured_server.url_for(BusUser.WATCHER), tmp_path):
        # every kind ipam decides from is marked complete (ipam decides on nothing less): web gets its address
        assert await complete_marks(admin_bus) >= DECISION_KINDS
        await async_wait_until(lambda: ingress_of(tmp_path, "web") != [], timeout=15, what="web's address")
        address = ingress_of(tmp_path, "web")

        await admin_bus.js.delete_stream(StreamName.K8S.value)  # the stream is lost under the source ...
        await provision(admin_bus)  # ... and made again, empty
        (tmp_path / "api.yaml").write_text(service_yaml("api"))  # the next read notices

        async def republished() -> bool:
            subjects = {subject for subject, _ in await k8s_messages(admin_bus)}
            return {"k8s.service.default.web", "k8s.service.default.api"} <= subjects

        await async_wait_until(republished, timeout=15, what="the whole directory in the stream again")
        await async_wait_until(lambda: ingress_of(tmp_path, "api") != [], timeout=15, what="api's address")
        assert await complete_marks(admin_bus) >= DECISION_KINDS
        assert ingress_of(tmp_path, "web") == address  # nothing was decided on the emptied stream


async def test_metalbus_watcher_source_dir_publishes_the_directory(
    admin_bus: Bus, secured_server: EmbeddedNats, tmp_path: Path
) -> None:
    """The command line: `metalbus watcher --source-dir DIR` instead of `--kubeconfig`."""
    (tmp_path / "config.yaml").write_text(CONFIG)
    (tmp_path / "web.yaml").write_text(service_yaml("web"))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.cli", "watcher", "--nats", secured_server.url_for(BusUser.WATCHER),
        "--source-dir", str(tmp_path), "--http-port", "0", "--http-host", "127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async def published() -> bool:
            subjects = {subject for subject, _ in await k8s_messages(admin_bus)}
            return {"k8s.service.default.web", "k8s.ipaddresspool.metallb-system.lan"} <= subjects

        await async_wait_until(published, timeout=20, what="the directory on the K8S stream")
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 15) == 0
