"""BIRD 2 specific stories: the exact `birdc show route all` view, MD5 refusal, many prefixes, and graceful
restart keeping the routes through an announcer restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab import skip_reason, wait_for
from tests.network.bgp.harness import (
    NODE4,
    NODE6,
    PASSWORD,
    Net,
    SpeakerProcess,
    lab_net,
    peering,
    route,
    wait_established,
    wait_no_route,
    wait_route,
)
from tests.network.bgp.routers import Bird

_SKIP = skip_reason() or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

V4, V6 = "198.51.100.7/32", "2001:db8:77::7/128"
ATTRS = {"communities": ["65000:7", "65000:8"], "large_communities": ["64512:1:2"], "local_pref": 300}


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with lab_net(tmp_path) as lab:
        yield lab


def start_bird(net: Net, *, local_as: int = 64512, password: str | None = None) -> Bird:
    return Bird.start(net.lab, net.router, net.directory / "bird", peering(local_as=local_as, password=password))


def test_birdc_shows_the_routes_as_announced(net: Net) -> None:
    bird = start_bird(net, password=PASSWORD)
    speaker = SpeakerProcess(net, "speaker", password=PASSWORD)
    speaker.announce(route(V4, **ATTRS), route(V6, **ATTRS))
    wait_established(bird, speaker)
    v4 = wait_for(lambda: bird.route_text(V4), timeout=10, message=V4)
    v6 = wait_for(lambda: bird.route_text(V6), timeout=10, message=V6)
    assert f"via {NODE4} on eth0" in v4
    assert f"BGP.next_hop: {NODE4}" in v4
    assert "BGP.origin: IGP" in v4
    assert "BGP.local_pref: 300" in v4
    assert "BGP.community: (65000,7) (65000,8)" in v4
    assert "BGP.large_community: (64512, 1, 2)" in v4
    assert f"via {NODE6} on eth0" in v6
    assert f"BGP.next_hop: {NODE6}" in v6
    assert "BGP.local_pref: 300" in v6

    protocol = bird.protocol()
    assert "Session:          internal AS4" in protocol
    assert "AF announced: ipv4 ipv6" in protocol

    speaker.stop()
    wait_for(lambda: not bird.established(), timeout=5, message="session closed")
    assert "Received: Administrative shutdown" in bird.protocol()
    assert bird.route(V4) is None


def test_md5_mismatch_never_establishes(net: Net) -> None:
    bird = start_bird(net, password=PASSWORD)
    speaker = SpeakerProcess(net, "speaker", password="wrong")
    speaker.announce(route(V4))
    with pytest.raises(TimeoutError):
        wait_for(bird.established, timeout=4, message="no session with a wrong key")
    assert bird.route(V4) is None


def test_ten_thousand_prefixes(net: Net) -> None:
    bird = start_bird(net, local_as=64513)
    speaker = SpeakerProcess(net, "speaker", peer_as=64513)
    prefixes = [f"10.{i // 250}.{i % 250}.0/24" for i in range(10_000)]
    speaker.announce(*(route(p, communities=["64512:100"]) for p in prefixes))
    wait_established(bird, speaker)
    wait_for(
        lambda: "10000 of 10000 routes for 10000 networks in table master4" in bird.birdc("show route count").stdout,
        timeout=30,
        message="all 10000 prefixes in BIRD",
    )
    speaker.announce(*(route(p, communities=["64512:100"]) for p in prefixes[:10]))
    wait_for(
        lambda: "10 of 10 routes for 10 networks in table master4" in bird.birdc("show route count").stdout,
        timeout=10,
        message="9990 prefixes withdrawn",
    )


def test_graceful_restart_keeps_routes_through_a_speaker_restart(net: Net) -> None:
    bird = start_bird(net)
    first = SpeakerProcess(net, "first", graceful_restart=True, restart_time=60)
    first.announce(route(V4, **ATTRS))
    wait_established(bird, first)
    wait_route(bird, V4)
    assert "Graceful restart" in bird.protocol()

    first.stop(keep_routes=True)  # the process goes away without a NOTIFICATION
    wait_for(lambda: not bird.established(), timeout=5, message="BIRD saw the session drop")
    assert "Neighbor graceful restart active" in bird.protocol()
    assert bird.route(V4) is not None, "a graceful restart helper keeps the route"

    second = SpeakerProcess(net, "second", graceful_restart=True, restart_time=60, restarting=True)
    second.announce(route(V4, **ATTRS))
    wait_established(bird, second)
    assert bird.route(V4) is not None

    second.stop()  # a Cease ends it for real: the route goes
    wait_no_route(bird, V4, timeout=5)


def test_router_crash_then_announcer_sigterm(net: Net) -> None:
    peering_ = peering()
    bird = Bird.start(net.lab, net.router, net.directory / "bird", peering_)
    speaker = SpeakerProcess(net, "speaker")
    speaker.announce(route(V4), route(V6))
    wait_established(bird, speaker)
    wait_route(bird, V4)

    bird.crash()  # the speaker sees the connection go, backs off and dials the new BIRD
    bird = Bird.start(net.lab, net.router, net.directory / "bird", peering_)
    wait_established(bird, speaker, timeout=20)
    wait_route(bird, V4)
    wait_route(bird, V6)

    assert speaker.proc.poll() is None
    speaker.proc.terminate()  # SIGTERM: the announcer leaves with a Cease, so the routes go at once
    wait_no_route(bird, V4, timeout=5)
    wait_no_route(bird, V6, timeout=5)
    assert speaker.proc.wait(timeout=5) == 0
    assert "Received: Administrative shutdown" in bird.protocol()


def test_bfd_tears_the_session_down_when_the_link_is_cut(net: Net) -> None:
    """Hold time 90 s: only BFD (300 ms x 3) can notice a cut link within seconds, on either side."""
    bird = Bird.start(
        net.lab,
        net.router,
        net.directory / "bird",
        peering(hold_time=90, graceful_restart=False, bfd_interval_ms=300),
    )
    speaker = SpeakerProcess(
        net, "speaker", hold_time=90, bfd={"desired_min_tx": 0.3, "required_min_rx": 0.3, "detect_mult": 3}
    )
    speaker.announce(route(V4))
    wait_established(bird, speaker)
    wait_route(bird, V4)
    wait_for(lambda: " Up " in bird.birdc("show bfd sessions").stdout, timeout=10, message="BFD Up in BIRD")

    net.lab.run(net.bridge, "ip", "link", "set", net.node_port, "down")  # the cable is cut
    wait_no_route(bird, V4, timeout=5)
    assert "BFD session down" in bird.protocol()
    wait_for(lambda: "reason=peer_down" in speaker.events(), timeout=5, message="the speaker's own BFD Down")
