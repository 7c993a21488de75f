"""What every long-running metalbus service shares: logging, tracing, the health/metrics endpoint,
the event loop's lag on it (``services/common/loop_lag.py``), the bus connection with its streams, and a
graceful stop on SIGTERM/SIGINT.

A service is an ``async def main(ctx: ServiceContext)`` that returns once ``ctx.stopping`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from services.common.bus import Bus, BusSettings
from services.common.health import Health, HealthServer
from services.common.logs import LogFormat, setup_logging
from services.common.loop_lag import CollectorPauses, LoopLagProbe
from services.common.provision import wait_until_provisioned
from services.common.records import KEEPALIVE_INTERVAL
from services.common.supervision import OnFailure, TaskFailed, supervise_process, supervised, watch
from services.common.tracing import setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    nats_url: str
    #: The NATS user and a file holding its password, when not in the URL (announcers: node-<node>).
    nats_user: str | None = None
    nats_password_file: str | None = None
    #: CA bundle of the NATS servers' certificates (tls:// URLs).
    nats_ca_file: str | None = None
    #: False for a service that needs no stream (the authenticator): it does not wait for provisioning.
    needs_streams: bool = True
    #: How often the client pings its server (``BusSettings.keepalive``).
    bus_keepalive: float = KEEPALIVE_INTERVAL
    http_address: str = "0.0.0.0"
    http_port: int = 0
    stream_replicas: int = 1
    instance: str = ""
    log_level: str | None = None
    log_format: LogFormat | None = None
    #: How long in-flight work may take after SIGTERM before it is cancelled.
    stop_grace: float = 10.0
    #: How long a process whose vital task died keeps answering its (failing) probes, so the kubelet and
    #: Prometheus see why, before it exits by itself (1) where nothing restarts it sooner.
    failed_linger: float = 120.0


@dataclass(slots=True)
class ServiceContext:
    component: str
    instance: str
    bus: Bus
    health: Health
    stopping: asyncio.Event
    options: RuntimeOptions

    @property
    def producer(self) -> str:
        return f"{self.component}/{self.instance}"


ServiceMain = Callable[[ServiceContext], Coroutine[Any, Any, None]]


def default_instance() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


async def run_service(component: str, options: RuntimeOptions, main: ServiceMain) -> int:
    """Run ``main`` until SIGTERM/SIGINT; returns the process exit code (0 on a clean stop)."""
    setup_logging(component, level=options.log_level, log_format=options.log_format)
    setup_tracing(f"metalbus-{component}")
    instance = options.instance or default_instance()
    health = Health()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # the loop's lag, from the first moment on (a stall while connecting or provisioning counts too)
    lag_probe = supervised(LoopLagProbe(component=component).run, name="loop-lag", on_failure=OnFailure.REPORT)
    with (
        CollectorPauses(component=component),
        HealthServer(health, host=options.http_address, port=options.http_port) as server,
    ):
        log.info("starting component=%s instance=%s http_address=%s http_port=%d",
                 component, instance, options.http_address, server.port)
        settings = BusSettings(url=options.nats_url, replicas=options.stream_replicas, user=options.nats_user,
                               password_file=options.nats_password_file, tls_ca_file=options.nats_ca_file,
                               keepalive=options.bus_keepalive)
        bus = await Bus.connect(
            settings,
            producer=f"{component}/{instance}",
            on_disconnect=lambda: health.set_ready("bus", False, "disconnected from NATS"),
            on_reconnect=lambda: health.set_ready("bus", True),
        )
        try:
            if options.needs_streams and not await wait_until_provisioned(bus, health=health, stopping=stopping):
                return 0
            ctx = ServiceContext(component, instance, bus, health, stopping, options)
            supervise_process(component=component, health=health, stopping=stopping)
            task = asyncio.create_task(
                watch(lambda: main(ctx), name="main", on_failure=OnFailure.FAIL_PROBES), name=f"{component}-main"
            )
            stop_wait = asyncio.create_task(stopping.wait())
            await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                log.info("stopping component=%s grace_s=%.1f", component, options.stop_grace)
                done, _ = await asyncio.wait({task}, timeout=options.stop_grace)
                if not done:
                    task.cancel()
            stop_wait.cancel()
            code = 0
            try:
                await task
            except asyncio.CancelledError:
                log.warning("main task cancelled after the grace period component=%s", component)
            except TaskFailed as failed:  # logged, counted, on the probes: the kubelet restarts the process
                code = 1
                await _linger(failed, stopping, options.failed_linger)
        finally:
            health.set_ready("stopping", False, "shutting down")
            lag_probe.cancel()
            await bus.close()
            shutdown_tracing()
    log.info("stopped component=%s code=%d", component, code)
    return code


async def _linger(failed: TaskFailed, stopping: asyncio.Event, seconds: float) -> None:
    log.error("service failed, waiting to be restarted error=%s linger_s=%.0f", failed, seconds)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
