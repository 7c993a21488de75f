"""``metalbus bus backup`` and ``restore`` as the shipped admin user: every stream into a new NATS with its sequences,
and the restored lists marked begun, so nothing is decided until the watcher has listed the cluster again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from schemas.events import DECISION_KINDS, IPAllocated, KindListed, ServiceId
from services.common.bus import Bus, BusSettings
from services.common.credentials import BusUser
from services.common.subjects import StreamName, ipam_allocation_subject, k8s_listed_subject, observed_subject
from tests.builders import service
from tests.secured_nats import secured_nats


def metalbus(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_backup_restored_into_a_new_nats_keeps_every_sequence_and_marks_the_lists_begun(
    tmp_path: Path,
) -> None:
    backup = tmp_path / "backup"
    with secured_nats(tmp_path / "first") as first:
        watcher = await Bus.connect(BusSettings(url=first.url_for(BusUser.WATCHER)), producer="watcher/w")
        ipam = await Bus.connect(BusSettings(url=first.url_for(BusUser.IPAM)), producer="ipam/i")
        try:
            web = service("web")
            await watcher.publish(observed_subject(web), web)
            for kind in DECISION_KINDS:
                await watcher.publish(k8s_listed_subject(kind), KindListed(kind=kind, complete=True))
            for n in range(3):
                await ipam.publish(ipam_allocation_subject("default", "web"), IPAllocated(
                    service=ServiceId(namespace="default", name="web"), ips=(f"10.0.0.{n}",), pool="lan",
                    reason="test"))
        finally:
            await watcher.close()
            await ipam.close()
        assert "IPAM=3" in metalbus("bus", "backup", str(backup), "--nats", first.url)
    with secured_nats(tmp_path / "second") as second:
        admin = await Bus.connect(BusSettings(url=second.url), producer="test/admin")
        try:
            for info in await admin.js.streams_info():  # a new NATS: provisioned, so its streams go first
                if not info.config.name.startswith("KV_"):
                    await admin.js.delete_stream(info.config.name)
            assert "IPAM=3" in metalbus("bus", "restore", str(backup), "--nats", second.url)
            decided = await admin.last_value(StreamName.IPAM, ipam_allocation_subject("default", "web"))
            assert decided is not None and decided.sequence == 3
            assert isinstance(decided.event, IPAllocated) and decided.event.ips == ("10.0.0.2",)
            marks = [await admin.last_value(StreamName.K8S, k8s_listed_subject(kind)) for kind in DECISION_KINDS]
            assert all(m is not None and isinstance(m.event, KindListed) and not m.event.complete for m in marks)
            assert await admin.last_value(StreamName.K8S, observed_subject(service("web"))) is not None
            assert (await admin.js.stream_info(StreamName.K8S.value)).config.deny_purge  # provisioned as shipped
            again = subprocess.run([sys.executable, "-m", "services.cli", "bus", "restore", str(backup), "--nats",
                                    second.url], capture_output=True, text=True, timeout=60)
            assert again.returncode == 2 and "stream K8S exists" in again.stderr  # never over streams in use
        finally:
            await admin.close()
