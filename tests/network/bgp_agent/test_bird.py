"""Two real announcers peer (iBGP, TCP MD5 from a Secret) with BIRD 2; a real ipam allocates. The story:
both nodes advertise a dual-stack Service with communities and local-pref (two paths at BIRD, the right next
hops), externalTrafficPolicy Local follows the endpoints, deleting the Service withdraws it, and a stopping
announcer's routes go at once (Cease)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import ObjectKind, ServiceObserved
from tests.bgp_world import bgp_advertisement, bgp_peer, config_object, deleted, endpoints, node, secret, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Bird
from tests.network.bgp_agent.harness import NODES, ROUTER4, BirdNeighbor, Fabric, fabric, start_bird

_SKIP = skip_reason() or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

IP4, IP6 = "198.51.100.7", "2001:db8:77::7"
V4, V6 = f"{IP4}/32", f"{IP6}/128"
PASSWORD = "md5-from-secret"
ASN = 64512


def web(version: str, policy: str = "Cluster") -> ServiceObserved:
    return service(
        "web", version=version, ip_families=("IPv4", "IPv6"), ip_family_policy="RequireDualStack",
        external_traffic_policy=policy, annotations={"metallb.io/loadBalancerIPs": f"{IP4},{IP6}"},
    )  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Fabric, dict[str, BirdNeighbor]]]:
    with fabric(tmp_path) as fab:
        bird = start_bird(fab, router_as=ASN, node_as=ASN, password=PASSWORD)
        fab.observe(
            pool("lan", "198.51.100.0/24", "2001:db8:77::/64"),
            bgp_peer("router", ROUTER4, my_asn=ASN, peer_asn=ASN, holdTime="9s", passwordSecret={"name": "bgp-md5"}),
            secret("bgp-md5", PASSWORD),
            bgp_advertisement("ads", communities=["65000:7", "edge", "large:64512:1:2"], localPref=150),
            config_object("Community", "names", {"communities": [{"name": "edge", "value": "65535:65281"}]}),
            *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
            endpoints("web", {"node1": 1}),
            web("1"),
        )  # fmt: skip
        fab.start_ipam()
        try:
            wait_for(lambda: fab.allocations().get("default/web") == (IP4, IP6), timeout=20, message="allocation")
            fab.start_announcers()
            yield fab, bird
        except BaseException:
            print(fab.diagnostics(), *(b.diagnostics()[-3000:] for b in bird.values()), sep="\n")
            raise


def paths(bird: dict[str, BirdNeighbor], prefix: str) -> dict[str, str]:
    """Next hop per node holding a path to ``prefix`` at BIRD."""
    return {name: view.next_hop for name, view in ((n, b.route(prefix)) for n, b in bird.items()) if view}


def test_bird_story(lab: tuple[Fabric, dict[str, BirdNeighbor]]) -> None:
    fab, bird = lab
    wait_for(lambda: all(b.established() for b in bird.values()), timeout=20, message="both sessions (MD5)")
    both4 = {name: v4 for name, (v4, _) in NODES.items()}
    both6 = {name: v6 for name, (_, v6) in NODES.items()}
    wait_for(lambda: paths(bird, V4) == both4, timeout=10, message="two IPv4 paths")
    wait_for(lambda: paths(bird, V6) == both6, timeout=10, message="two IPv6 paths")
    for prefix in (V4, V6):
        route = bird["node1"].route(prefix)
        assert route is not None
        assert sorted(route.communities) == ["65000:7", "65535:65281"]
        assert route.large_communities == ("64512:1:2",)
        assert route.local_pref == 150
        assert route.as_path == ()

    metrics = fab.metrics("node1")
    assert metrics[f'metallb_bgp_session_up{{peer="{ROUTER4}"}}'] == 1
    assert metrics[f'metallb_bgp_announced_prefixes_total{{peer="{ROUTER4}"}}'] == 2
    assert metrics[f'metallb_bgp_updates_total{{peer="{ROUTER4}"}}'] >= 2

    # externalTrafficPolicy Local: only the node with the endpoint; the endpoint moves, so does the path
    fab.observe(web("2", "Local"))
    wait_for(lambda: paths(bird, V4) == {"node1": both4["node1"]}, timeout=10, message="only node1 (Local)")
    wait_for(lambda: paths(bird, V6) == {"node1": both6["node1"]}, timeout=10, message="only node1 for IPv6")
    fab.observe(endpoints("web", {"node2": 1}))
    wait_for(lambda: paths(bird, V4) == {"node2": both4["node2"]}, timeout=10, message="only node2 (Local)")

    # back to Cluster, then the Service goes: withdrawn everywhere
    fab.observe(web("3"))
    wait_for(lambda: paths(bird, V4) == both4, timeout=10, message="two paths again")
    fab.observe(deleted(ObjectKind.SERVICE, "web"))
    wait_for(lambda: not paths(bird, V4) and not paths(bird, V6), timeout=20, message="withdrawn on delete")

    # a stopping announcer says Cease: its routes go at once
    fab.observe(web("4"))
    wait_for(lambda: paths(bird, V4) == both4, timeout=20, message="re-allocated and announced")
    started = time.monotonic()
    assert fab.terminate("node2") == 0
    wait_for(lambda: paths(bird, V4) == {"node1": both4["node1"]}, timeout=5, message="node2's path gone")
    print(f"node2 stop to its path gone at BIRD: {time.monotonic() - started:.2f} s")
    assert "Administrative shutdown" in bird["node2"].protocol() or not bird["node2"].established()


def test_graceful_restart_keeps_the_routes_through_an_announcer_restart(
    lab: tuple[Fabric, dict[str, BirdNeighbor]],
) -> None:
    fab, bird = lab
    both4 = {name: v4 for name, (v4, _) in NODES.items()}
    wait_for(lambda: paths(bird, V4) == both4, timeout=20, message="two IPv4 paths")
    fab.observe(
        bgp_peer("router", ROUTER4, my_asn=ASN, peer_asn=ASN, holdTime="9s", passwordSecret={"name": "bgp-md5"},
                 enableGracefulRestart=True, version="2")
    )  # fmt: skip
    node1 = bird["node1"]
    for name in NODES:
        announcer = fab.nodes[name].announcer
        assert announcer is not None
        announcer.wait_logged('msg="bgp session started" .* graceful_restart=True')
    wait_for(node1.established, timeout=20, message="node1's session with graceful restart")
    wait_for(lambda: paths(bird, V4) == both4, timeout=20, message="two paths on the new sessions")
    assert fab.terminate("node1") == 0
    wait_for(lambda: not node1.established() and node1.graceful_restart_active(), timeout=10,
             message="node1's session down, BIRD helping it restart")
    assert paths(bird, V4) == both4, node1.protocol()  # kept as stale, where a Cease would have removed them
    fab.start_announcer("node1")
    wait_for(lambda: node1.established() and not node1.graceful_restart_active(), timeout=20,
             message="node1 back and its End-of-RIB received (stale routes not refreshed are gone)")
    assert paths(bird, V4) == both4
    assert paths(bird, V6) == {name: v6 for name, (_, v6) in NODES.items()}
