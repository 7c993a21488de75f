"""The two ends of liveness, each in a process of its own, for tests and benchmarks that kill or stop them.

    python -m tests.integration.ipam.liveness_processes heartbeats URL NODE
    python -m tests.integration.ipam.liveness_processes watch URL

``heartbeats`` runs the announcer's heartbeat sender (services/announcer/heartbeat.py) on a connection of
its own and prints ``connected <server id> <client id>`` once connected; SIGTERM sends ``leaving``.
``watch`` runs ipam's ``LivenessWatch`` and prints ``live <node>`` and ``dead <node>`` as the live set
changes, each line with the monotonic time it was noticed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

from services.announcer.heartbeat import send_heartbeats
from services.common.bus import Bus, BusSettings
from services.common.heartbeats import HEARTBEAT_INTERVAL, LIVENESS_BACKSTOP
from services.ipam.liveness import LivenessWatch


async def heartbeats(url: str, node: str, interval: float) -> None:
    bus = await Bus.connect(BusSettings(url=url), producer=f"announcer/{node}")
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    connection = bus.connection
    print(f"connected {connection.server_id} {connection.client_id}", flush=True)
    await send_heartbeats(bus, node=node, instance=f"{node}-{time.monotonic_ns()}", stopping=stopping,
                          interval=interval)
    await bus.close()


async def watch(url: str, backstop: float) -> None:
    bus = await Bus.connect(BusSettings(url=url), producer="ipam/liveness-process")
    liveness = LivenessWatch(bus, backstop=backstop)
    await liveness.start()
    print("watching", flush=True)
    known: frozenset[str] = frozenset()
    while True:
        await liveness.changed.wait()
        liveness.changed.clear()
        now, live = time.monotonic(), liveness.live
        for node in sorted(live - known):
            print(f"live {node} {now:.6f}", flush=True)
        for node in sorted(known - live):
            print(f"dead {node} {now:.6f}", flush=True)
        known = live


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["heartbeats", "watch"])
    parser.add_argument("url")
    parser.add_argument("node", nargs="?", default="")
    parser.add_argument("--interval", type=float, default=HEARTBEAT_INTERVAL)
    parser.add_argument("--backstop", type=float, default=LIVENESS_BACKSTOP)
    args = parser.parse_args()
    if args.role == "heartbeats":
        asyncio.run(heartbeats(args.url, args.node, args.interval))
    else:
        asyncio.run(watch(args.url, args.backstop))
