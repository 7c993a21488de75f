"""``metalbus watcher --nats URL --kubeconfig PATH`` as an operator runs it: a real process, the stand-in
API, real NATS with the least-privilege accounts (the watcher connects as the watcher user); ready once the
initial lists are stored; SIGTERM releases the Lease."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from schemas.events import ObjectKind
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from tests.integration.test_cli import METALBUS, Process
from tests.integration.watcher.helpers import NAMESPACE, http_ready, service, stored
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until


async def test_the_watcher_command_observes_and_releases_its_lease_on_sigterm(
    admin_bus: Bus, kube_api: KubeApi, secured_server: EmbeddedNats, tmp_path: Path
) -> None:
    kube_api.put_object(service("web"))
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig")
    process = Process([*METALBUS, "watcher", "--nats", secured_server.url_for(BusUser.WATCHER),
                       "--kubeconfig", str(kubeconfig),
                       "--namespace", NAMESPACE, "--http-port", "0", "--http-host", "127.0.0.1"])
    try:
        # Waiting on the loop's own terms: its connections are pinged by the server and answer only while it runs.
        await async_wait_until(lambda: process.find(r"http_port=(\d+)") is not None, timeout=20,
                               what="the health endpoint")
        match = process.find(r"http_port=(\d+)")
        assert match is not None
        port = int(match.group(1))
        await async_wait_until(lambda: asyncio.to_thread(http_ready, port), timeout=20,
                               what="ready after the initial lists")
        assert "k8s.service.default.web" in await stored(admin_bus, ObjectKind.SERVICE)
        lease = kube_api.get_object("leases", "metalbus-watcher", NAMESPACE)
        assert lease is not None and lease["spec"]["holderIdentity"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            metrics = answer.read().decode()
        assert "metalbus_watcher_leader 1.0" in metrics
        assert 'metalbus_watcher_events_published_total{kind="service"}' in metrics
    finally:
        code = process.stop()
    assert code == 0, "".join(process.lines[-30:])
    lease = kube_api.get_object("leases", "metalbus-watcher", NAMESPACE)
    assert lease is not None and not lease["spec"].get("holderIdentity"), "the Lease was not released"
