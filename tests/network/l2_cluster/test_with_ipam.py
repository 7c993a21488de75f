"""The whole L2 path with the real ipam: observed Kubernetes state in, the placed node's MAC at the client.

ETP Local follows the serving endpoints; an L2Advertisement's node selector and interfaces decide where and
on which interface an IP is answered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builders import pool
from tests.builders_l2 import endpoints, l2
from tests.netlab import skip_reason, wait_for
from tests.network.l2.tools import arping, ndisc6
from tests.network.l2_cluster.harness import Cluster, cluster, l2_world, lb_service

_SKIP = skip_reason("arping", "ndisc6")
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

LOCAL4, LOCAL6, EDGE = "10.0.0.110", "fd00::110", "10.0.0.150"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path) as built:
        built.start_all()
        built.observe(*l2_world())
        built.start_ipam()
        yield built


def _arp_only(lab: Cluster, vip: str, mac: str) -> bool:
    return arping(lab.lab, lab.client, vip, count=2) == [mac, mac]


def test_etp_local_follows_the_serving_endpoints(lab: Cluster) -> None:
    lab.observe(
        lb_service("local", LOCAL4, external_traffic_policy="Local"),
        lb_service("local6", LOCAL6, external_traffic_policy="Local"),
        endpoints("local", "node3"),
        endpoints("local6", "node3"),
    )
    assert lab.wait_owner(LOCAL4, timeout=30) == "node3"
    mac3, mac2 = lab.mac("node3"), lab.mac("node2")
    wait_for(lambda: _arp_only(lab, LOCAL4, mac3), timeout=10, message="node3 answering the local Service")
    wait_for(lambda: ndisc6(lab.lab, lab.client, LOCAL6) == mac3, timeout=10, message="node3 answering over NDP")
    # The pod moves to node2: so does the IP, and node3 falls silent.
    lab.observe(endpoints("local", "node2"), endpoints("local6", "node2"))
    lab.wait_owner(LOCAL4, lambda node: node == "node2")
    wait_for(lambda: _arp_only(lab, LOCAL4, mac2), timeout=10, message="node2 alone answering")
    wait_for(lambda: ndisc6(lab.lab, lab.client, LOCAL6) == mac2, timeout=10, message="node2 answering over NDP")
    report = lab.wait_report("node2", LOCAL4)
    assert report.announcing and [s.name for s in report.services] == ["local"]
    lab.wait_report("node3", LOCAL4, lambda r: not r.announcing)
    # No serving endpoint anywhere: nobody answers.
    lab.observe(endpoints("local"))
    wait_for(lambda: arping(lab.lab, lab.client, LOCAL4) == [], timeout=10, message="silence without endpoints")


def test_node_selector_and_interfaces_of_the_advertisement_are_honoured(lab: Cluster) -> None:
    edge = l2(
        "edge", ipAddressPools=["edge"], interfaces=["eth1"],
        nodeSelectors=[{"matchLabels": {"kubernetes.io/hostname": "node1"}}],
    )  # fmt: skip
    lab.observe(pool("edge", "10.0.0.150-10.0.0.159"), edge, lb_service("edge-web", EDGE))
    lab.observe(endpoints("edge-web", "node1", "node2", "node3"))
    assert lab.wait_owner(EDGE, timeout=30) == "node1"
    eth1 = lab.mac("node1", "eth1")
    wait_for(lambda: _arp_only(lab, EDGE, eth1), timeout=10, message="node1 answering on eth1 alone")
    report = lab.wait_report("node1", EDGE)
    assert report.interfaces == ("eth1",)
