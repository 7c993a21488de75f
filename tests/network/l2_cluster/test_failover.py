"""Failover seen from the client: a killed announcer, a pulled cable, a partitioned node, a rolling restart.

Every VIP may live on any node (candidates in order node1, node2, node3, sticky). The placer is the ipam's
liveness rule: a node silent for 0.35 s, or one that says `leaving`, loses its IPs to the next live node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.netlab import skip_reason, wait_for
from tests.network.l2.tools import arping, ndisc6, neighbor
from tests.network.l2_cluster.harness import NODES, ArpWatch, Cluster, StandInPlacer, cluster

_SKIP = skip_reason("arping", "ndisc6")
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

VIP4, VIP6 = "10.0.0.100", "fd00::100"
VIPS = {VIP4: (NODES, ("eth0",)), VIP6: (NODES, ("eth0",))}


@pytest.fixture
def lab() -> Iterator[tuple[Cluster, StandInPlacer]]:
    with cluster() as built:
        built.start_all()
        placer = StandInPlacer(built, VIPS)
        try:
            placer.wait_placed(VIP4, "node1")
            placer.wait_placed(VIP6, "node1")
            mac1 = built.mac("node1")
            wait_for(lambda: arping(built.lab, built.client, VIP4) == [mac1], timeout=5, message="VIP4 at node1")
            assert ndisc6(built.lab, built.client, VIP6) == mac1
            # The client has talked to both VIPs: its neighbour entries exist and must follow the failover.
            for vip in (VIP4, VIP6):
                built.lab.run(built.client, "ping", "-c", "1", "-W", "1", vip, check=False)
                wait_for(_entry(built, vip, mac1), timeout=5, message=vip)
            yield built, placer
        finally:
            placer.close()


def _entry(lab: Cluster, vip: str, mac: str) -> Callable[[], bool]:
    return lambda: neighbor(lab.lab, lab.client, vip) == mac


def _follows(lab: Cluster, node: str, timeout: float = 5.0) -> float:
    """Seconds until the client's entries for both VIPs name `node`'s MAC."""
    started = time.monotonic()
    mac = lab.mac(node)
    for vip in (VIP4, VIP6):
        wait_for(_entry(lab, vip, mac), timeout=timeout, message=f"{vip} entry")
    return time.monotonic() - started


def test_kill_9_of_the_owner_moves_the_vips_and_the_clients_entries(lab: tuple[Cluster, StandInPlacer]) -> None:
    net, placer = lab
    net.kill("node1")
    took = _follows(net, "node2")
    print(f"client entries followed a kill -9 in {took * 1000:.0f} ms")
    mac2 = net.mac("node2")
    assert arping(net.lab, net.client, VIP4, count=2) == [mac2, mac2]
    assert ndisc6(net.lab, net.client, VIP6) == mac2
    assert placer.owner == {VIP4: "node2", VIP6: "node2"}
    net.wait_report("node2", VIP4)


def test_a_pulled_cable_moves_the_vips_and_the_node_stays_silent_when_back(lab: tuple[Cluster, StandInPlacer]) -> None:
    net, _placer = lab
    node1 = net.nodes["node1"].announcer
    assert node1 is not None
    net.set_data_link("node1", up=False)
    net.set_mgmt_link("node1", up=False)
    took = _follows(net, "node2")
    print(f"client entries followed a pulled cable in {took * 1000:.0f} ms")
    wait_for(lambda: node1.logged("event=partitioned"), timeout=5, message="node1 to notice the partition")
    mark = node1.mark()
    # The cable goes back: the data link first, so node1 sees its interface before the bus.
    net.set_data_link("node1", up=True)
    net.set_mgmt_link("node1", up=True)
    wait_for(lambda: node1.logged("event=placements_read .* mine=0", since=mark), timeout=10, message="a resync")
    assert not node1.logged("event=taken_over", since=mark)
    mac2 = net.mac("node2")
    assert arping(net.lab, net.client, VIP4, count=3) == [mac2] * 3
    assert ndisc6(net.lab, net.client, VIP6) == mac2
    assert neighbor(net.lab, net.client, VIP4) == mac2


def test_a_partitioned_announcer_yields_when_the_new_owner_claims_the_vip(lab: tuple[Cluster, StandInPlacer]) -> None:
    net, placer = lab
    node1 = net.nodes["node1"].announcer
    assert node1 is not None
    net.set_mgmt_link("node1", up=False)  # the bus is gone, the data link stays: node1 keeps answering
    wait_for(lambda: node1.logged("event=partitioned"), timeout=5, message="node1 to notice the partition")
    placer.wait_placed(VIP4, "node2")
    wait_for(lambda: all(node1.logged(f"event=yielded ip={vip} ") for vip in (VIP4, VIP6)), timeout=5,
             message="both VIPs yielded")
    mac2 = net.mac("node2")
    _follows(net, "node2")
    assert arping(net.lab, net.client, VIP4, count=3) == [mac2] * 3  # one answer each: node1 is silent
    assert ndisc6(net.lab, net.client, VIP6) == mac2
    # Back on the bus: node1 reads the placements again and stays silent.
    mark = node1.mark()
    net.set_mgmt_link("node1", up=True)
    wait_for(lambda: node1.logged("event=bus_back", since=mark), timeout=10, message="node1 back on the bus")
    wait_for(lambda: node1.logged("event=placements_read .* mine=0", since=mark), timeout=10, message="a resync")
    assert arping(net.lab, net.client, VIP4, count=2) == [mac2] * 2
    assert net.metrics("node1")[f'metalbus_layer2_yields{{ip="{VIP4}"}}'] == 1


def test_while_partitioned_the_last_vips_keep_answering(lab: tuple[Cluster, StandInPlacer]) -> None:
    net, placer = lab
    placer.close()  # nobody takes over: the data plane must survive the bus outage on its own
    node1 = net.nodes["node1"].announcer
    assert node1 is not None
    net.set_mgmt_link("node1", up=False)
    wait_for(lambda: node1.logged("event=partitioned"), timeout=5, message="node1 to notice the partition")
    mac1 = net.mac("node1")
    assert arping(net.lab, net.client, VIP4, count=2) == [mac1, mac1]
    assert ndisc6(net.lab, net.client, VIP6) == mac1
    mark = node1.mark()
    net.set_mgmt_link("node1", up=True)
    wait_for(lambda: node1.logged("event=placements_read .* mine=2", since=mark), timeout=10, message="a resync")
    assert arping(net.lab, net.client, VIP4) == [mac1]


def test_a_rolling_restart_keeps_every_vip_answering(lab: tuple[Cluster, StandInPlacer]) -> None:
    net, placer = lab
    watch = ArpWatch(net.lab, net.client, VIP4)
    try:
        for name in NODES:
            owner = placer.owner[VIP4]
            assert net.terminate(name) == 0  # graceful: silent at once, `leaving` hands over
            if owner == name:
                placer.wait_moved(VIP4, away_from=owner)
            net.start(name)
            wait_for(lambda: arping(net.lab, net.client, VIP4) != [], timeout=5, message="an answer")
            assert ndisc6(net.lab, net.client, VIP6) is not None
    finally:
        watch.stop()
    gap = watch.longest_gap()
    macs = {mac for _, mac in watch.replies}
    print(f"rolling restart: longest gap in ARP answers {gap * 1000:.0f} ms, answered by {len(macs)} nodes")
    assert gap < 1.0
    assert len(macs) >= 2
