"""A read of many messages keeps the connection's round trips short, and a skim takes what it reads whole."""

from __future__ import annotations

import asyncio

from schemas.events import L2PlacementCleared, L2PlacementDecided
from schemas.events.codec import encode, wrap
from schemas.events.gist import NodeMark, placed_elsewhere
from services.common.bus import Bus
from services.common.subjects import IPAM_PLACEMENTS, StreamName, ipam_placement_subject

PLACEMENTS = 3_000


async def fill(bus: Bus) -> None:
    acks = []
    for index in range(PLACEMENTS):
        ip = f"10.1.{index >> 8}.{index & 255}"
        event = L2PlacementCleared(ip=ip) if index % 3 == 0 else L2PlacementDecided(ip=ip, node=f"n{index % 7}",
                                                                                      services=())  # fmt: skip
        acks.append(await bus.js.publish_async(ipam_placement_subject(ip), encode(wrap(event, producer="test"))))
    await asyncio.gather(*acks)


async def test_a_round_trip_during_a_long_read_waits_behind_one_batch_not_the_whole_stream(bus: Bus) -> None:
    await fill(bus)
    read = 0
    answered_after: int | None = None
    round_trip: asyncio.Task[None] | None = None

    def done(_: object) -> None:
        nonlocal answered_after
        answered_after = read

    async for _ in bus.read(StreamName.IPAM, subjects=[IPAM_PLACEMENTS], last_per_subject=True, batch=100):
        read += 1
        if round_trip is None:
            round_trip = asyncio.ensure_future(bus.flush(within=30))
            round_trip.add_done_callback(done)
    assert round_trip is not None
    await round_trip
    assert read == PLACEMENTS
    assert answered_after is not None and answered_after <= 300  # behind the batches in flight, no more


async def test_a_skim_takes_what_it_reads_and_the_rest_is_read_in_full(bus: Bus) -> None:
    await fill(bus)
    skimmed: list[str] = []
    n1 = NodeMark("n1")

    def skim(subject: str, body: bytes) -> bool:
        if not placed_elsewhere(body, n1):
            return False
        skimmed.append(subject)
        return True

    whole = [r async for r in bus.read(StreamName.IPAM, subjects=[IPAM_PLACEMENTS], last_per_subject=True,
                                       batch=250, skim=skim)]  # fmt: skip
    assert len(skimmed) + len(whole) == PLACEMENTS and skimmed
    assert whole and all(getattr(r.event, "node", None) == "n1" for r in whole)  # only n1's read in full
