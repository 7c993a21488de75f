"""A router exporting a full table to the announcers: 200 000 routes from a real BIRD to two real announcers
while BFD runs at 300 ms x 3. The announcers use no received route, so they only check and count them: BFD
stays Up the whole time, the sessions stay Established, the announcers stay ready, and their own routes
stay at the router — and a new one still gets there."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bgp_world import allocated, bgp_advertisement, bgp_peer, config_object, endpoints, node, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Bird
from tests.network.bgp_agent.harness import FLOOD_PROTOCOL, NODES, ROUTER4, BirdNeighbor, Fabric, fabric, start_bird

_SKIP = skip_reason() or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

FLOOD = 200_000
V4, LATE = "198.51.100.5/32", "198.51.100.6/32"
RECEIVED = f'metalbus_bgp_received_prefixes_total{{peer="{ROUTER4}"}}'


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Fabric, dict[str, BirdNeighbor]]]:
    with fabric(tmp_path, prefix="mbflood") as fab:
        bird = start_bird(fab, router_as=64513, node_as=64512, bfd_ms=300, flood=FLOOD)
        fab.observe(
            pool("lan", "198.51.100.0/24"),
            config_object("BFDProfile", "fast", {"receiveInterval": 300, "transmitInterval": 300,
                                                 "detectMultiplier": 3}),
            bgp_peer("router", ROUTER4, my_asn=64512, peer_asn=64513, holdTime="9s", bfdProfile="fast"),
            bgp_advertisement("ads"),
            *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
            service("web"),
            endpoints("web", dict.fromkeys(NODES, 1)),
            service("late"),
            endpoints("late", dict.fromkeys(NODES, 1)),
        )  # fmt: skip
        fab.allocate(allocated("web", "198.51.100.5", pool="lan"))
        for name in NODES:
            fab.start_announcer(name)
        try:
            yield fab, bird
        except BaseException:
            print(fab.diagnostics(), next(iter(bird.values())).diagnostics()[-3000:], sep="\n")
            raise


def bfd_up(bird: BirdNeighbor) -> int:
    """How many BFD sessions BIRD has Up."""
    return sum(" Up " in f" {line} " for line in bird.birdc("show bfd sessions", check=False).stdout.splitlines())


def ready(fab: Fabric, name: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{fab.nodes[name].mgmt_ip}:7472/readyz", timeout=5) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        print(f"{name} /readyz: {error.code} {error.read().decode(errors='replace')}")
        return False
    except urllib.error.URLError:
        return False


def received(fab: Fabric, name: str) -> float:
    return fab.metrics(name).get(RECEIVED, 0.0)


def test_a_full_table_from_the_router_leaves_bfd_the_sessions_and_our_routes_up(
    lab: tuple[Fabric, dict[str, BirdNeighbor]],
) -> None:
    fab, bird = lab
    for name, neighbor in bird.items():
        wait_for(lambda n=neighbor: n.route(V4), timeout=20, message=f"{V4} from {name} at BIRD")  # type: ignore[misc]
    router = next(iter(bird.values()))
    wait_for(lambda: bfd_up(router) == len(NODES), timeout=20, message="BFD Up with every node")

    def healthy_until(total: int) -> bool:
        """Every check the flood could break, at each look; true once every node counted ``total`` prefixes."""
        assert bfd_up(router) == len(NODES), router.birdc("show bfd sessions").stdout
        for name, neighbor in bird.items():
            assert neighbor.established(), neighbor.protocol()
            assert ready(fab, name), f"{name} not ready"
        return all(received(fab, name) >= total for name in NODES)

    wait_for(lambda: healthy_until(0), timeout=10, message="every check passing before the flood")
    router.birdc(f"enable {FLOOD_PROTOCOL}")  # 200 000 routes to each announcer, as fast as TCP takes them
    wait_for(lambda: healthy_until(FLOOD), timeout=120, message=f"{FLOOD} routes counted by every announcer",
             interval=0.2)  # fmt: skip
    router.birdc(f"disable {FLOOD_PROTOCOL}")  # and all withdrawn at once
    wait_for(lambda: healthy_until(2 * FLOOD), timeout=120, message="the withdrawals counted", interval=0.2)

    for name, neighbor in bird.items():
        assert neighbor.route(V4), f"{V4} from {name} gone from BIRD"
        announcer = fab.nodes[name].announcer
        assert announcer is not None
        assert not announcer.logged('msg="bfd changed" .*old=UP'), announcer.tail()
        assert not announcer.logged("bgp closed"), announcer.tail()
        assert not announcer.logged("msg=partitioned"), announcer.tail()
    fab.allocate(allocated("late", "198.51.100.6", pool="lan"))
    for name, neighbor in bird.items():
        wait_for(lambda n=neighbor: n.route(LATE), timeout=10, message=f"{LATE} from {name}")  # type: ignore[misc]
