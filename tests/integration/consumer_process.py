"""A consumer in its own process, for tests that kill it: records each handled sequence in a file."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from services.common.bus import Bus, BusSettings, Received
from services.common.consumer import Consumer, ConsumerSpec
from services.common.subjects import StreamName


async def consume(url: str, durable: str, record: Path, ack_wait: float) -> None:
    bus = await Bus.connect(BusSettings(url=url), producer="test/consumer-process")
    with record.open("a") as sink:

        async def handle(message: Received) -> None:
            sink.write(f"{message.sequence}\n")
            sink.flush()

        spec = ConsumerSpec(stream=StreamName.IPAM, durable=durable, ack_wait=ack_wait, batch=5)
        consumer = Consumer(bus, spec, handle)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, consumer.stop)
        await consumer.run()
    await bus.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("durable")
    parser.add_argument("record", type=Path)
    parser.add_argument("--ack-wait", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(consume(args.url, args.durable, args.record, args.ack_wait))
