"""The ipam service on a real nats-server: decisions, restarts, two replicas, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator

import pytest

from schemas.events import AllocationFailureReason, ConfigurationEvaluated, ObjectKind
from schemas.events.codec import encode, wrap
from services.common.bus import Bus, BusSettings
from services.common.errors import RetryableError, newer_schema_in
from services.common.follower import Follower
from services.common.nats_server import EmbeddedNats
from services.common.provision import provision
from services.common.subjects import (
    IPAM_CONFIG_SUBJECT,
    StreamName,
    ipam_allocation_subject,
    k8s_subject,
    observed_subject,
)
from services.ipam import replica as replica_module
from services.ipam.replica import Replica, ReplicaSettings, Role
from tests.builders import pool, service, service_deleted
from tests.integration.ipam.helpers import (
    allocations,
    double_allocations,
    failures,
    lease_holder,
    observe,
    start_ipam,
    stop,
)
from tests.waiting import async_wait_until

FAST = ReplicaSettings(lease_ttl=1.0, lease_interval=0.1)


class Running:
    """An in-process replica with its own connection; ``stop()`` is a graceful SIGTERM."""

    def __init__(self, replica: Replica, bus: Bus) -> None:
        self.replica = replica
        self.bus = bus
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(replica.run(self._stopping))

    async def stop(self) -> None:
        if not self._task.done():
            self._stopping.set()
            await asyncio.wait_for(self._task, 10)
        await self.bus.close()

    async def ended(self) -> BaseException | None:
        """How ``run`` ended on its own (without ``stop``): None, or what it raised."""
        await async_wait_until(self._task.done, what="the replica to stop")
        return self._task.exception()


@contextlib.asynccontextmanager
async def replica(url: str, name: str, *, settings: ReplicaSettings = FAST) -> AsyncIterator[Running]:
    """An ipam replica in process; with the ipam user's credential, ``settings`` must keep the declared lease
    TTL (the bucket is the administrative step's: a service may not retune it)."""
    bus = await Bus.connect(BusSettings(url=url), producer=f"ipam/{name}")
    running = Running(Replica(bus, holder=f"ipam/{name}", settings=settings), bus)
    try:
        yield running
    finally:
        await running.stop()


async def test_services_get_addresses_and_deletions_free_them(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, [pool("lan", "192.168.10.0/24"), service("web"), service("db")])
    async with replica(nats_server.url, "a") as active:
        await async_wait_until(active.replica.activated.is_set, what="activation")
        await async_wait_until(lambda: _count(bus, 2), what="two allocations")
        assert await allocations(bus) == {"default/db": ("192.168.10.0",), "default/web": ("192.168.10.1",)}
        await observe(bus, [service_deleted("db"), service("api")])
        await async_wait_until(
            lambda: _equals(bus, {"default/web": ("192.168.10.1",), "default/api": ("192.168.10.0",)}),
            what="db's address to go to api",
        )


async def test_without_spans_of_its_own_a_decision_carries_the_observations_trace(
    bus: Bus, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(replica_module, "spans_exported", lambda: False)  # a process with no exporter
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await observe(bus, [pool("lan", "192.168.10.0/24")])
    async with replica(nats_server.url, "a") as active:
        await async_wait_until(active.replica.activated.is_set, what="activation")
        web = service("web")
        await bus.publish_many([(observed_subject(web), web, None, {"traceparent": traceparent})])
        await observe(bus, [service("db")])
        await async_wait_until(lambda: _count(bus, 2), what="two allocations")
    web_decided = await bus.last_value(StreamName.IPAM, ipam_allocation_subject("default", "web"))
    assert web_decided is not None and web_decided.headers.get("traceparent") == traceparent
    db_decided = await bus.last_value(StreamName.IPAM, ipam_allocation_subject("default", "db"))
    assert db_decided is not None and "traceparent" not in db_decided.headers  # no trace made up


async def test_malformed_and_invalid_input_fail_alone(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, [pool("lan", "192.168.10.0/24")])
    async with replica(nats_server.url, "a") as active:
        await async_wait_until(active.replica.activated.is_set, what="activation with a valid configuration")
        await bus.js.publish(k8s_subject(ObjectKind.SERVICE, "default", "garbage"), b"\x00not an event")
        await observe(bus, [
            pool("broken", "not-a-cidr"),
            service("wrong", annotations={"metallb.io/loadBalancerIPs": "10.9.9.9"}),
            service("fine"),
        ])
        await async_wait_until(lambda: _count(bus, 1), what="the healthy Service served")
        await async_wait_until(lambda: _failed(bus, "default/wrong"), what="the refused Service's failure")
        failed = (await failures(bus))["default/wrong"]
        assert failed.reason is AllocationFailureReason.REQUESTED_IP_NOT_IN_POOL and "10.9.9.9" in failed.message
        assert (await allocations(bus))["default/fine"] == ("192.168.10.0",), "the last valid pools stay in force"
        evaluated = await bus.last_value(StreamName.IPAM, IPAM_CONFIG_SUBJECT)
        assert evaluated is not None and isinstance(evaluated.event, ConfigurationEvaluated)
        assert not evaluated.event.valid
        assert any("not-a-cidr" in problem.message for problem in evaluated.event.problems)
        await async_wait_until(lambda: _dead_letters(bus, 1), what="the malformed message dead-lettered")


def newer_release(data: bytes) -> bytes:
    """The same event as a release newer than this build would write it."""
    body = json.loads(data)
    return json.dumps({**body, "schema_version": body["schema_version"] + 1}).encode()


async def test_a_replica_stops_at_an_event_newer_than_it_reads_rather_than_decide_or_replay_without_it(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    """A newer release's observation stops the active replica where it stands (nothing observed after it is
    decided on a world missing it); a newer release's allocation stops the replay that would forget it."""
    await observe(bus, [pool("lan", "192.168.10.0/24"), service("web")])
    async with replica(nats_server.url, "a") as active:
        await async_wait_until(lambda: _count(bus, 1), what="web's allocation")
        api = service("api")
        await bus.js.publish(observed_subject(api), newer_release(encode(wrap(api, producer="watcher/next"))))
        await observe(bus, [service("db")])
        stopped = newer_schema_in(await active.ended() or RuntimeError("ended cleanly"))
        assert stopped is not None and stopped.stream == "K8S"
        assert "ServiceObserved schema version" in str(stopped)
    assert list(await allocations(bus)) == ["default/web"]
    # the newest allocation of web as the next release writes it: a replay must not forget it
    web = await bus.js.get_last_msg(StreamName.IPAM.value, ipam_allocation_subject("default", "web"))
    assert web.data is not None
    await bus.js.publish(ipam_allocation_subject("default", "web"), newer_release(web.data))
    async with replica(nats_server.url, "b") as restarted:
        stopped = newer_schema_in(await restarted.ended() or RuntimeError("ended cleanly"))
        assert stopped is not None and stopped.stream == "IPAM" and not restarted.replica.loaded.is_set()
    assert await _dead_letters(bus, 0)


async def test_restart_mid_stream_keeps_every_address(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, [pool("lan", "10.20.0.0/22")])
    process = start_ipam(nats_server.url)
    try:
        await observe(bus, [service(f"s{i}") for i in range(150)])
        await async_wait_until(lambda: _count(bus, 150), timeout=30, what="150 allocations")
        before = await allocations(bus)
        process.send_signal(signal.SIGKILL)
        process.wait()
        await observe(bus, [service_deleted(f"s{i}") for i in range(0, 150, 3)])
        await observe(bus, [service(f"late{i}") for i in range(30)])
        process = start_ipam(nats_server.url)
        await async_wait_until(lambda: _count(bus, 150 - 50 + 30), timeout=30, what="the world after restart")
        after = await allocations(bus)
        survivors = {key: ips for key, ips in before.items() if int(key.split("/s")[1]) % 3}
        assert {key: after[key] for key in survivors} == survivors, "an address moved across a restart"
        assert await double_allocations(bus) == []
    finally:
        stop(process)


async def test_two_replicas_survive_killing_the_active_one_repeatedly(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, [pool("lan", "10.30.0.0/22")])
    processes = [start_ipam(nats_server.url), start_ipam(nats_server.url)]
    failovers: list[float] = []
    try:
        await async_wait_until(lambda: _has_holder(bus), timeout=20, what="an active replica")

        async def churn() -> None:
            for round_ in range(6):
                await observe(bus, [service(f"r{round_}-{i}") for i in range(40)])
                await observe(bus, [service_deleted(f"r{round_}-{i}") for i in range(0, 40, 4)])
                await asyncio.sleep(0.3)  # pacing of the workload, not synchronisation

        churning = asyncio.create_task(churn())
        for _ in range(3):
            holder = await lease_holder(bus)
            assert holder is not None
            victim = next(p for p in processes if holder.endswith(f"-{p.pid}"))
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = time.monotonic()
            processes.remove(victim)
            processes.append(start_ipam(nats_server.url))
            await async_wait_until(lambda h=holder: _holder_changed(bus, h), timeout=10, what="a new active replica")
            failovers.append(time.monotonic() - killed_at)
        await churning
        await async_wait_until(lambda: _count(bus, 6 * 30), timeout=30, what="every live Service allocated")
        held = await allocations(bus)
        assert set(held) == {f"default/r{r}-{i}" for r in range(6) for i in range(40) if i % 4}
        assert len({ip for ips in held.values() for ip in ips}) == len(held), "one IP held twice"
        assert await double_allocations(bus) == []
        print(f"failovers after kill -9: {', '.join(f'{seconds:.2f} s' for seconds in failovers)}")
    finally:
        for process in processes:
            stop(process)


async def test_standby_takes_over_at_once_when_the_active_one_stops(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, [pool("lan", "192.168.10.0/24"), service("web")])
    # started together (the standby hears the announcers from the start, as a standby does), either may take
    # the lease first
    async with replica(nats_server.url, "a") as one, replica(nats_server.url, "b") as other:
        await async_wait_until(
            lambda: one.replica.activated.is_set() or other.replica.activated.is_set(), what="a replica active"
        )
        first, second = (one, other) if one.replica.activated.is_set() else (other, one)
        await async_wait_until(second.replica.loaded.is_set, what="the standby loaded")
        assert second.replica.role is Role.STANDBY
        await observe(bus, [service("db")])
        await async_wait_until(lambda: _count(bus, 2), what="db decided by the active replica")
        stopped_at = time.monotonic()
        await first.stop()  # releases the lease: no waiting for it to expire
        await async_wait_until(second.replica.activated.is_set, timeout=5, what="the standby to activate")
        assert time.monotonic() - stopped_at < 1.0
        await observe(bus, [service("api")])
        await async_wait_until(lambda: _count(bus, 3), what="api decided by the new active replica")
        assert await allocations(bus) == {
            "default/web": ("192.168.10.0",), "default/db": ("192.168.10.1",), "default/api": ("192.168.10.2",),
        }


async def test_a_replica_takes_over_while_observations_never_stop(bus: Bus, nats_server: EmbeddedNats) -> None:
    """Taking over reads the observations waiting for it, not every one still to come: under Service churn
    (an observation every 20 ms here) it used to read for ever, holding the lease and deciding nothing."""
    await observe(bus, [pool("lan", "10.20.0.0/16"), service("web")])
    churning = asyncio.Event()

    async def churn() -> None:
        for index in range(10_000):
            await observe(bus, [service(f"churn-{index}")])
            churning.set()
            await asyncio.sleep(0.02)  # the pace of the churn, not a wait for anything

    churner = asyncio.create_task(churn())
    try:
        await async_wait_until(churning.is_set, what="the churn started")
        async with replica(nats_server.url, "a") as first:
            await async_wait_until(first.replica.activated.is_set, timeout=10, what="the replica active")
            await async_wait_until(lambda: _at_least(bus, 50), what="churned Services decided")
    finally:
        churner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await churner


async def test_the_active_replica_follows_the_world_not_the_decisions_it_writes(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    """Its own appends would pile up unread in a follower of IPAM (and hold a consumer on the server)."""
    provisioned = (await bus.js.stream_info(StreamName.IPAM.value)).state.consumer_count
    await observe(bus, [pool("lan", "192.168.10.0/24"), service("web")])
    async with replica(nats_server.url, "a") as active:
        await async_wait_until(active.replica.activated.is_set, what="the replica active")
        await observe(bus, [service(f"s{i}") for i in range(20)])
        await async_wait_until(lambda: _count(bus, 21), what="every Service decided")
        await async_wait_until(lambda: _consumers(bus, StreamName.IPAM, provisioned), timeout=5,
                               what="no consumer of the active replica on IPAM")


async def test_an_active_replica_that_cannot_follow_the_world_hands_over(
    bus: Bus, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lease is renewed on a connection of its own, which may reach a server its main connection cannot
    use: deciding nothing while keeping the lease would leave every new Service without an address."""
    settings = ReplicaSettings(lease_ttl=1.0, lease_interval=0.1, follow_patience=1.0)
    await observe(bus, [pool("lan", "192.168.10.0/24"), service("web")])
    # the second starts once the first is active: started together, either may take the lease first
    async with replica(nats_server.url, "a", settings=settings) as first:
        await async_wait_until(first.replica.activated.is_set, what="the first replica active")
        async with replica(nats_server.url, "b", settings=settings) as second:
            await async_wait_until(second.replica.loaded.is_set, what="the standby loaded")
            subscribe = Follower._subscribe

            async def refused_to_the_first(self: Follower) -> None:
                if self._bus is first.bus:  # the first replica's connection is the one cut off
                    raise RetryableError("follow K8S: no answer")
                await subscribe(self)

            monkeypatch.setattr(Follower, "_subscribe", refused_to_the_first)
            for info in await bus.js.consumers_info(StreamName.K8S.value):  # lost with their server
                if not info.config.durable_name:
                    await bus.js.delete_consumer(StreamName.K8S.value, info.name)
            await observe(bus, [service("db")])
            await async_wait_until(second.replica.activated.is_set, timeout=15, what="the standby to take over")
            await async_wait_until(lambda: _count(bus, 2), what="db decided by the replica that can follow")
            assert first.replica.role is Role.STANDBY


async def _consumers(bus: Bus, stream: StreamName, expected: int) -> bool:
    return int((await bus.js.stream_info(stream.value)).state.consumer_count) == expected


async def _dead_letters(bus: Bus, expected: int) -> bool:
    return int((await bus.js.stream_info(StreamName.DEAD_LETTER.value)).state.messages) == expected


async def _count(bus: Bus, expected: int) -> bool:
    return len(await allocations(bus)) == expected


async def _at_least(bus: Bus, expected: int) -> bool:
    return len(await allocations(bus)) >= expected


async def _equals(bus: Bus, expected: dict[str, tuple[str, ...]]) -> bool:
    return await allocations(bus) == expected


async def _failed(bus: Bus, key: str) -> bool:
    return key in await failures(bus)


async def _has_holder(bus: Bus) -> bool:
    return await lease_holder(bus) is not None


async def _has_holder(bus: Bus) -> bool:
    return await lease_holder(bus) is not None


async def _holder_changed(bus: Bus, old: str) -> bool:
    holder = await lease_holder(bus)
    return holder is not None and holder != old


async def test_an_active_replica_stops_cleanly_while_the_server_is_gone() -> None:
    """SIGTERM with no NATS to talk to (a node drain during an outage): a clean exit within the grace."""
    server = EmbeddedNats()
    server.__enter__()
    try:
        bus = await Bus.connect(BusSettings(url=server.url), producer="test/observer")
        async with bus:
            await provision(bus)
            process = start_ipam(server.url)
            try:
                await async_wait_until(lambda: _has_holder(bus), timeout=30, what="an active replica")
            except BaseException:
                stop(process)
                raise
    finally:
        server.__exit__(None, None, None)
    started = time.monotonic()
    assert await asyncio.to_thread(stop, process) == 0
    assert time.monotonic() - started < 15  # within its stop grace (10 s), not killed after it


async def test_a_replica_waits_for_a_bus_that_cannot_answer_its_rebuild(
    bus: Bus, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rebuild the bus cannot answer (a lost NATS server, streams electing a leader) is tried again: the
    replica waits for its cluster rather than dying of it, then decides as usual."""
    load = Replica.load
    refused: list[int] = []

    async def load_while_the_bus_cannot_answer(self: Replica) -> None:
        if len(refused) < 2:
            refused.append(1)
            raise RetryableError("stream IPAM: no leader yet")
        await load(self)

    monkeypatch.setattr(Replica, "load", load_while_the_bus_cannot_answer)
    await observe(bus, [pool("lan", "192.168.10.0/24"), service("web")])
    async with replica(nats_server.url, "a") as active:
        await async_wait_until(active.replica.activated.is_set, what="activation after two refused rebuilds")
        await async_wait_until(lambda: _count(bus, 1), what="the allocation")
    assert len(refused) == 2
