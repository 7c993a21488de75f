"""A peer flooding routes over a real loopback connection: the speaker hands them to its session core a slice
at a time, the loop keeps running its timers in between, and nothing the peer sent is lost or reordered."""

from __future__ import annotations

import asyncio

import pytest

from services.announcer.bgp.capabilities import IPV4_UNICAST
from services.announcer.bgp.events import Closed, CloseReason, RoutesCounted, State
from services.announcer.bgp.notification import CeaseSubcode, Notification
from services.announcer.bgp.speaker import RECEIVE_SLICE, Speaker
from tests.unit.announcer.bgp.test_speaker import pair
from tests.unit.announcer.bgp.test_update_count import announcements, full_table

ROUTES = 200_000


def router_transport(router: Speaker) -> asyncio.Transport:
    connection = router._connection
    assert connection is not None and connection.transport is not None
    return connection.transport


class Slices:
    """Spies on what the node's session core is handed, and how often the loop ran something else meanwhile."""

    def __init__(self, node: Speaker) -> None:
        self.sizes: list[int] = []
        self.timer_turns_between: int = 0
        self._timer_turns = 0
        self._last_seen = 0
        session = node.session
        receive = session.receive

        def spy(data: bytes, now: float) -> None:
            if self.sizes and self._timer_turns > self._last_seen:
                self.timer_turns_between += 1
            self._last_seen = self._timer_turns
            self.sizes.append(len(data))
            receive(data, now)

        session.receive = spy  # type: ignore[method-assign]

    def tick(self) -> None:
        """A timer of the loop (as BFD's and the keepalive's are) firing."""
        self._timer_turns += 1
        asyncio.get_running_loop().call_later(0.0005, self.tick)


async def test_a_route_flood_reaches_the_core_in_slices_with_timers_running_between() -> None:
    async with pair() as lab:
        node, router = lab.active, lab.passive
        async with asyncio.timeout(5):
            await node.established.wait()
            await router.established.wait()
        slices = Slices(node)
        slices.tick()
        router_transport(router).write(b"".join(announcements(full_table(ROUTES), IPV4_UNICAST)))
        await lab.active_events.wait_for(lambda: node.session.prefixes_received >= ROUTES, timeout=30)
        counted = [e for e in lab.active_events.events if isinstance(e, RoutesCounted)]
        assert sum(e.announced for e in counted) == ROUTES
        assert max(slices.sizes) <= RECEIVE_SLICE
        assert slices.timer_turns_between > 0  # the loop's timers ran while the flood was being absorbed
        assert node.state is State.ESTABLISHED


@pytest.mark.parametrize("routes", [0, ROUTES])
async def test_a_notification_after_a_flood_is_read_before_the_connection_closes(routes: int) -> None:
    async with pair() as lab:
        node, router = lab.active, lab.passive
        async with asyncio.timeout(5):
            await node.established.wait()
        transport = router_transport(router)
        flood = b"".join(announcements(full_table(routes), IPV4_UNICAST)) if routes else b""
        transport.write(flood + Notification.cease(CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, "flood over").encode())
        transport.write_eof()  # FIN after the last octet: the peer closing as BIRD does after a NOTIFICATION
        await lab.active_events.wait_for(lambda: any(isinstance(e, Closed) for e in lab.active_events.events))
        closed = next(e for e in lab.active_events.events if isinstance(e, Closed))
        assert closed.reason is CloseReason.NOTIFICATION_RECEIVED
        assert closed.notification is not None and closed.notification.shutdown_message() == "flood over"
        assert node.session.prefixes_received == routes
