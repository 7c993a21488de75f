"""``localASN`` against BIRD 2, FRR 8 and GoBGP 3: the router knows the node by the AS the BGPPeer presents
(65410), not by its myASN (64512); the session comes up and the route's AS_PATH is 65410 alone, as FRR's
``local-as 65410 no-prepend replace-as`` gives it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bgp_world import allocated, bgp_advertisement, bgp_peer, endpoints, node, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Router
from tests.network.bgp_agent.harness import NODES, ROUTER4, Fabric, fabric
from tests.network.bgp_agent.one_router import Daemon, daemon_params, node1_peering, router_for

_SKIP = skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

IP4 = "198.51.100.9"
V4 = f"{IP4}/32"
MY_AS, LOCAL_AS, ROUTER_AS = 64512, 65410, 64513
NODE4 = NODES["node1"][0]


@pytest.fixture(params=daemon_params())
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Fabric, Router]]:
    daemon: Daemon = request.param
    peering = node1_peering(router_as=ROUTER_AS, node_as=LOCAL_AS)  # the router knows the node by its local AS
    with fabric(tmp_path) as fab, router_for(fab, daemon, tmp_path / daemon.NAME, peering) as router:
        yield fab, router


def test_the_router_sees_the_local_asn(lab: tuple[Fabric, Router]) -> None:
    fab, router = lab
    fab.observe(
        pool("lan", "198.51.100.0/24"),
        bgp_peer("router", ROUTER4, my_asn=MY_AS, peer_asn=ROUTER_AS, localASN=LOCAL_AS, holdTime="9s"),
        bgp_advertisement("ads"),
        *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
        endpoints("web", {"node1": 1}),
        service("web"),
    )
    fab.allocate(allocated("web", IP4, pool="lan"))
    fab.start_announcer("node1")
    wait_for(router.established, timeout=30, message="the session, the node presenting AS 65410")
    route = wait_for(lambda: router.route(V4), timeout=15, message=f"{V4} at the router")
    assert route.as_path == (LOCAL_AS,)  # myASN appears nowhere (replace-as)
    assert route.next_hop == NODE4
