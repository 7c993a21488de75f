"""L2 placement on a real nats-server: simulated announcers heartbeat; silence or leaving moves their IPs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import REGISTRY

from schemas.events import AnnouncerHeartbeat, Event, IPAllocated, L2PlacementDecided, ServiceObserved
from services.announcer.heartbeat import send_heartbeats
from services.common.bus import Bus, BusSettings
from services.common.heartbeats import HEARTBEAT_INTERVAL
from services.common.nats_server import EmbeddedNats
from services.common.subjects import IPAM_ALLOCATIONS, IPAM_PLACEMENTS, StreamName, heartbeat_subject
from services.ipam.liveness import LivenessWatch
from services.ipam.replica import Replica, ReplicaSettings
from tests.builders import pool, service
from tests.builders_l2 import endpoints, l2, node
from tests.integration.ipam.helpers import observe
from tests.waiting import async_wait_until

NODES = ("a", "b", "c")
FAST = ReplicaSettings(lease_ttl=1.0, lease_interval=0.1)


class Announcers:
    """One connection and one heartbeat task per node, as the announcers have: each heartbeat names its
    connection, and a node killed (its connection closed) is reported by the server."""

    def __init__(self, url: str, nodes: tuple[str, ...], interval: float = HEARTBEAT_INTERVAL) -> None:
        self._url = url
        self._interval = interval
        self._leaving: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._buses: dict[str, Bus] = {}
        self._nodes = nodes

    async def open(self) -> None:
        for name in self._nodes:
            await self.start(name)

    async def start(self, name: str) -> None:
        self._buses[name] = await Bus.connect(BusSettings(url=self._url), producer=f"announcer/{name}")
        self._leaving[name] = asyncio.Event()
        self._tasks[name] = asyncio.create_task(self._beat(name, self._buses[name]))

    async def _beat(self, name: str, bus: Bus) -> None:
        await send_heartbeats(bus, node=name, instance=f"{name}-1", stopping=self._leaving[name],
                              interval=self._interval)

    async def silence(self, name: str) -> None:
        """Stop heartbeating without a word, the connection closed (kill -9: the connection goes first, so the
        sender's cancellation can no longer say ``leaving``)."""
        await self._buses.pop(name).client.close()
        task = self._tasks.pop(name)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def leave(self, name: str) -> None:
        """Stop gracefully: one ``leaving`` heartbeat."""
        self._leaving[name].set()
        await self._tasks.pop(name)
        await self._buses.pop(name).close()

    async def close(self) -> None:
        for name in list(self._tasks):
            await self.silence(name)


@contextlib.asynccontextmanager
async def announcers(bus: Bus, nodes: tuple[str, ...] = NODES) -> AsyncIterator[Announcers]:
    running = Announcers(bus.settings.url, nodes)
    try:
        await running.open()
        yield running
    finally:
        await running.close()


class Running:
    """An in-process ipam replica with its own connection; ``stop()`` is a graceful SIGTERM."""

    def __init__(self, bus: Bus, name: str, settings: ReplicaSettings) -> None:
        self.replica = Replica(bus, holder=f"ipam/{name}", settings=settings)
        self._bus = bus
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self.replica.run(self._stopping))

    async def stop(self) -> None:
        if not self._task.done():
            self._stopping.set()
            await asyncio.wait_for(self._task, 10)
            await self._bus.close()


@contextlib.asynccontextmanager
async def replica(url: str, settings: ReplicaSettings = FAST, name: str = "l2") -> AsyncIterator[Replica]:
    running = Running(await Bus.connect(BusSettings(url=url), producer=f"ipam/{name}"), name, settings)
    try:
        yield running.replica
    finally:
        await running.stop()


async def placements(bus: Bus) -> dict[str, tuple[str, int]]:
    """IP → (node, epoch) of the newest placement per IP on the IPAM stream."""
    placed: dict[str, tuple[str, int]] = {}
    async for received in bus.read(StreamName.IPAM, subjects=[IPAM_PLACEMENTS], last_per_subject=True):
        if isinstance(received.event, L2PlacementDecided):
            placed[received.event.ip] = (received.event.node, received.sequence)
    return placed


def world(count: int) -> list[Event]:
    made: list[Event] = [pool("lan", "192.168.10.0/24"), l2(), *(node(n) for n in NODES)]
    for i in range(count):
        made += [service(f"s{i}"), endpoints(f"s{i}", *NODES)]
    return made


async def _placed_everywhere(bus: Bus, count: int) -> bool:
    return len(await placements(bus)) == count


async def test_a_killed_announcer_loses_its_ips_within_a_second(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, world(9))
    async with announcers(bus) as running, replica(nats_server.url) as active:
        await async_wait_until(lambda: _placed_everywhere(bus, 9), what="nine placements")
        before = await placements(bus)
        assert {n for n, _ in before.values()} == set(NODES)
        victim = before["192.168.10.0"][0]
        owned = {ip for ip, (n, _) in before.items() if n == victim}
        await running.silence(victim)
        silenced = time.monotonic()

        async def moved() -> bool:
            now = await placements(bus)
            return all(now[ip][0] != victim for ip in owned)

        await async_wait_until(moved, timeout=1.5, what=f"{victim}'s IPs to move within about a second")
        elapsed = time.monotonic() - silenced
        after = await placements(bus)
        assert all(after[ip][1] > before[ip][1] for ip in owned)  # a newer epoch
        assert all(after[ip] == before[ip] for ip in before if ip not in owned)  # nobody else moved
        assert elapsed < FAST.liveness_backstop  # its connection's close, not the backstop
        assert active.liveness.live == set(NODES) - {victim}
        assert REGISTRY.get_sample_value("metalbus_ipam_live_announcers") == len(NODES) - 1


async def test_a_leaving_announcer_hands_over_at_once(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, world(6))
    async with announcers(bus) as running, replica(nats_server.url):
        await async_wait_until(lambda: _placed_everywhere(bus, 6), timeout=15, what="six placements")
        before = await placements(bus)
        owned = {ip for ip, (n, _) in before.items() if n == "b"}
        assert owned
        await running.leave("b")

        async def moved() -> bool:
            now = await placements(bus)
            return all(now[ip][0] != "b" for ip in owned)

        # far sooner than the 5 s silence that would also have moved them
        await async_wait_until(moved, timeout=1.0, what="b's IPs to move on its leaving heartbeat")


async def test_a_returning_announcer_gets_a_fair_share_back(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, world(12))
    async with announcers(bus, ("a", "b")) as running, replica(nats_server.url):
        await async_wait_until(lambda: _placed_everywhere(bus, 12), what="twelve placements on a and b")
        await running.start("c")

        async def balanced() -> bool:
            loads = [n for n, _ in (await placements(bus)).values()]
            return max(loads.count(n) for n in NODES) <= 12 / 3 + 1 and loads.count("c") >= 2

        await async_wait_until(balanced, timeout=3, what="c to take its share without exceeding fair share + 1")



async def test_a_standby_that_takes_over_knows_who_is_live_and_moves_nothing(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    await observe(bus, world(6))
    async with announcers(bus) as running:
        first = Running(await Bus.connect(BusSettings(url=nats_server.url), producer="ipam/one"), "one", FAST)
        second = Running(await Bus.connect(BusSettings(url=nats_server.url), producer="ipam/two"), "two", FAST)
        try:
            await async_wait_until(lambda: _placed_everywhere(bus, 6), what="six placements")
            await async_wait_until(
                lambda: first.replica.liveness.live == second.replica.liveness.live == set(NODES),
                what="both replicas, the standby too, hearing every announcer",
            )
            active, standby = (first, second) if first.replica.activated.is_set() else (second, first)
            before = await placements(bus)
            last = await bus.last_sequence(StreamName.IPAM)
            await active.stop()  # releases the lease: the standby takes over at once
            await async_wait_until(standby.replica.activated.is_set, what="the standby to take over")
            assert await placements(bus) == before and await bus.last_sequence(StreamName.IPAM) == last
            await running.silence("c")  # and the new active replica acts on liveness

            async def moved() -> bool:
                return all(node != "c" for node, _ in (await placements(bus)).values())

            await async_wait_until(moved, timeout=2, what="c's IPs to move under the new active replica")
        finally:
            await first.stop()
            await second.stop()


async def test_a_stalled_ipam_does_not_mistake_its_own_delay_for_deaths(bus: Bus, nats_server: EmbeddedNats) -> None:
    """Heartbeats keep coming (from another thread) while the ipam's event loop is blocked for longer than
    the timeout: once it runs again it reads what waited before judging (and everyone silent at once is
    only suspected), so nobody is dead."""
    stop = threading.Event()

    def beat() -> None:
        async def main() -> None:
            sender = await Bus.connect(BusSettings(url=nats_server.url), producer="test/announcers")
            sequence = 0
            while not stop.is_set():
                for name in NODES:
                    await sender.notify(heartbeat_subject(name),
                                        AnnouncerHeartbeat(node=name, instance=name, sequence=sequence))
                sequence += 1
                await asyncio.sleep(0.1)  # the announcers' heartbeat interval
            await sender.close()

        asyncio.run(main())

    sender = threading.Thread(target=beat, name="announcers")
    sender.start()
    watch = LivenessWatch(bus, backstop=0.35, heartbeat_interval=0.1)
    try:
        await watch.start()
        await async_wait_until(lambda: watch.live == set(NODES), what="every announcer heard")
        watch.changed.clear()
        time.sleep(1.0)  # a stalled event loop (a long synchronous decision), on purpose
        await asyncio.sleep(0.5)
        assert watch.live == set(NODES) and not watch.changed.is_set() and watch.take_deaths() == {}
    finally:
        stop.set()
        await watch.stop()
        await asyncio.to_thread(sender.join, 5)


async def test_a_death_noticed_mid_batch_is_placed_before_the_rest_of_the_batch_and_nothing_is_lost(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    """A batch of observations is decided off the loop; an announcer that dies meanwhile has its IPs moved
    after the observation in hand, not after the whole batch (a cold start's backlog: seconds), and the rest
    of the batch is decided afterwards, none of it lost."""
    await observe(bus, world(6))
    backlog = [service(f"late-{i}") for i in range(200)]  # the /24 holds 250 more
    async with announcers(bus) as running, replica(nats_server.url, ReplicaSettings(
            lease_ttl=1.0, lease_interval=0.1, batch=1000)) as active:
        await async_wait_until(lambda: _placed_everywhere(bus, 6), what="six placements")
        before = await placements(bus)
        victim = before["192.168.10.0"][0]
        owned = [ip for ip, (node, _) in before.items() if node == victim]
        deciding, observe_one = threading.Event(), active.decider.observe

        def held_until_noticed(event: Event, **options: Any) -> Any:
            """The first late Service is decided only once the victim's death is noticed (on the loop)."""
            if isinstance(event, ServiceObserved) and event.ref.name == "late-0":
                deciding.set()
                deadline = time.monotonic() + 5
                while not active.liveness.dying() and time.monotonic() < deadline:
                    time.sleep(0.005)  # the decider's thread, waiting for the loop to notice the death
            return observe_one(event, **options)

        active.decider.observe = held_until_noticed  # type: ignore[method-assign]
        await observe(bus, backlog)
        await async_wait_until(deciding.is_set, what="the backlog's batch being decided")
        await running.silence(victim)

        async def decided() -> dict[str, int]:
            found: dict[str, int] = {}
            async for received in bus.read(StreamName.IPAM, subjects=[IPAM_ALLOCATIONS]):
                if isinstance(received.event, IPAllocated) and received.event.service.name.startswith("late-"):
                    found[received.event.service.name] = received.sequence
            return found

        async def everything_decided() -> bool:
            return len(await decided()) == len(backlog) and all(
                node != victim for node, _ in (await placements(bus)).values())

        await async_wait_until(everything_decided, timeout=15, what="the failover and the whole backlog")
        after = await placements(bus)
        moved_at = min(after[ip][1] for ip in owned)
        late = await decided()
        assert sorted(name for name, sequence in late.items() if sequence < moved_at) == ["late-0"]
