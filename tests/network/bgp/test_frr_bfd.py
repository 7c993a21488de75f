"""BFD with FRR (zebra + bfdd + bgpd): a cut link takes the BGP session and the route down in well under the
90 s hold time, on the router and on the node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab import skip_reason, wait_for
from tests.network.bgp.frr_bfd import BfdNeighbor, bfdd_config, bgpd_config, frr_directory
from tests.network.bgp.harness import NODE4, ROUTER4, Net, SpeakerProcess, lab_net, route
from tests.network.bgp.routers import Frr, start_frr_with_zebra

_SKIP = skip_reason() or Frr.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

V4 = "198.51.100.7/32"
NEIGHBOR = BfdNeighbor(NODE4, remote_as=64512, local=ROUTER4)
BGPD, BFDD = bgpd_config(router_as=64512, router_id=ROUTER4, neighbors=[NEIGHBOR]), bfdd_config([NEIGHBOR])


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with lab_net(tmp_path) as lab:
        yield lab


def test_frr_bfd_takes_the_session_down_on_a_cut_link(net: Net) -> None:
    with frr_directory(net.lab) as directory:
        cut_link_story(net, directory)


def cut_link_story(net: Net, directory: Path) -> None:
    frr = start_frr_with_zebra(net.lab, net.router, directory, BGPD, neighbor=NODE4, bfdd_config=BFDD)
    speaker = SpeakerProcess(
        net, "speaker", hold_time=90, bfd={"desired_min_tx": 0.3, "required_min_rx": 0.3, "detect_mult": 3}
    )
    speaker.announce(route(V4))
    wait_for(lambda: frr.route(V4), timeout=15, message="route at FRR")
    wait_for(lambda: "Status: up" in frr.vtysh("show bfd peers").stdout, timeout=10, message="BFD up in FRR")

    net.lab.run(net.bridge, "ip", "link", "set", net.node_port, "down")  # the cable is cut
    wait_for(lambda: frr.route(V4) is None, timeout=5, message="route gone at FRR")
    assert "control detection time expired" in frr.vtysh("show bfd peers").stdout
    wait_for(lambda: "reason=peer_down" in speaker.events(), timeout=5, message="the speaker's own BFD Down")
