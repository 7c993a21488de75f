"""What a Python NATS subscriber pays for a stream of small messages, one at a time against in batches: why
announcers send their heartbeats on the ticks of a shared wall-clock grid (``heartbeats.BEAT_TICK``).

Real parts: a nats-server (``EmbeddedNats``), a subscriber process with a nats-py subscription whose callback
only counts (what ipam's liveness reader pays before it reads a heartbeat), a publisher process sending
``--rate`` messages a second of a heartbeat's size on ``--nodes`` subjects: either evenly spread (one at a
time) or ``--batch`` at once every ``batch / rate`` seconds (a tick of the grid). Figures: the subscriber's
CPU (user + system, of its own process) per second and per message, for each way side by side.

    python bench/heartbeat_batching.py [--rate 500] [--batch 50] [--seconds 10] [--quick]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

import nats

from services.common.nats_server import EmbeddedNats

#: About a heartbeat's size on the wire (its envelope and the connection it names).
BODY = b'{"heartbeat":"' + b"x" * 300 + b'"}'
SUBJECTS = "bench.heartbeat"


async def subscribe(url: str, seconds: float) -> None:
    """Count what arrives; after a second to settle, print the CPU spent over ``seconds`` as JSON."""
    client = await nats.connect(url)
    received = 0

    async def count(_message: object) -> None:
        nonlocal received
        received += 1

    await client.subscribe(f"{SUBJECTS}.*", cb=count)
    await client.flush()
    print("subscribed", flush=True)
    await asyncio.sleep(1.0)
    cpu, wall, before = time.process_time(), time.monotonic(), received
    await asyncio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(json.dumps({"messages": received - before, "cpu_s": cpu, "wall_s": wall}), flush=True)
    await client.close()


async def publish(url: str, rate: float, batch: int, nodes: int, seconds: float) -> None:
    """``batch`` messages at once every ``batch / rate`` seconds, on the node subjects in turn."""
    client = await nats.connect(url)
    every, sent = batch / rate, 0
    due = time.monotonic()
    end = due + seconds
    while time.monotonic() < end:
        for _ in range(batch):
            await client.publish(f"{SUBJECTS}.n{sent % nodes}", BODY)
            sent += 1
        await client.flush()
        due += every
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    await client.close()


def measure(url: str, *, rate: float, batch: int, nodes: int, seconds: float) -> dict[str, float]:
    script = str(Path(__file__).resolve())
    subscriber = subprocess.Popen([sys.executable, script, "--role", "subscribe", "--url", url,
                                   "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True)
    try:
        assert subscriber.stdout is not None
        if subscriber.stdout.readline().strip() != "subscribed":
            raise RuntimeError("the subscriber did not start")
        publisher = subprocess.Popen([sys.executable, script, "--role", "publish", "--url", url, "--rate", str(rate),
                                      "--batch", str(batch), "--nodes", str(nodes), "--seconds", str(seconds + 2)])
        line = subscriber.stdout.readline()
        publisher.wait(timeout=seconds + 30)
    finally:
        subscriber.wait(timeout=30)
    found = json.loads(line)
    return {"messages_per_s": found["messages"] / found["wall_s"], "cpu_cores": found["cpu_s"] / found["wall_s"],
            "cpu_us_per_message": 1e6 * found["cpu_s"] / max(1, found["messages"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="messages a second (5 000 nodes every 10 s)")
    parser.add_argument("--batch", type=int, default=50, help="messages at once (a tick's heartbeats)")
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="5 s each way")
    parser.add_argument("--role", choices=("subscribe", "publish"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "subscribe":
        asyncio.run(subscribe(args.url, args.seconds))
        return
    if args.role == "publish":
        asyncio.run(publish(args.url, args.rate, args.batch, args.nodes, args.seconds))
        return
    if args.quick:
        args.seconds = 5.0
    figures: dict[str, dict[str, float]] = {}
    with EmbeddedNats() as server:
        for name, batch in (("one_at_a_time", 1), ("batched", args.batch)):
            figures[name] = measure(server.url, rate=args.rate, batch=batch, nodes=args.nodes, seconds=args.seconds)
    one, batched = figures["one_at_a_time"], figures["batched"]
    print(f"{args.rate:.0f} messages/s to one nats-py subscriber        one at a time   {args.batch} at once   ratio")
    for key, label in (("messages_per_s", "messages received a second"), ("cpu_cores", "subscriber CPU (cores)"),
                       ("cpu_us_per_message", "subscriber CPU per message (µs)")):
        print(f"  {label:<48}{one[key]:>12.4g}{batched[key]:>13.4g}{batched[key] / one[key]:>8.2f}")
    print(json.dumps({"rate": args.rate, "batch": args.batch, **figures}))


if __name__ == "__main__":
    main()
