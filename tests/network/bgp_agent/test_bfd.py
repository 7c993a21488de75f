"""A BGPPeer with a bfdProfile: the real announcer runs BFD beside the session with BIRD; a cut link takes the
session and the routes down long before the hold timer, and they come back with the link."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bgp_world import allocated, bgp_advertisement, bgp_peer, config_object, endpoints, node, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Bird
from tests.network.bgp_agent.harness import NODES, ROUTER4, BirdNeighbor, Fabric, fabric, start_bird

_SKIP = skip_reason() or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]
V4 = "198.51.100.5/32"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Fabric, BirdNeighbor]]:
    with fabric(tmp_path) as fab:
        bird = start_bird(fab, router_as=64513, node_as=64512, bfd_ms=100)
        fab.observe(
            pool("lan", "198.51.100.0/24"),
            config_object("BFDProfile", "fast", {"receiveInterval": 100, "transmitInterval": 100}),
            bgp_peer("router", ROUTER4, my_asn=64512, peer_asn=64513, holdTime="90s", bfdProfile="fast"),
            bgp_advertisement("ads"),
            node("node1", *NODES["node1"]),
            service("web"),
            endpoints("web", {"node1": 1}),
        )
        fab.allocate(allocated("web", "198.51.100.5", pool="lan"))
        fab.start_announcer("node1")
        try:
            yield fab, bird["node1"]
        except BaseException:
            print(fab.diagnostics(), bird["node1"].diagnostics()[-3000:], sep="\n")
            raise


def test_cut_link_takes_the_routes_down_through_bfd(lab: tuple[Fabric, BirdNeighbor]) -> None:
    fab, bird = lab
    wait_for(lambda: bird.route(V4), timeout=20, message="the route at BIRD")
    wait_for(lambda: "Up" in bird.birdc("show bfd sessions").stdout, timeout=10, message="BFD up")
    fab.set_link("node1", up=False)
    wait_for(lambda: bird.route(V4) is None, timeout=5, message="the route gone with BFD (hold time is 90 s)")
    announcer = fab.nodes["node1"].announcer
    assert announcer is not None
    announcer.wait_logged('msg="bfd changed" .*old=UP new=DOWN', timeout=5)
    fab.set_link("node1", up=True)
    wait_for(lambda: bird.route(V4), timeout=30, message="the route back with the link")
