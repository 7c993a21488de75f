"""A lease keeper in a process of its own, for tests and benchmarks that kill it.

    python -m tests.integration.lease_holder URL NAME HOLDER --ttl TTL

Competes for the lease and prints ``held`` once it holds it, then keeps it until killed.
"""

from __future__ import annotations

import argparse
import asyncio

from services.common.bus import BusSettings
from services.common.lease_keeper import LeaseKeeper


async def hold(url: str, name: str, holder: str, ttl: float, interval: float) -> None:
    keeper = LeaseKeeper(BusSettings(url=url), name=name, holder=holder, ttl=ttl, interval=interval)
    await keeper.start()
    keeper.compete()
    await keeper.acquired.wait()
    print("held", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("holder")
    parser.add_argument("--ttl", type=float, required=True)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(hold(args.url, args.name, args.holder, args.ttl, args.interval))
