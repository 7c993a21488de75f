"""Driving and inspecting the ipam service through the bus only, as the other services do."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable

from schemas.events import AllocationFailed, Event, IPAllocated, IPReleased
from services.common.bus import Bus
from services.common.lease import BusLease
from services.common.subjects import IPAM_ALLOCATIONS, StreamName, observed_subject
from services.ipam.replica import LEASE_NAME


async def observe(bus: Bus, events: Iterable[Event]) -> None:
    """Publish observed events on the K8S stream, as the watcher would."""
    await bus.publish_many((observed_subject(event), event, None) for event in events)


async def allocations(bus: Bus) -> dict[str, tuple[str, ...]]:
    """Service → IPs it holds now, from the last decision per Service."""
    held: dict[str, tuple[str, ...]] = {}
    async for received in bus.read(StreamName.IPAM, subjects=[IPAM_ALLOCATIONS], last_per_subject=True):
        event = received.event
        if isinstance(event, IPAllocated):
            held[f"{event.service.namespace}/{event.service.name}"] = event.ips
    return held


async def failures(bus: Bus) -> dict[str, AllocationFailed]:
    failed: dict[str, AllocationFailed] = {}
    async for received in bus.read(StreamName.IPAM, subjects=[IPAM_ALLOCATIONS], last_per_subject=True):
        if isinstance(received.event, AllocationFailed):
            failed[f"{received.event.service.namespace}/{received.event.service.name}"] = received.event
    return failed


async def double_allocations(bus: Bus) -> list[str]:
    """Replay the whole history: every moment at which one IP was held by two Services."""
    holder_of: dict[str, str] = {}
    held_by: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    async for received in bus.read(StreamName.IPAM, subjects=[IPAM_ALLOCATIONS]):
        event = received.event
        if isinstance(event, IPAllocated | IPReleased | AllocationFailed):
            key = f"{event.service.namespace}/{event.service.name}"
            for ip in held_by.pop(key, ()):
                holder_of.pop(ip, None)
        if isinstance(event, IPAllocated):
            for ip in event.ips:
                if ip in holder_of:
                    problems.append(f"seq {received.sequence}: {ip} given to {key} while {holder_of[ip]} holds it")
                holder_of[ip] = key
            held_by[key] = event.ips
    return problems


async def lease_holder(bus: Bus) -> str | None:
    return await BusLease(bus, name=LEASE_NAME, holder="observer").holder()


def start_ipam(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "ipam", "--nats", url, "--http-port", "0", "--http-host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
