"""What owning the status costs the watcher: the status writer is told every Service and IPAddressPool the
reflectors read (``services/watcher/sightings.py``) and compares each with what metalbus decided, on the
observe side's event loop. This measures that comparison, in process (no API, no bus):

1. shown: 10 000 Services (and 100 pools) that show what metalbus decided, as a relist reads them:
   microseconds per object and milliseconds for the whole relist (the loop is held that long);
2. put back: the same Services each with a status someone else wrote (another address, a hostname):
   microseconds per object, each found and queued to be written again.

Prints figures; the last line is one JSON object.  ``python bench/status_sightings.py [--services N]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import kubernetes.client

from schemas.events import FamilyUsage, IPAllocated, ObjectKind, PoolUsageReported, ServiceId
from services.watcher.annotations import POOL_ANNOTATION
from services.watcher.kube import KubeClients
from services.watcher.status.desired import apply
from services.watcher.status.writer import StatusWriter, StatusWriterSettings

NAMESPACE = "metallb-system"
POOLS = 100


def _ip(index: int) -> str:
    return f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"


def _service(index: int, ingress: list[dict[str, str]]) -> dict[str, Any]:
    return {"metadata": {"name": f"svc-{index}", "namespace": "bench", "uid": f"u-{index}",
                         "annotations": {POOL_ANNOTATION: f"pool-{index % POOLS}"}},
            "status": {"loadBalancer": {"ingress": ingress}}}


def _pool(index: int) -> dict[str, Any]:
    return {"metadata": {"name": f"pool-{index}", "namespace": NAMESPACE},
            "status": {"assignedIPv4": 1, "assignedIPv6": 0, "availableIPv4": 255, "availableIPv6": 0}}


def _writer(services: int) -> StatusWriter:
    clients = KubeClients.from_api_client(kubernetes.client.ApiClient(kubernetes.client.Configuration()))
    writer = StatusWriter(bus=None, clients=clients, namespace=NAMESPACE,  # type: ignore[arg-type]
                          stopping=asyncio.Event(), settings=StatusWriterSettings())
    for index in range(services):
        service = ServiceId(namespace="bench", name=f"svc-{index}", uid=f"u-{index}")
        apply(writer.state, IPAllocated(service=service, ips=(_ip(index),), pool=f"pool-{index % POOLS}",
                                        reason="bench"), subject=f"s{index}", sequence=index + 1)
    for index in range(POOLS):
        v4, v6 = FamilyUsage(assigned=1, available=255), FamilyUsage(assigned=0, available=0)
        apply(writer.state, PoolUsageReported(pool=f"pool-{index}", ipv4=v4, ipv6=v6),
              subject=f"p{index}", sequence=services + index + 1)
    return writer


def _sight(writer: StatusWriter, objects: list[tuple[ObjectKind, dict[str, Any]]]) -> float:
    started = time.perf_counter()
    for kind, obj in objects:
        writer.seen(kind, obj)
    return time.perf_counter() - started


async def measure(services: int) -> dict[str, Any]:
    writer = _writer(services)
    pools = [(ObjectKind.IP_ADDRESS_POOL, _pool(index)) for index in range(POOLS)]
    shown = [(ObjectKind.SERVICE, _service(i, [{"ip": _ip(i), "ipMode": "VIP"}])) for i in range(services)]
    shown_s = _sight(writer, shown + pools)
    queued_after_shown = len(writer.queue)
    foreign = [(ObjectKind.SERVICE, _service(i, [{"ip": "192.0.2.1"}] if i % 2 else [{"hostname": "lb.example"}]))
               for i in range(services)]
    foreign_s = _sight(writer, foreign)
    return {
        "services": services, "pools": POOLS,
        "shown_us_per_object": round(shown_s / (services + POOLS) * 1e6, 2),
        "relist_ms": round(shown_s * 1000, 1), "queued_when_shown": queued_after_shown,
        "put_back_us_per_object": round(foreign_s / services * 1e6, 2), "queued_to_put_back": len(writer.queue),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    figures = asyncio.run(measure(parser.parse_args().services))
    print(f"{figures['services']} Services and {figures['pools']} pools that show what metalbus decided: "
          f"{figures['shown_us_per_object']} us per object, {figures['relist_ms']} ms for a whole relist, "
          f"{figures['queued_when_shown']} queued")
    print(f"the same Services with a status someone else wrote: {figures['put_back_us_per_object']} us per object, "
          f"{figures['queued_to_put_back']} queued to be written again")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
