"""The speaker against a real BIRD 2 in a network namespace.

    bridge namespace: br0 ── node   (eth0 10.77.0.2/24, fd77::2/64)  runs tests.network.bgp.speaker_proc
                         ── router (eth0 10.77.0.1/24, fd77::1/64)  runs bird -f (passive neighbour)
One session over IPv4 carries IPv4 and IPv6 unicast (MP-BGP); the IPv6 next hop is fd77::2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.bird import Bird, bgp_config, bird_skip_reason

_SKIP = skip_reason() or bird_skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

NODE4, NODE6 = "10.77.0.2", "fd77::2"
ROUTER4 = "10.77.0.1"
V4, V6 = "198.51.100.7/32", "2001:db8:77::7/128"
PASSWORD = "md5-s3cret"


@dataclass
class Net:
    lab: Lab
    node: str
    router: str
    directory: Path


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    with Lab("mbbgp") as lab:
        bridge = lab.namespace("br")
        lab.bridge(bridge)
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.link(node, bridge_ns=bridge, addresses=[f"{NODE4}/24", f"{NODE6}/64"])
        lab.link(router, bridge_ns=bridge, addresses=[f"{ROUTER4}/24", "fd77::1/64"])
        yield Net(lab, node, router, tmp_path)


class SpeakerProcess:
    def __init__(self, net: Net, name: str, **config: Any) -> None:
        self.log = net.directory / f"{name}.log"
        settings = {
            "local_as": 64512,
            "peer_as": 64512,
            "router_id": NODE4,
            "peer_address": ROUTER4,
            "source_address": NODE4,
            "next_hop_v6": NODE6,
            "hold_time": 9,
            **config,
        }
        module = "tests.network.bgp.speaker_proc"
        self.proc = net.lab.popen(net.node, sys.executable, "-m", module, json.dumps(settings), str(self.log))

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def announce(self, *routes: dict[str, Any]) -> None:
        self.send({"routes": list(routes)})

    def stop(self, *, keep_routes: bool = False) -> None:
        self.send({"stop": {"keep_routes": keep_routes, "message": "test done"}})
        self.proc.wait(timeout=10)

    def events(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def start_bird(net: Net, *, local_as: int = 64512, peer_as: int = 64512, password: str | None = None) -> Bird:
    config = bgp_config(
        router_id=ROUTER4,
        local=ROUTER4,
        local_as=local_as,
        neighbor=NODE4,
        neighbor_as=peer_as,
        log_file=net.directory / "bird" / "bird.log",
        password=password,
    )
    return Bird.start(net.lab, net.router, net.directory / "bird", config)


def route(prefix: str, **attributes: Any) -> dict[str, Any]:
    return {"prefix": prefix, **attributes}


ATTRS = {"communities": ["65000:7", "65000:8"], "large_communities": ["64512:1:2"], "local_pref": 300}


def wait_route(bird: Bird, prefix: str, *, timeout: float = 10) -> str:
    return wait_for(lambda: bird.route(prefix), timeout=timeout, message=f"{prefix} in BIRD")


def wait_no_route(bird: Bird, prefix: str, *, timeout: float = 10) -> None:
    wait_for(lambda: bird.route(prefix) is None, timeout=timeout, message=f"{prefix} gone from BIRD")


def test_ibgp_with_md5_announces_ipv4_and_ipv6_then_withdraws(net: Net) -> None:
    bird = start_bird(net, password=PASSWORD)
    speaker = SpeakerProcess(net, "speaker", password=PASSWORD)
    speaker.announce(route(V4, **ATTRS), route(V6, **ATTRS))
    try:
        wait_for(lambda: bird.established("node"), timeout=15, message="BGP session Established")
        v4 = wait_route(bird, V4)
        v6 = wait_route(bird, V6)
    except TimeoutError:
        print(speaker.events(), bird.log(), bird.protocol("node"), sep="\n----\n")
        raise
    assert f"via {NODE4} on eth0" in v4
    assert f"BGP.next_hop: {NODE4}" in v4
    assert "BGP.local_pref: 300" in v4
    assert "BGP.community: (65000,7) (65000,8)" in v4
    assert "BGP.large_community: (64512, 1, 2)" in v4
    assert "BGP.origin: IGP" in v4
    assert f"via {NODE6} on eth0" in v6
    assert f"BGP.next_hop: {NODE6}" in v6
    assert "BGP.local_pref: 300" in v6
    assert "BGP.large_community: (64512, 1, 2)" in v6

    protocol = bird.protocol("node")
    assert "Neighbor AS:      64512" in protocol
    # the kernel signs the session: the node's socket carries an MD5 key for the router
    assert f"md5keys:{ROUTER4}/32" in net.lab.run(net.node, "ss", "-tni", "dst", ROUTER4).stdout
    assert "ipv4" in protocol and "ipv6" in protocol

    speaker.announce(route(V6, **ATTRS))  # IPv4 leaves the desired set
    wait_no_route(bird, V4)
    assert bird.route(V6) is not None
    speaker.announce()  # and then everything
    wait_no_route(bird, V6)
    assert bird.established("node")

    speaker.stop()
    wait_for(lambda: not bird.established("node"), timeout=5, message="session closed")
    assert "Received: Administrative shutdown" in bird.protocol("node")


def test_md5_mismatch_never_establishes(net: Net) -> None:
    bird = start_bird(net, password=PASSWORD)
    speaker = SpeakerProcess(net, "speaker", password="wrong")
    speaker.announce(route(V4))
    with pytest.raises(TimeoutError):
        wait_for(lambda: bird.established("node"), timeout=4, message="no session with a wrong key")
    assert bird.route(V4) is None


def test_ebgp_as_path_and_multiple_prefixes(net: Net) -> None:
    bird = start_bird(net, local_as=64513, peer_as=64512)
    speaker = SpeakerProcess(net, "speaker", peer_as=64513)
    prefixes = [f"198.51.100.{i}/32" for i in range(1, 101)]
    speaker.announce(*(route(p, communities=["64512:100"]) for p in prefixes))
    wait_for(lambda: bird.established("node"), timeout=15, message="BGP session Established")
    first = wait_route(bird, prefixes[0])
    wait_route(bird, prefixes[-1])
    assert "BGP.as_path: 64512" in first
    assert "BGP.community: (64512,100)" in first
    assert "100 of 100 routes for 100 networks in table master4" in bird.birdc("show route count").stdout


def test_graceful_restart_keeps_routes_through_a_speaker_restart(net: Net) -> None:
    bird = start_bird(net)
    first = SpeakerProcess(net, "first", graceful_restart=True, restart_time=60)
    first.announce(route(V4, **ATTRS))
    wait_for(lambda: bird.established("node"), timeout=15, message="BGP session Established")
    wait_route(bird, V4)
    assert "restart" in bird.protocol("node").lower()

    first.stop(keep_routes=True)  # the process goes away without a NOTIFICATION
    wait_for(lambda: not bird.established("node"), timeout=5, message="BIRD saw the session drop")
    assert bird.route(V4) is not None, "a graceful restart helper keeps the route"

    second = SpeakerProcess(net, "second", graceful_restart=True, restart_time=60, restarting=True)
    second.announce(route(V4, **ATTRS))
    wait_for(lambda: bird.established("node"), timeout=15, message="session back")
    assert bird.route(V4) is not None

    second.stop()  # a Cease ends it for real: the route goes
    wait_no_route(bird, V4, timeout=5)
