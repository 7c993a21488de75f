"""SIGTERM is honoured at once, even while the active replica is deciding a batch that takes far longer
than the grace period: it hands the lease over, and the standby decides what is pending."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.builders import pool, service
from tests.integration.ipam.heavy_ipam import BUSY_MARK, HEAVY_PREFIX
from tests.integration.ipam.helpers import allocations, lease_holder, observe, start_ipam, stop
from tests.waiting import async_wait_until

DECIDE_SECONDS = 60.0  # one Service's decision keeps the replica busy for longer than any test waits


def start_busy_ipam(url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.ipam.heavy_ipam", "0", str(DECIDE_SECONDS),
             "--nats", url, "--http-port", "0", "--http-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=sink,
        )


async def test_sigterm_while_deciding_stops_at_once_and_hands_over(
    bus: Bus, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    await observe(bus, [pool("lan", "10.41.0.0/24"), service("web")])
    log = tmp_path / "busy.log"
    busy = start_busy_ipam(nats_server.url, log)
    processes = [busy]
    try:
        await async_wait_until(lambda: _allocated(bus, {"default/web"}), timeout=30, what="web decided")
        holder = await lease_holder(bus)
        assert holder is not None and holder.endswith(f"-{busy.pid}")
        standby = start_ipam(nats_server.url)
        processes.append(standby)
        await observe(bus, [service(f"{HEAVY_PREFIX}0"), service("db")])
        await async_wait_until(lambda: BUSY_MARK in log.read_text(), timeout=30, what="the active replica busy")

        busy.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await async_wait_until(lambda: busy.poll() is not None, timeout=5, what="the busy replica to exit")
        assert time.monotonic() - signalled < 3.0, "SIGTERM waited for the work (the grace period is 10 s)"
        assert busy.returncode == 0, log.read_text()[-2000:]

        # the lease was released on the way out: the standby decides what the busy one left undecided
        await async_wait_until(
            lambda: _allocated(bus, {"default/web", f"default/{HEAVY_PREFIX}0", "default/db"}), timeout=30,
            what="the standby deciding what was pending",
        )
        assert (await allocations(bus))["default/web"] == ("10.41.0.0",)
    finally:
        for process in reversed(processes):
            stop(process)


async def _allocated(bus: Bus, services: set[str]) -> bool:
    return services <= (await allocations(bus)).keys()
