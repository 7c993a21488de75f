"""``metalbus watcher``: Kubernetes in, status out — the only component that talks to the API server.

Every replica runs for the ``metalbus-watcher`` Lease; while it leads it runs, side by side, the
observe side (reflectors publishing to ``K8S``) and the status writer (``services/watcher/status``,
writing Service status, Events and status objects from the IPAM and ANNOUNCE streams). A standby
replica does nothing but wait for the Lease, and listens for the server's reports of closed connections: the
one its leader's record names takes the Lease over at once (``leader.py``).

Readiness: ready while standing by, and while leading once every initial list is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from nats.aio.msg import Msg

from services.common.bus import Bus
from services.common.errors import MetalbusError
from services.common.runtime import ServiceContext, ServiceMain
from services.common.subjects import CONNECTIONS_CLOSED
from services.common.supervision import OnFailure, Supervisor
from services.watcher.kube import KubeClients, call, load_clients
from services.watcher.leader import LeaderElector, LeaseSettings, lead
from services.watcher.observe import ReflectorSettings, build_observers
from services.watcher.observe.oversized import OversizedWarnings
from services.watcher.sightings import Sightings
from services.watcher.status.objects import ObjectApi
from services.watcher.status.writer import run_status_writer

log = logging.getLogger(__name__)

READY_CHECK = "observe"
#: Watches hold a connection each: give the observe side a pool of its own, large enough for all.
OBSERVE_POOL_SIZE = 32


class RunStatusWriter(Protocol):
    async def __call__(
        self, *, bus: Bus, clients: KubeClients, namespace: str, stopping: asyncio.Event, sightings: Sightings
    ) -> None: ...


def chosen_status_writer(choice: RunStatusWriter | bool) -> RunStatusWriter | None:
    """True: the real status writer (``services/watcher/status``); False: none; else the one given."""
    if choice is True:
        return run_status_writer
    if choice is False:
        return None
    return choice


def observe_clients(clients: KubeClients) -> KubeClients:
    """Clients on a connection pool of their own for the long-lived watch connections."""
    return clients.with_pool(OBSERVE_POOL_SIZE)


def watcher_main(
    *,
    kubeconfig: str | None,
    namespace: str,
    lease: LeaseSettings | None = None,
    reflectors: ReflectorSettings | None = None,
    status_writer: RunStatusWriter | bool = True,
) -> ServiceMain:
    """``status_writer``: True runs the real one, False none, or a writer of your own (tests)."""

    async def main(ctx: ServiceContext) -> None:
        clients = await call(load_clients, kubeconfig)
        watch_clients = observe_clients(clients)
        writer = chosen_status_writer(status_writer)
        elector = LeaderElector(
            coordination=clients.coordination, namespace=namespace, identity=ctx.instance, settings=lease,
            connection=lambda: ctx.bus.connection,
        )
        ctx.bus.on_reconnect(elector.renew_now.set)  # the Lease names the new connection at once

        async def closed(message: Msg) -> None:
            try:
                await elector.closed_reported(message.data)
            except Exception:  # one report's trouble; the Lease expires as before
                log.exception("closed connection report failed identity=%s", ctx.instance)

        async def term(over: asyncio.Event) -> None:
            await _lead_term(
                ctx=ctx, clients=clients, watch_clients=watch_clients, namespace=namespace,
                reflectors=reflectors, writer=writer, over=over,
            )

        def leading(is_leader: bool) -> None:
            if is_leader:
                ctx.health.set_ready(READY_CHECK, False, "leading: initial lists not yet published")
            else:
                ctx.health.set_ready(READY_CHECK, True)

        ctx.health.set_ready(READY_CHECK, False, "electing a leader")
        ctx.health.set_ready("starting", True)
        reports = await ctx.bus.subscribe(CONNECTIONS_CLOSED, cb=closed)
        try:
            await lead(elector=elector, work=term, stopping=ctx.stopping, on_change=leading)
        finally:
            with contextlib.suppress(MetalbusError):  # the bus may be gone already
                await reports.close()
            elector.close()
            await asyncio.to_thread(watch_clients.close)
            await asyncio.to_thread(clients.close)

    return main


async def _lead_term(
    *,
    ctx: ServiceContext,
    clients: KubeClients,
    watch_clients: KubeClients,
    namespace: str,
    reflectors: ReflectorSettings | None,
    writer: RunStatusWriter | None,
    over: asyncio.Event,
) -> None:
    """One term of leadership: observe and write status until ``over`` is set."""
    sightings = Sightings()  # the objects the reflectors read, told to the status writer (it owns their status)
    observers = build_observers(bus=ctx.bus, clients=watch_clients, namespace=namespace, settings=reflectors,
                                warn=OversizedWarnings(ObjectApi(clients)), seen=sightings.tell)

    async def ready_when_synced() -> None:
        await observers.wait_synced()
        ctx.health.set_ready(READY_CHECK, True)
        log.info("initial lists published namespace=%s", namespace)

    # Every task RESTARTs: the reflectors list again, the status writer rebuilds from the streams, the
    # readiness check waits again; a failure of the term itself ends the leadership (``lead``).
    async with Supervisor() as group:
        observing = group.start("observe", observers.run, on_failure=OnFailure.RESTART)
        readiness = group.start("observe-ready", ready_when_synced, on_failure=OnFailure.RESTART)
        if writer is not None:
            group.start(
                "status-writer",
                lambda: writer(bus=ctx.bus, clients=clients, namespace=namespace, stopping=over,
                               sightings=sightings),
                on_failure=OnFailure.RESTART,
            )
        await over.wait()
        observing.cancel()
        readiness.cancel()
