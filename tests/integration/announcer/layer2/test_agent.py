"""The L2 agent on a real nats-server, with socket pairs standing in for the raw sockets (no root needed).

A story: placements read before anything is answered; only the newest epoch counts; reports on change;
a claim on the wire is kept while connected and yielded while partitioned; the resync on return.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from ipaddress import IPv4Address

import pytest

from schemas.events import AnnouncementReported, L2PlacementDecided, ServiceId
from services.announcer.agents.layer2 import L2Agent
from services.announcer.agents.layer2_metrics import L2Collector
from services.announcer.l2 import arp
from services.announcer.l2.interfaces import InterfaceFacts
from services.common.bus import Bus
from services.common.provision import provision
from services.common.subjects import ANNOUNCE_PREFIX, StreamName, ipam_placement_subject
from tests.unit.announcer.l2.test_responder import NODE_MAC, OTHER_MAC, Wire
from tests.waiting import async_wait_until

VIP1, VIP2 = IPv4Address("192.0.2.10"), IPv4Address("192.0.2.11")
WEB = ServiceId(namespace="default", name="web")
LINKS = [InterfaceFacts(name="eth0", index=2, mac=NODE_MAC, up=True)]


async def place(bus: Bus, ip: IPv4Address, node: str) -> int:
    event = L2PlacementDecided(ip=str(ip), node=node, services=(WEB,), interfaces=("eth0",))
    return (await bus.publish(ipam_placement_subject(str(ip)), event)).sequence


async def reports(bus: Bus) -> dict[str, AnnouncementReported]:
    found: dict[str, AnnouncementReported] = {}
    async for received in bus.read(StreamName.ANNOUNCE, subjects=[f"{ANNOUNCE_PREFIX}.a.ip.>"], last_per_subject=True):
        assert isinstance(received.event, AnnouncementReported)
        found[received.event.ip] = received.event
    return found


class ServerAnswers:
    """Whether the server answers the agent's round trips: cut, a PING gets no PONG (a cut link)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._flush = bus.flush
        self._answering = asyncio.Event()
        self._answering.set()

    async def _flush_when_answering(self, *, within: int) -> None:
        async with asyncio.timeout(within):
            await self._answering.wait()
        await self._flush(within=within)

    def install(self) -> None:
        self._bus.flush = self._flush_when_answering  # type: ignore[method-assign]

    def cut(self) -> None:
        self._answering.clear()

    def restore(self) -> None:
        self._answering.set()


@contextlib.asynccontextmanager
async def running(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[L2Agent, Wire, ServerAnswers]]:
    wire = Wire(monkeypatch)
    answers = ServerAnswers(bus)
    answers.install()
    agent = L2Agent(bus, node="a", list_links=lambda: list(LINKS), collector=L2Collector())
    stopping = asyncio.Event()
    task = asyncio.create_task(agent.run(stopping))
    try:
        yield agent, wire, answers
    finally:
        answers.restore()
        stopping.set()
        await asyncio.wait_for(task, 10)


async def test_placements_epochs_reports_conflicts_partition_and_resync(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await place(bus, VIP1, "a")
    await place(bus, VIP2, "b")
    async with running(bus, monkeypatch) as (agent, wire, server):
        # What was placed before the start is answered, with a gratuitous announcement, and reported.
        await async_wait_until(lambda: set(agent.answering()) == {VIP1}, what="VIP1 answered")
        frames = [arp.parse_arp(f) for f in await wire.receive("eth0", 2)]
        assert {f.sender_ip for f in frames if isinstance(f, arp.ArpPacket)} == {VIP1}
        await async_wait_until(lambda: _reported(bus, str(VIP1), True, first), what="VIP1 reported")

        # The newest epoch wins: VIP1 moves to b, VIP2 comes to a.
        moved = await place(bus, VIP1, "b")
        second = await place(bus, VIP2, "a")
        await async_wait_until(lambda: set(agent.answering()) == {VIP2}, what="VIP2 alone")
        await async_wait_until(lambda: _reported(bus, str(VIP1), False, moved), what="VIP1 withdrawn")
        await async_wait_until(lambda: _reported(bus, str(VIP2), True, second), what="VIP2 reported")

        # Connected: another MAC claiming VIP2 is counted, the placement wins.
        claim = arp.build_gratuitous_reply(mac=OTHER_MAC, ip=VIP2)
        wire.ends["eth0"].send(claim)
        await async_wait_until(lambda: agent.ownership.yielded() == frozenset() and _conflicts(agent) >= 1,
                               what="the conflict counted")
        assert set(agent.answering()) == {VIP2}

        # Connected, but the placement cannot be read back in time: the view is not trusted, VIP2 is yielded
        # and every placement read again, which gives VIP2 back (it is still placed here).
        async def unreadable(*_args: object) -> None:
            raise TimeoutError("no answer from the stream")

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(bus, "last_value", unreadable)
            wire.ends["eth0"].send(claim)
            await async_wait_until(lambda: agent.yields.get(str(VIP2)) == 1, what="VIP2 yielded, unverified")
        await async_wait_until(lambda: set(agent.answering()) == {VIP2}, timeout=5, what="VIP2 back after a resync")

        # Partitioned (the server answers no round trip): the last IPs keep answering ...
        server.cut()
        await async_wait_until(lambda: agent.partitioned, timeout=2, what="the partition noticed")
        assert set(agent.answering()) == {VIP2}
        # ... until another station claims one: then it is yielded at once.
        wire.ends["eth0"].send(claim)
        await async_wait_until(lambda: agent.answering() == {}, timeout=2, what="VIP2 yielded")
        assert agent.ownership.yielded() == {VIP2} and agent.yields == {str(VIP2): 2}

        # Back on the bus: the placements are read again; VIP2 is still ours, so it is answered again.
        server.restore()
        await async_wait_until(lambda: not agent.partitioned and set(agent.answering()) == {VIP2}, timeout=5,
                               what="the resync")
        assert agent.ownership.yielded() == frozenset()


async def _reported(bus: Bus, ip: str, announcing: bool, epoch: int) -> bool:
    report = (await reports(bus)).get(ip)
    return report is not None and report.announcing is announcing and report.placement_epoch == epoch


def _conflicts(agent: L2Agent) -> int:
    return sum(agent.stats.conflicts.values()) if agent.stats is not None else 0


async def test_only_the_ips_held_are_kept_and_one_moved_while_partitioned_is_withdrawn_naming_the_move(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = [IPv4Address("198.51.100.0") + index for index in range(200)]
    for index, ip in enumerate(elsewhere):
        await place(bus, ip, f"n{index % 5}")
    ours = await place(bus, VIP1, "a")
    async with running(bus, monkeypatch) as (agent, _wire, server):
        await async_wait_until(lambda: _reported(bus, str(VIP1), True, ours), what="VIP1 reported")
        assert set(agent.ownership.held()) == {VIP1}  # nothing of the 200 other nodes' placements

        # Live: other nodes' placements that change keep nothing; one placed here is answered.
        for ip in elsewhere[:50]:
            await place(bus, ip, "n9")
        await place(bus, VIP2, "a")
        await async_wait_until(lambda: set(agent.answering()) == {VIP1, VIP2}, what="VIP2 answered too")
        assert set(agent.ownership.held()) == {VIP1, VIP2}

        # VIP1 moves away while the agent is partitioned. Whether the move arrives live (a fetch in flight when
        # the round trips stopped) or with the resync (VIP1 was reported, so its subject is read in full), its
        # withdrawal names the placement that moved it.
        server.cut()
        await async_wait_until(lambda: agent.partitioned, timeout=2, what="the partition noticed")
        moved = await place(bus, VIP1, "b")
        server.restore()
        await async_wait_until(lambda: _reported(bus, str(VIP1), False, moved), timeout=5, what="VIP1 withdrawn")
        await async_wait_until(lambda: not agent.partitioned and set(agent.answering()) == {VIP2}, timeout=5,
                               what="VIP2 alone after the resync")  # fmt: skip
        assert VIP2 in agent.ownership.held() and set(agent.ownership.held()) <= {VIP1, VIP2}


async def test_placements_made_again_on_a_new_stream_are_what_it_answers(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IPAM deleted and made again under the agent (a NATS store lost): its sequences start over, so the
    follower cannot go on from its position; the placements are read anew and the new stream's are answered."""
    await place(bus, VIP1, "a")
    async with running(bus, monkeypatch) as (agent, _wire, _server):
        await async_wait_until(lambda: set(agent.answering()) == {VIP1}, what="VIP1 answered")
        await bus.js.delete_stream(StreamName.IPAM.value)
        await provision(bus)
        await place(bus, VIP2, "a")  # ipam's decisions on the new stream: VIP1 is not placed here any more
        await place(bus, VIP1, "b")
        await async_wait_until(lambda: set(agent.answering()) == {VIP2}, timeout=15,
                               what="the new stream's placements answered")
