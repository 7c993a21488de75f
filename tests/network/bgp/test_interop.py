"""The same story against BIRD 2, FRR 8 and GoBGP 3: the session comes up (iBGP with TCP MD5, or eBGP), IPv4
and IPv6 routes arrive with the right next hop, communities, large communities and local-pref, and leave
when they leave the desired set."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netlab import skip_reason, wait_for
from tests.network.bgp.harness import (
    NODE4,
    NODE6,
    PASSWORD,
    ROUTER4,
    ROUTER6,
    Net,
    SpeakerProcess,
    lab_net,
    peering,
    route,
    wait_established,
    wait_no_route,
    wait_route,
)
from tests.network.bgp.routers import ROUTERS, Bird, Frr, GoBgp, Router

_SKIP = skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

V4, V6 = "198.51.100.7/32", "2001:db8:77::7/128"
ATTRS = {"communities": ["65000:7", "65000:8"], "large_communities": ["64512:1:2"], "local_pref": 300}
Daemon = type[Bird] | type[Frr] | type[GoBgp]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with lab_net(tmp_path) as lab:
        yield lab


def daemon_param(kind: Daemon) -> object:
    reason = kind.skip_reason()
    return pytest.param(kind, id=kind.NAME, marks=pytest.mark.skipif(reason is not None, reason=reason or ""))


@pytest.mark.parametrize("daemon", [daemon_param(kind) for kind in ROUTERS])
def test_ibgp_with_md5(net: Net, daemon: Daemon) -> None:
    router = daemon.start(net.lab, net.router, net.directory / daemon.NAME, peering(password=PASSWORD))
    speaker = SpeakerProcess(net, "speaker", password=PASSWORD)
    speaker.announce(route(V4, **ATTRS), route(V6, **ATTRS))
    wait_established(router, speaker)
    v4, v6 = wait_route(router, V4), wait_route(router, V6)
    assert (v4.next_hop, v6.next_hop) == (NODE4, NODE6)
    for view in (v4, v6):
        assert view.as_path == ()
        assert view.local_pref == 300
        assert view.communities == ("65000:7", "65000:8")
        assert view.large_communities == ("64512:1:2",)
    # the kernel signs the session: the node's socket carries an MD5 key for the router
    assert f"md5keys:{ROUTER4}/32" in net.lab.run(net.node, "ss", "-tni", "dst", ROUTER4).stdout

    speaker.announce(route(V6, **ATTRS))
    wait_no_route(router, V4)
    assert router.route(V6) is not None
    speaker.announce()
    wait_no_route(router, V6)
    assert router.established()


@pytest.mark.parametrize("daemon", [daemon_param(kind) for kind in ROUTERS])
def test_ebgp(net: Net, daemon: Daemon) -> None:
    router = daemon.start(net.lab, net.router, net.directory / daemon.NAME, peering(local_as=64513))
    speaker = SpeakerProcess(net, "speaker", peer_as=64513)
    speaker.announce(route(V4, communities=["64512:100"]), route(V6, large_communities=["64512:2:3"]))
    wait_established(router, speaker)
    v4, v6 = wait_route(router, V4), wait_route(router, V6)
    assert (v4.next_hop, v4.as_path, v4.communities) == (NODE4, (64512,), ("64512:100",))
    assert (v6.next_hop, v6.as_path, v6.large_communities) == (NODE6, (64512,), ("64512:2:3",))

    speaker.stop()  # Cease: the peer drops the routes at once
    wait_no_route(router, V4, timeout=5)
    wait_no_route(router, V6, timeout=5)


def stays_up(router: Router, prefix: str, *, seconds: float) -> None:
    """The session stays Established and the route stays put for ``seconds`` (no flapping)."""
    with pytest.raises(TimeoutError):
        wait_for(
            lambda: not router.established() or router.route(prefix) is None,
            timeout=seconds,
            message="the session or the route to drop",
            interval=0.2,
        )


@pytest.mark.parametrize("daemon", [daemon_param(kind) for kind in ROUTERS])
def test_router_dials_a_listening_speaker(net: Net, daemon: Daemon) -> None:
    """Passive mode: the speaker only listens (with MD5 on the listening socket) and the router dials."""
    router = daemon.start(net.lab, net.router, net.directory / daemon.NAME, peering(password=PASSWORD, passive=False))
    speaker = SpeakerProcess(net, "speaker", password=PASSWORD, connect=False, listen=True)
    speaker.announce(route(V4, **ATTRS))
    wait_established(router, speaker)
    assert wait_route(router, V4).next_hop == NODE4


@pytest.mark.parametrize("daemon", [daemon_param(kind) for kind in ROUTERS])
def test_both_ends_dial_and_settle_on_one_session(net: Net, daemon: Daemon) -> None:
    """Both sides dial and listen. Whichever way the race goes (a second connection refused while one is
    Established, or an RFC 4271 §6.8 collision resolved by BGP identifier), one stable session is left."""
    router = daemon.start(net.lab, net.router, net.directory / daemon.NAME, peering(passive=False))
    speaker = SpeakerProcess(net, "speaker", listen=True)
    speaker.announce(route(V4, **ATTRS))
    wait_established(router, speaker)
    wait_route(router, V4)
    stays_up(router, V4, seconds=4)


@pytest.mark.parametrize("daemon", [daemon_param(kind) for kind in ROUTERS])
def test_session_over_ipv6_with_md5_carries_both_families(net: Net, daemon: Daemon) -> None:
    router = daemon.start(net.lab, net.router, net.directory / daemon.NAME, peering(password=PASSWORD, ipv6=True))
    speaker = SpeakerProcess(
        net,
        "speaker",
        password=PASSWORD,
        peer_address=ROUTER6,
        source_address=NODE6,
        next_hop_v4=NODE4,
        next_hop_v6=None,  # the session's own address
    )
    speaker.announce(route(V4, **ATTRS), route(V6, **ATTRS))
    wait_established(router, speaker)
    v4, v6 = wait_route(router, V4), wait_route(router, V6)
    assert (v4.next_hop, v6.next_hop) == (NODE4, NODE6)
    assert (v4.local_pref, v6.communities) == (300, ("65000:7", "65000:8"))
    sockets = net.lab.run(net.node, "ss", "-tni", "dst", f"[{ROUTER6}]").stdout
    assert f"md5keys:{ROUTER6}/128" in sockets, sockets


@pytest.mark.parametrize("daemon", [daemon_param(kind) for kind in ROUTERS])
def test_graceful_restart_keeps_the_routes_through_an_announcer_restart(net: Net, daemon: Daemon) -> None:
    router = daemon.start(net.lab, net.router, net.directory / daemon.NAME, peering())
    first = SpeakerProcess(net, "first", graceful_restart=True, restart_time=60)
    first.announce(route(V4, **ATTRS), route(V6, **ATTRS))
    wait_established(router, first)
    wait_route(router, V4)
    wait_route(router, V6)

    first.stop(keep_routes=True)  # gone without a NOTIFICATION: the router is a restart helper now
    wait_for(lambda: not router.established(), timeout=10, message=f"{daemon.NAME} saw the session drop")
    assert router.route(V4) is not None and router.route(V6) is not None

    second = SpeakerProcess(net, "second", graceful_restart=True, restart_time=60, restarting=True)
    second.announce(route(V4, **ATTRS))  # V6 is no longer wanted: End-of-RIB must flush it
    wait_established(router, second)
    wait_no_route(router, V6)
    assert router.route(V4) is not None

    second.stop()
    wait_no_route(router, V4)
