"""Abuse benchmark: how long ordinary Services wait for their IPs while hostile input flows, against a quiet
run of the same size.

Real parts: a nats-server with JetStream, the watcher's observe side reading the Kubernetes API stand-in
(``tests/kubeapi``, through the official client) and an ipam replica, in this process as ``bench/ipam.py``
runs them. Each run creates the ordinary Services in the API and times each one from its creation to its
``IPAllocated``. The hostile run first creates, in the same burst:
- 30 Services whose ``metallb.io/loadBalancerIPs`` annotation is a 225 KB list of addresses;
- 3 Services with 3 500 labels (1.3 MB: larger than the bus takes);
- a configuration of 5 000 BGPPeers and 2 000 pools (larger than one message).

``python bench/abuse.py [--quick]``  (--quick: 300 Services, 1 000 BGPPeers and 400 pools; under a minute)
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import kubernetes.client
from nats.aio.msg import Msg

from schemas.events import IPAllocated
from schemas.events.codec import decode
from services.common.bus import Bus, BusSettings
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.ipam.replica import Replica
from services.watcher.kube import KubeClients
from services.watcher.observe import build_observers
from services.watcher.service import observe_clients
from tests.kubeapi.handle import KubeApi

NAMESPACE = "metallb-system"


def _service(name: str, *, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None
             ) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations or {},
                         "labels": labels or {}},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}}}


def _metallb(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    version = "v1beta2" if kind == "BGPPeer" else "v1beta1"
    return {"apiVersion": f"metallb.io/{version}", "kind": kind, "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec}


def _hostile(peers: int, pools: int) -> list[dict[str, Any]]:
    addresses = ",".join(f"192.168.{i // 250}.{i % 250}" for i in range(16_000))  # 225 KB
    objects = [_service(f"greedy-{i:02d}", annotations={"metallb.io/loadBalancerIPs": addresses}) for i in range(30)]
    labels = {f"tenant.example.com/label-{i:05d}": "v" * 360 for i in range(3500)}  # 1.3 MB
    objects += [_service(f"heavy-{i}", labels=labels) for i in range(3)]
    objects += [_metallb("IPAddressPool", f"pool-{i:05d}", {"addresses": [f"10.{100 + i // 4096}.{(i // 16) % 256}."
                                                                          f"{(i % 16) * 16}/28"], "autoAssign": False})
                for i in range(pools)]
    objects += [_metallb("BGPPeer", f"peer-{i:05d}", {"myASN": 64500, "peerASN": 64512 + i % 1000,
                                                      "peerAddress": f"172.16.{i // 250}.{i % 250 + 1}"})
                for i in range(peers)]
    return objects


async def _run(*, services: int, hostile: list[dict[str, Any]], timeout: float) -> dict[str, Any]:
    with KubeApi(history_limit=200_000) as api, EmbeddedNats() as server:
        api.put_object(_metallb("IPAddressPool", "lan", {"addresses": ["10.0.0.0/16"]}))
        configuration = kubernetes.client.Configuration()
        configuration.host = api.url
        configuration.api_key = {"authorization": "Bearer kubeapi-test"}
        clients = observe_clients(KubeClients.from_api_client(kubernetes.client.ApiClient(configuration)))
        bus = await Bus.connect(BusSettings(url=server.url), producer="bench/abuse")
        ipam_bus = await Bus.connect(BusSettings(url=server.url), producer="ipam/bench")
        async with bus, ipam_bus:
            await provision(bus)
            allocated: dict[str, float] = {}
            done = asyncio.Event()

            async def on_allocation(msg: Msg) -> None:
                event = decode(msg.data).event
                if isinstance(event, IPAllocated) and event.service.name.startswith("web-"):
                    allocated.setdefault(event.service.name, time.monotonic())
                    if len(allocated) >= services:
                        done.set()

            subscription = await bus.client.subscribe("ipam.allocation.>", cb=on_allocation)
            observers = build_observers(bus=bus, clients=clients, namespace=NAMESPACE)
            stopping = asyncio.Event()
            replica = Replica(ipam_bus, holder="ipam/bench")
            tasks = [asyncio.create_task(observers.run()), asyncio.create_task(replica.run(stopping))]
            try:
                await asyncio.wait_for(observers.wait_synced(), 60)
                await asyncio.wait_for(replica.activated.wait(), 60)
                for obj in hostile:
                    await asyncio.to_thread(api.put_object, obj)
                created: dict[str, float] = {}
                for index in range(services):
                    name = f"web-{index:05d}"
                    await asyncio.to_thread(api.put_object, _service(name))
                    created[name] = time.monotonic()
                with contextlib.suppress(TimeoutError):  # what is not served by then is counted as such
                    await asyncio.wait_for(done.wait(), timeout)
                waits = sorted(allocated[name] - created[name] for name in created if name in allocated)
            finally:
                stopping.set()
                await asyncio.wait_for(tasks[1], 15)
                tasks[0].cancel()
                await asyncio.gather(tasks[0], return_exceptions=True)
                await subscription.unsubscribe()
                await asyncio.to_thread(clients.close)
    served = len(waits)
    return {
        "served": served,
        "median_s": round(statistics.median(waits), 3) if waits else None,
        "p99_s": round(waits[min(served - 1, int(served * 0.99))], 3) if waits else None,
        "max_s": round(waits[-1], 3) if waits else None,
    }


def _ratio(hostile: float | None, quiet: float | None) -> str:
    return f"{hostile / quiet:.1f}x" if hostile is not None and quiet else "-"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 Services, 1 000 BGPPeers, 400 pools")
    args = parser.parse_args()
    services, peers, pools = (300, 1000, 400) if args.quick else (2000, 5000, 2000)
    timeout = 60.0 if args.quick else 300.0
    quiet = await _run(services=services, hostile=[], timeout=timeout)
    hostile = await _run(services=services, hostile=_hostile(peers, pools), timeout=timeout)
    print(f"{services} ordinary Services; hostile: 30 x 225 KB loadBalancerIPs, 3 x 1.3 MB Services, "
          f"{peers} BGPPeers + {pools} pools")
    print(f"{'':12}{'quiet':>10}{'hostile':>10}{'ratio':>8}")
    print(f"{'served':12}{quiet['served']:>10}{hostile['served']:>10}")
    for key in ("median_s", "p99_s", "max_s"):
        print(f"{key:12}{quiet[key]!s:>10}{hostile[key]!s:>10}{_ratio(hostile[key], quiet[key]):>8}")
    print(json.dumps({"services": services, "peers": peers, "pools": pools, "quiet": quiet, "hostile": hostile}))


if __name__ == "__main__":
    asyncio.run(main())
