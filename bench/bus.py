"""Bus throughput against a real nats-server: publish (acked one by one, and pipelined), durable
consumption, and replay of a stream. Prints a table, then one JSON object as the last line.

    python bench/bus.py [--messages N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from schemas.events import IPAllocated, ServiceId
from services.common.bus import Bus, BusSettings, Received
from services.common.consumer import Consumer, ConsumerSpec
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import StreamName, ipam_allocation_subject


def event(index: int) -> IPAllocated:
    return IPAllocated(
        service=ServiceId(namespace="bench", name=f"svc-{index}", uid=f"uid-{index}"),
        ips=(f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}",),
        pool="bench",
        reason="benchmark",
    )


async def measure(messages: int) -> dict[str, float]:
    with EmbeddedNats() as server:
        bus = await Bus.connect(BusSettings(url=server.url), producer="bench/bus")
        async with bus:
            await provision(bus)
            events = [(ipam_allocation_subject("bench", f"svc-{i}"), event(i)) for i in range(messages)]

            acked = min(messages, 5000)
            start = time.perf_counter()
            for subject, payload in events[:acked]:
                await bus.publish(subject, payload)
            publish_acked = acked / (time.perf_counter() - start)

            start = time.perf_counter()
            for first in range(0, messages, 5000):
                await bus.publish_many((s, e, None) for s, e in events[first : first + 5000])
            publish_pipelined = messages / (time.perf_counter() - start)

            total = acked + messages
            start = time.perf_counter()
            replayed = sum([1 async for _ in bus.read(StreamName.IPAM, batch=2000)])
            replay = replayed / (time.perf_counter() - start)

            folded = 0

            def fold(_: Received) -> None:
                nonlocal folded
                folded += 1

            start = time.perf_counter()
            await bus.replay(StreamName.IPAM, fold)
            replay_push = folded / (time.perf_counter() - start)

            handled = 0
            done = asyncio.Event()

            async def handle(_: Received) -> None:
                nonlocal handled
                handled += 1
                if handled == total:
                    done.set()

            consumer = Consumer(bus, ConsumerSpec(stream=StreamName.IPAM, durable="bench", batch=500), handle)
            start = time.perf_counter()
            task = asyncio.create_task(consumer.run())
            await asyncio.wait_for(done.wait(), 300)
            consume = total / (time.perf_counter() - start)
            consumer.stop()
            await task
    return {
        "messages": messages,
        "publish_acked_per_s": round(publish_acked),
        "publish_pipelined_per_s": round(publish_pipelined),
        "consume_durable_ack_per_s": round(consume),
        "read_fetch_per_s": round(replay),
        "replay_fold_per_s": round(replay_push),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--quick", action="store_true", help="10 000 messages (well under a minute)")
    args = parser.parse_args()
    figures = asyncio.run(measure(10_000 if args.quick else args.messages))
    for name, value in figures.items():
        print(f"{name:>28}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
