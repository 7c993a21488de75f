"""A known death is taken over at once: the watcher's Lease names its holder's bus connection, and a standby
that hears the server report that connection closed takes the Lease there and then, not 15 s later; a report
of a connection the Lease no longer names, or of a server shutting down, takes nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from schemas.events import BusConnection
from services.common.bus import Bus, BusSettings
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser
from services.watcher.leader import LEASE_NAME, LeaderElector, LeaseSettings, lead, named_connection
from tests.advisories import closed_advisory
from tests.integration.test_cli import METALBUS, Process
from tests.integration.watcher.helpers import NAMESPACE, http_ready
from tests.integration.watcher.test_leader import Candidate
from tests.kubeapi import KubeApi
from tests.waiting import async_wait_until

#: The shipped Lease (15 s); a standby reads it only when it starts, so what it last read is known.
SHIPPED = LeaseSettings()
STANDBY = LeaseSettings(retry_every=60.0)
#: Far below the 15 s a dead leader's Lease takes to expire, far above the 2 s the takeover is meant to take.
TAKEOVER_DEADLINE = 5.0


def takeovers(reason: str) -> float:
    return REGISTRY.get_sample_value("metalbus_lease_takeovers_total",
                                     {"lease": LEASE_NAME, "reason": reason}) or 0.0


def lease(kube_api: KubeApi) -> dict[str, object]:
    found = kube_api.get_object("leases", LEASE_NAME, NAMESPACE)
    assert found is not None
    return found


def holder(kube_api: KubeApi) -> str:
    spec = lease(kube_api).get("spec") or {}
    assert isinstance(spec, dict)
    return str(spec.get("holderIdentity") or "")


@contextlib.contextmanager
def watchers(server: EmbeddedNats, kubeconfig: Path, *names: str) -> Iterator[dict[str, Process]]:
    """``metalbus watcher`` processes as the watcher user, each its own instance name; all ended on leaving."""
    running: dict[str, Process] = {}
    try:
        for name in names:
            running[name] = Process(
                [*METALBUS, "watcher", "--nats", server.url_for(BusUser.WATCHER), "--kubeconfig", str(kubeconfig),
                 "--namespace", NAMESPACE, "--http-port", "0", "--http-host", "127.0.0.1"],
                env={**os.environ, "POD_NAME": name})
        yield running
    finally:
        for process in running.values():
            process.stop()


async def wait_ready(process: Process) -> None:
    await async_wait_until(lambda: process.find(r"http_port=(\d+)") is not None, timeout=30,
                           what="the health endpoint")
    match = process.find(r"http_port=(\d+)")
    assert match is not None
    await async_wait_until(lambda: asyncio.to_thread(http_ready, int(match.group(1))), timeout=30, what="ready")


async def test_a_standby_takes_the_lease_within_seconds_of_the_leaders_kill_9(
    kube_api: KubeApi, secured_server: EmbeddedNats, tmp_path: Path
) -> None:
    """Two real watcher processes with the shipped 15 s Lease, as the watcher user (the server refuses it
    nothing: leaving the secured server fails on a violation); the leader is killed with SIGKILL."""
    kubeconfig = kube_api.kubeconfig(tmp_path / "kubeconfig")
    with watchers(secured_server, kubeconfig, "w1", "w2") as running:
        await asyncio.gather(*(wait_ready(p) for p in running.values()))  # the standby is ready once it read
        leader = holder(kube_api)
        assert leader in running, leader
        (standby,) = set(running) - {leader}
        named = named_connection(lease(kube_api))
        assert named is not None and named.client_id > 0, "the Lease names no bus connection"

        running[leader].popen.kill()
        killed = time.monotonic()
        running[leader].popen.wait(10)
        await async_wait_until(lambda: holder(kube_api) == standby, timeout=TAKEOVER_DEADLINE,
                               what="the standby holding the Lease")
        took = time.monotonic() - killed
        await async_wait_until(lambda: running[standby].find(f"leading identity={standby}") is not None,
                               timeout=TAKEOVER_DEADLINE, what="the standby leading")
        said = running[standby].find(r'"lease taken from a closed connection" .*previous=(\S+) .*Client Closed')
        assert said is not None and said.group(1) == leader, "".join(running[standby].lines[-20:])
        print(f"kill -9 -> the standby holds the Lease in {took:.3f} s")


@dataclass
class Pair:
    """A leader and a standby on one Lease; the leader names a bus connection of its own."""

    leader: Candidate
    leader_elector: LeaderElector
    standby: Candidate
    standby_elector: LeaderElector
    buses: list[Bus]
    naming: list[Bus]

    @property
    def named(self) -> BusConnection:
        """The connection the leader names now."""
        return self.naming[-1].connection

    def reconnect(self) -> None:
        """As a reconnection does: the leader's process is on another connection, and renews at once."""
        self.naming.append(self.buses[1])
        self.leader_elector.renew_now.set()


class FirstReadFindsNothing(client.CoordinationV1Api):
    """The standby's API as when it read the Lease just before the leader made it: the first read finds none,
    so its own create is refused (409)."""

    found_nothing = False

    def read_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        if not self.found_nothing:
            self.found_nothing = True
            raise ApiException(status=404, reason="Not Found")
        return super().read_namespaced_lease(*args, **kwargs)


@contextlib.asynccontextmanager
async def leader_and_standby(
    kube_api: KubeApi, nats_server: EmbeddedNats, *,
    standby_api: type[client.CoordinationV1Api] = client.CoordinationV1Api,
) -> AsyncIterator[Pair]:
    """A leader and a standby that read the Lease once (when it started), both with the shipped 15 s Lease;
    everything ended on leaving."""
    buses = [await Bus.connect(BusSettings(url=nats_server.url), producer=f"watcher/{n}") for n in ("a1", "a2")]
    naming = [buses[0]]
    api = kube_api.api_client()
    coordination = client.CoordinationV1Api(api)
    pair = Pair(
        leader=Candidate("a"),
        leader_elector=LeaderElector(coordination=coordination, namespace=NAMESPACE, identity="a",
                                     settings=SHIPPED, connection=lambda: naming[-1].connection),
        standby=Candidate("b"),
        standby_elector=LeaderElector(coordination=standby_api(api), namespace=NAMESPACE, identity="b",
                                      settings=STANDBY, connection=lambda: buses[1].connection),
        buses=buses, naming=naming,
    )
    tasks: list[asyncio.Task[None]] = []
    try:
        for candidate, elector in ((pair.leader, pair.leader_elector), (pair.standby, pair.standby_elector)):
            tasks.append(asyncio.create_task(lead(elector=elector, work=candidate.work, stopping=candidate.stopping,
                                                  on_change=candidate.terms.append)))
            await async_wait_until(lambda c=candidate: bool(c.terms), what=f"{candidate.identity} running")
        assert pair.leader.working and pair.standby.terms == [False]
        assert named_connection(lease(kube_api)) == buses[0].connection
        yield pair
    finally:
        pair.leader.stopping.set()
        pair.standby.stopping.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        pair.leader_elector.close()
        pair.standby_elector.close()
        await asyncio.to_thread(api.close)
        for bus in buses:
            await bus.close()


async def test_a_closed_connection_the_leader_reconnected_from_takes_nothing(
    kube_api: KubeApi, nats_server: EmbeddedNats
) -> None:
    """The standby last read a record naming the leader's first connection; the leader has renewed from its new
    one since: the report of the first, read again, names a connection the Lease no longer names."""
    async with leader_and_standby(kube_api, nats_server) as pair:
        first = pair.named
        pair.reconnect()
        await async_wait_until(lambda: named_connection(lease(kube_api)) == pair.named, timeout=5,
                               what="the Lease naming the leader's new connection")
        assert pair.named != first
        before = takeovers("Client Closed")
        assert not await pair.standby_elector.closed_reported(closed_advisory(first, "Client Closed"))
        assert holder(kube_api) == "a" and pair.leader.terms == [True] and pair.standby.terms == [False]
        assert takeovers("Client Closed") == before
        # control: the connection the Lease names now, reported closed, is taken at once
        assert await pair.standby_elector.closed_reported(closed_advisory(pair.named, "Client Closed"))
        await async_wait_until(lambda: pair.standby.working, timeout=TAKEOVER_DEADLINE, what="the standby leading")
        assert takeovers("Client Closed") == before + 1


async def test_a_standby_whose_create_lost_the_race_takes_over_at_once(
    kube_api: KubeApi, nats_server: EmbeddedNats
) -> None:
    """Both replicas start at once: the standby read no Lease, and its create was refused because the leader's
    came first. It reads the Lease again there and then, so the leader's death is known at once, not after the
    standby's next attempt (60 s here; 2 s as shipped, which a kill -9 right after both were ready beat)."""
    async with leader_and_standby(kube_api, nats_server, standby_api=FirstReadFindsNothing) as pair:
        assert isinstance(pair.standby_elector.coordination, FirstReadFindsNothing)
        assert pair.standby_elector.coordination.found_nothing
        before = takeovers("Client Closed")
        assert await pair.standby_elector.closed_reported(closed_advisory(pair.named, "Client Closed"))
        assert holder(kube_api) == "b"
        await async_wait_until(lambda: pair.standby.working, timeout=TAKEOVER_DEADLINE, what="the standby leading")
        assert takeovers("Client Closed") == before + 1


async def test_a_server_shutting_down_takes_nothing_and_a_deposed_leader_steps_down(
    kube_api: KubeApi, nats_server: EmbeddedNats
) -> None:
    """The leader's client reconnects to another server: no death. A close for another reason deposes it; alive,
    it finds the Lease taken at its next renewal and stops its work."""
    async with leader_and_standby(kube_api, nats_server) as pair:
        before = takeovers("Server Shutdown")
        assert not await pair.standby_elector.closed_reported(closed_advisory(pair.named, "Server Shutdown"))
        assert holder(kube_api) == "a" and pair.standby.terms == [False]
        assert takeovers("Server Shutdown") == before
        # control: the same connection closed as stale (the leader cut off, say) deposes it
        assert await pair.standby_elector.closed_reported(closed_advisory(pair.named, "Stale Connection"))
        assert holder(kube_api) == "b"
        await async_wait_until(lambda: pair.standby.working and not pair.leader.working,
                               timeout=SHIPPED.renew_every + TAKEOVER_DEADLINE, what="the leader stepping down")
        assert pair.leader.terms == [True, False]
