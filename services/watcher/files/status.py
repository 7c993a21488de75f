"""Status written back next to a directory source: ``status/<namespace>_<name>.yaml`` per Service.

The IPAM and ANNOUNCE streams are followed from their start and folded with the Kubernetes status
writer's own fold (:mod:`services.watcher.status.desired`), so a file shows what the Service's
``status`` would show in a cluster — its ingress IPs and pool — plus what a cluster keeps elsewhere:
the Events about it and the nodes announcing it. :func:`service_document` is pure; the writer only
writes a file whose content changed, and removes the file of a Service that is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from schemas.events import AnnouncementReported, IPReleased, ReleaseReason
from services.common.bus import Bus, Received
from services.common.errors import StreamReplaced
from services.common.follower import Follower
from services.common.subjects import StreamName
from services.watcher.files.source import STATUS_DIR
from services.watcher.status.desired import KubeEvent, StatusState, TargetKind, apply

log = logging.getLogger(__name__)

EVENTS_KEPT = 10
HEADER = "# Written by metalbus from the IPAM and ANNOUNCE streams; edits here are overwritten.\n"


@dataclass(frozen=True, slots=True)
class ToldEvent:
    time: datetime
    event: KubeEvent


@dataclass
class FileStatus:
    """The fold plus the Events told per Service (newest last)."""

    state: StatusState
    events: defaultdict[tuple[str, str], deque[ToldEvent]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=EVENTS_KEPT))
    )

    def fold(self, received: Received) -> set[tuple[str, str]]:
        """Fold one event; the Services whose file may change."""
        change = apply(self.state, received.event, subject=received.subject, sequence=received.sequence)
        touched: set[tuple[str, str]] = set()
        for key in change.keys:
            if key.kind is TargetKind.SERVICE:
                touched.add((key.namespace, key.name))
        for told in change.events:
            if told.regarding.kind is TargetKind.SERVICE:
                service = (told.regarding.namespace, told.regarding.name)
                self.events[service].append(ToldEvent(received.envelope.time, told))
                touched.add(service)
        event = received.event
        if isinstance(event, IPReleased) and event.reason is ReleaseReason.SERVICE_DELETED:
            service = (event.service.namespace, event.service.name)
            self.events.pop(service, None)  # the Service is gone, and its file with it
            touched.add(service)
        if isinstance(event, AnnouncementReported):  # where it was announced before is not in the change
            touched.update(self.state.services)
            touched.update(self.events)
        return touched


def announced_by(state: StatusState, namespace: str, name: str) -> list[dict[str, Any]]:
    out = []
    for (node, ip, mode), report in sorted(state.announcements.items()):
        if (namespace, name) in report.services:
            entry: dict[str, Any] = {"node": node, "ip": ip, "mode": mode.value, "epoch": report.placement_epoch}
            if report.interfaces:
                entry["interfaces"] = list(report.interfaces)
            if report.peers:
                entry["peers"] = list(report.peers)
            out.append(entry)
    return out


def service_document(status: FileStatus, namespace: str, name: str) -> dict[str, Any] | None:
    """What ``status/<namespace>_<name>.yaml`` holds; None when there is nothing to tell."""
    target = status.state.services.get((namespace, name))
    told = status.events.get((namespace, name))
    if target is None and not told:
        return None
    metalbus: dict[str, Any] = {}
    if target is not None and target.pool:
        metalbus["pool"] = target.pool
    metalbus["announcedBy"] = announced_by(status.state, namespace, name)
    metalbus["events"] = [
        {"time": t.time.isoformat(timespec="seconds"), "type": t.event.type.value, "reason": t.event.reason.value,
         "message": t.event.message}
        for t in sorted(told or (), key=lambda t: t.time)  # as they happened, whichever stream came first
    ]
    ingress = [{"ip": ip, "ipMode": "VIP"} for ip in (target.ips if target else ())]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"namespace": namespace, "name": name},
        "status": {"loadBalancer": {"ingress": ingress} if ingress else {}},
        "metalbus": metalbus,
    }


def status_path(directory: Path, namespace: str, name: str) -> Path:
    return directory / STATUS_DIR / f"{namespace}_{name}.yaml"


def write_if_changed(path: Path, document: dict[str, Any] | None) -> bool:
    """Write (atomically) or remove ``path``; False when it already held that."""
    if document is None:
        if path.exists():
            path.unlink()
            return True
        return False
    text = HEADER + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    return True


def write_services(status: FileStatus, directory: Path, services: Iterable[tuple[str, str]]) -> int:
    written = 0
    for namespace, name in sorted(services):
        written += write_if_changed(status_path(directory, namespace, name),
                                    service_document(status, namespace, name))
    return written


async def run_file_status(*, bus: Bus, directory: Path, namespace: str, stopping: asyncio.Event) -> None:
    """Follow IPAM and ANNOUNCE from their start and keep ``directory/status`` up to date; from their start
    again when one is made again under it."""
    while not stopping.is_set():
        try:
            await _follow_status(bus=bus, directory=directory, namespace=namespace, stopping=stopping)
        except StreamReplaced as error:
            log.warning("status files read again reason=%s", error)


async def _follow_status(*, bus: Bus, directory: Path, namespace: str, stopping: asyncio.Event) -> None:
    status = FileStatus(StatusState(namespace))
    followers = [Follower(bus, StreamName.IPAM, start_sequence=1),
                 Follower(bus, StreamName.ANNOUNCE, start_sequence=1)]
    try:
        while not stopping.is_set():
            touched: set[tuple[str, str]] = set()
            for follower in followers:
                for received in await follower.fetch(batch=1000, wait=0.1):
                    touched |= status.fold(received)
            if touched:
                written = await asyncio.to_thread(write_services, status, directory, touched)
                if written:
                    log.info("status files written count=%d", written)
    finally:
        for follower in followers:
            await follower.close()
