"""Strangers dialling the BGP port: what refusing them costs a node whose router dialled in.

    python bench/bgp_strangers.py [--seconds 5] [--dialers 2]

Over loopback, in this process: the announcer side's Listener with one configured peer (127.0.0.2), whose
session (hold time 3 s, a keepalive a second) the peer opened by dialling in. Then, for ``--seconds``, other
processes dial the listener from 127.0.0.3 as fast as they can (each connection is reset before OPEN). Printed,
beside the same measure without them:
- refused connections per second, and how many log lines they made (one per source and minute);
- the event loop's lag: how late a 10 ms timer fires at worst and at the 99th percentile (the BGP keepalive
  and BFD timers run on this loop);
- whether the configured session stayed Established.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from services.announcer.bgp.events import Closed, Event
from services.announcer.bgp.listener import Listener
from services.announcer.bgp.session import SessionConfig
from services.announcer.bgp.speaker import Speaker, SpeakerConfig

NODE, PEER, STRANGER = "127.0.0.1", "127.0.0.2", "127.0.0.3"
TICK = 0.01

DIALER = """
import socket, sys, time
port, until, count = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), 0
while time.monotonic() < until:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2, source_address=("127.0.0.3", 0)) as s:
            s.recv(1)
    except OSError:
        pass
    count += 1
print(count)
"""


@dataclass
class Run:
    refused_per_second: float
    log_lines: int
    lag_max_ms: float
    lag_p99_ms: float
    session_closed: int


class Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += "refused before OPEN" in record.getMessage()


async def lag_probe(seconds: float) -> list[float]:
    """How late each 10 ms sleep wakes, in seconds."""
    loop, lags = asyncio.get_running_loop(), []
    until = loop.time() + seconds
    while loop.time() < until:
        asked = loop.time()
        await asyncio.sleep(TICK)
        lags.append(loop.time() - asked - TICK)
    return lags


async def run(seconds: float, dialers: int) -> Run:
    closed: list[Event] = []
    node = SpeakerConfig(
        session=SessionConfig(local_as=64512, peer_as=64513, router_id=ipaddress.IPv4Address("10.0.0.1"),
                              hold_time=3),
        peer_address=ipaddress.IPv4Address(PEER), connect=False,
    )  # fmt: skip
    counting = Counting()
    logging.getLogger("services.announcer.bgp.listener").addHandler(counting)
    async with Listener(address=ipaddress.IPv4Address(NODE), port=0) as listener:
        router = SpeakerConfig(
            session=SessionConfig(local_as=64513, peer_as=64512, router_id=ipaddress.IPv4Address("10.0.0.2"),
                                  hold_time=3),
            peer_address=ipaddress.IPv4Address(NODE), peer_port=listener.bound_port,
            source_address=ipaddress.IPv4Address(PEER), min_backoff=0.05, connect_time=0.5,
        )  # fmt: skip
        on_event = lambda event: closed.append(event) if isinstance(event, Closed) else None  # noqa: E731
        async with Speaker(node, on_event=on_event) as speaker, Speaker(router) as peer:
            listener.add(speaker)
            async with asyncio.timeout(10):
                await speaker.established.wait()
                await peer.established.wait()
            procs = [
                subprocess.Popen([sys.executable, "-c", DIALER, str(listener.bound_port), str(seconds)],
                                 stdout=subprocess.PIPE, text=True)
                for _ in range(dialers)
            ]  # fmt: skip
            before, started = listener.refused, time.monotonic()
            lags = await lag_probe(seconds)
            elapsed = time.monotonic() - started
            refused, closed_meanwhile = listener.refused - before, len(closed)
            for proc in procs:
                proc.communicate(timeout=30)
    lags.sort()
    return Run(
        refused_per_second=refused / elapsed,
        log_lines=counting.lines,
        lag_max_ms=lags[-1] * 1000,
        lag_p99_ms=lags[int(len(lags) * 0.99)] * 1000,
        session_closed=closed_meanwhile,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--dialers", type=int, default=2, help="processes dialling from the stranger's address")
    args = parser.parse_args()
    quiet = asyncio.run(run(args.seconds, 0))
    flooded = asyncio.run(run(args.seconds, args.dialers))
    print(f"{'':28}{'quiet':>12}{'strangers':>12}")
    print(f"{'refused connections/s':28}{quiet.refused_per_second:>12.0f}{flooded.refused_per_second:>12.0f}")
    print(f"{'refusal log lines':28}{quiet.log_lines:>12}{flooded.log_lines:>12}")
    print(f"{'loop lag max (ms)':28}{quiet.lag_max_ms:>12.1f}{flooded.lag_max_ms:>12.1f}")
    print(f"{'loop lag p99 (ms)':28}{quiet.lag_p99_ms:>12.1f}{flooded.lag_p99_ms:>12.1f}")
    print(f"{'session closed (times)':28}{quiet.session_closed:>12}{flooded.session_closed:>12}")
    print(json.dumps({"quiet": vars(quiet), "strangers": vars(flooded), "dialers": args.dialers,
                      "seconds": args.seconds}))  # fmt: skip


if __name__ == "__main__":
    main()
