"""Heartbeat poison: malformed messages on the heartbeat subjects are counted and dropped, and failover goes on.

One message on ``heartbeat.announcer.%FF`` used to raise ``UnicodeDecodeError`` in the liveness task of every
ipam replica; nobody was judged dead afterwards and L2 failover had silently stopped.
"""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from schemas.events import AnnouncerHeartbeat
from schemas.events.codec import encode, wrap
from schemas.refusal import DropReason
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from tests.integration.ipam.helpers import observe
from tests.integration.ipam.test_placement import announcers, placements, replica, world
from tests.waiting import async_wait_until


def _heartbeat(node: str) -> bytes:
    return encode(wrap(AnnouncerHeartbeat(node=node, instance=f"{node}-x", sequence=0), producer="hostile"))


#: (subject, body, the reason it is refused for)
POISON: tuple[tuple[str, bytes, DropReason], ...] = (
    ("heartbeat.announcer.%FF", _heartbeat("\xff"), DropReason.BAD_TOKEN),  # escapes that are not UTF-8
    ("heartbeat.announcer.%", _heartbeat("%"), DropReason.BAD_TOKEN),  # a stray escape
    ("heartbeat.announcer.%C3", _heartbeat("\xc3"), DropReason.BAD_TOKEN),  # a cut-off UTF-8 sequence
    ("heartbeat.announcer.%61", _heartbeat("a"), DropReason.BAD_TOKEN),  # "a", escaped although safe
    ("heartbeat.announcer." + "x" * 3000, _heartbeat("x" * 3000), DropReason.BAD_SUBJECT),  # huge
    ("heartbeat.announcer.b", b"\xff\x00 not json", DropReason.NOT_JSON),
    ("heartbeat.announcer.b", b"[" * 100_000, DropReason.TOO_DEEP),
    ("heartbeat.announcer.b", json.dumps({"event": {"type": "AnnouncerHeartbeat\r\nX: 1"}}).encode(),
     DropReason.WRONG_SHAPE),
    ("heartbeat.announcer.b", _heartbeat("a"), DropReason.NODE_MISMATCH),  # b's subject speaking for a
)


def _refused(reason: DropReason) -> float:
    return REGISTRY.get_sample_value("metalbus_inputs_refused_total",
                                     {"component": "ipam", "reason": reason.value}) or 0.0


async def test_malformed_heartbeats_are_counted_and_failover_keeps_working(
    bus: Bus, nats_server: EmbeddedNats
) -> None:
    await observe(bus, world(6))
    async with announcers(bus) as running, replica(nats_server.url) as active:
        async def placed_everywhere() -> bool:
            return len(await placements(bus)) == 6

        await async_wait_until(placed_everywhere, timeout=15, what="six placements")
        expected = {reason: _refused(reason) for _, _, reason in POISON}
        for _, _, reason in POISON:
            expected[reason] += 1
        for subject, body, _ in POISON:
            await bus.client.publish(subject, body)
        await bus.client.flush()
        await async_wait_until(lambda: all(_refused(r) >= n for r, n in expected.items()), timeout=5,
                               what="every malformed heartbeat counted by its reason")
        assert {r: _refused(r) for r in expected} == expected

        before = await placements(bus)
        victim = before["192.168.10.0"][0]
        owned = {ip for ip, (node, _) in before.items() if node == victim}
        await running.silence(victim)

        async def moved() -> bool:
            now = await placements(bus)
            return all(now[ip][0] != victim for ip in owned)

        await async_wait_until(moved, timeout=3, what=f"{victim}'s IPs to move after the poison")
        assert active.liveness.live == {"a", "b", "c"} - {victim}
