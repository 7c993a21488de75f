"""Routers that dial in reach an announcer run with exactly the capabilities its DaemonSet grants: binding the
BGP port (179, below 1024) needs CAP_NET_BIND_SERVICE even as uid 0, and the manifest must grant it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Bird, Router
from tests.network.bgp_agent.harness import Fabric, fabric
from tests.network.bgp_agent.one_router import node1_peering, router_for
from tests.network.bgp_agent.test_capabilities import as_the_daemonset_runs_it, granted_capabilities
from tests.network.bgp_agent.test_dial_in import CLOSED_PORT, NODE_AS, ROUTER_AS, V4, publish_world

_SKIP = skip_reason() or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Fabric, Router]]:
    peering = node1_peering(router_as=ROUTER_AS, node_as=NODE_AS, passive=False)
    with fabric(tmp_path, prefix="mbcapd") as fab, router_for(fab, Bird, tmp_path / "bird", peering) as bird:
        yield fab, bird


def test_a_router_dials_in_to_an_announcer_with_the_daemonset_capabilities(lab: tuple[Fabric, Router]) -> None:
    fab, bird = lab
    publish_world(fab, peer_port=CLOSED_PORT)  # the announcer's own dials are refused: only BIRD's can work
    announcer = fab.start_announcer("node1", wrapper=as_the_daemonset_runs_it(granted_capabilities()))
    announcer.wait_logged('msg="bgp listening"')
    wait_for(bird.established, timeout=30, message="the session BIRD dialled")
    wait_for(lambda: bird.route(V4), timeout=15, message=f"{V4} at BIRD")
    assert not announcer.logged("bgp not listening"), announcer.tail()
