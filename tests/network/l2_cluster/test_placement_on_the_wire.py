"""Real announcers on three nodes act on the placements in the IPAM stream: the client sees the placed node.

Placements are published the way the ipam publishes them (one subject per IP, the stream sequence is the
epoch); see harness.py for the lab.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from services.announcer.l2 import arp
from services.announcer.l2.ethernet import parse_mac
from tests.netlab import skip_reason, wait_for
from tests.network.l2.tools import arping, ndisc6, send_raw
from tests.network.l2_cluster.harness import Cluster, cluster

_SKIP = skip_reason("arping", "ndisc6")
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

VIP4A, VIP4B, VIP6A, VIP6B = "10.0.0.100", "10.0.0.101", "fd00::100", "fd00::101"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Cluster]:
    with cluster(tmp_path) as built:
        built.start_all()
        yield built


def test_the_client_resolves_each_vip_to_the_placed_node(lab: Cluster) -> None:
    epoch = lab.place(VIP4A, "node1", "eth0")
    lab.place(VIP4B, "node2")
    lab.place(VIP6A, "node3")
    lab.place(VIP6B, "node1", "eth0")
    mac1, mac2, mac3 = (lab.mac(n) for n in ("node1", "node2", "node3"))
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [mac1], timeout=5, message="VIP4A at node1")
    assert arping(lab.lab, lab.client, VIP4B, count=2) == [mac2, mac2]
    assert ndisc6(lab.lab, lab.client, VIP6A) == mac3
    assert ndisc6(lab.lab, lab.client, VIP6B) == mac1
    # What node1 answers is reported on the ANNOUNCE stream, with the epoch it acted on.
    report = lab.wait_report("node1", VIP4A)
    assert (report.announcing, report.interfaces, report.placement_epoch) == (True, ("eth0",), epoch)
    assert report.mode.value == "layer2" and [s.name for s in report.services] == ["web"]
    assert set(lab.reports("node1")) == {VIP4A, VIP6B}
    # MetalLB's metrics, fed from the responder's counters.
    metrics = lab.wait_metric("node1", f'metallb_layer2_responses_sent{{ip="{VIP4A}"}}')
    assert metrics[f'metallb_layer2_requests_received{{ip="{VIP4A}"}}'] >= 1
    assert metrics[f'metallb_layer2_gratuitous_sent{{ip="{VIP4A}"}}'] >= 2
    announced = f'metallb_speaker_announced{{ip="{VIP4A}",node="node1",protocol="layer2",service="default/web"}}'
    assert metrics[announced] == 1


def test_a_moved_placement_moves_the_answer_and_the_report(lab: Cluster) -> None:
    lab.place(VIP4A, "node1", "eth0")
    mac1, mac2 = lab.mac("node1"), lab.mac("node2")
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [mac1], timeout=5, message="VIP4A at node1")
    epoch = lab.place(VIP4A, "node2")
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A, count=2) == [mac2, mac2], timeout=5, message="moved")
    withdrawn = lab.wait_report("node1", VIP4A, lambda r: not r.announcing)
    assert withdrawn.placement_epoch == epoch
    lab.clear(VIP4A)
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [], timeout=5, message="nobody answers a cleared IP")


def test_a_move_to_a_node_that_never_claims_the_ip_leaves_it_answered_for_the_handover(lab: Cluster) -> None:
    """The new owner was cut off just as it was chosen (here: no announcer runs there): the old owner answers on
    until the handover ends, time for the ipam to move the IP back; moved back meanwhile, it never goes silent."""
    lab.place(VIP4A, "node1", "eth0")
    mac1 = lab.mac("node1")
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [mac1], timeout=5, message="VIP4A at node1")
    assert lab.terminate("node3") == 0
    node1 = lab.nodes["node1"].announcer
    assert node1 is not None
    lab.place(VIP4A, "node3")
    node1.wait_logged(f"msg=\"handing over\" ip={VIP4A} to=node3", timeout=5)
    assert arping(lab.lab, lab.client, VIP4A, count=2) == [mac1, mac1]  # handed over, not dropped
    lab.place(VIP4A, "node1", "eth0")  # the ipam moves it back
    assert arping(lab.lab, lab.client, VIP4A, count=3) == [mac1, mac1, mac1]
    lab.place(VIP4A, "node3")  # and away again, for good: silent once the handover is over
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [], timeout=5, message="silent after the handover")
    assert node1.logged("msg=\"handover unclaimed\"")


def test_interface_selection_is_honoured(lab: Cluster) -> None:
    eth0, eth1 = lab.mac("node1", "eth0"), lab.mac("node1", "eth1")
    lab.place(VIP4A, "node1", "eth1")
    lab.place(VIP6A, "node1", "eth1")
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A, count=2) == [eth1, eth1], timeout=5, message="eth1 only")
    assert ndisc6(lab.lab, lab.client, VIP6A) == eth1
    # No interfaces named: every eligible one answers, but never the excluded management interface.
    lab.place(VIP4A, "node1")
    wait_for(
        lambda: sorted(arping(lab.lab, lab.client, VIP4A, count=2)) == sorted([eth0, eth1]),
        timeout=5, message="eth0 and eth1",
    )  # fmt: skip
    report = lab.wait_report("node1", VIP4A, lambda r: len(r.interfaces) == 2)
    assert report.interfaces == ("eth0", "eth1")
    assert arping(lab.lab, lab.nodes["node2"].ns, VIP4A, ifname="mgmt0") == []


def test_a_rogue_claim_is_counted_but_the_placement_wins_while_connected(lab: Cluster) -> None:
    lab.place(VIP4A, "node1", "eth0")
    mac1 = lab.mac("node1")
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [mac1], timeout=5, message="VIP4A at node1")
    rogue = parse_mac("02:00:00:00:be:ef")
    send_raw(lab.lab, lab.client, [arp.build_gratuitous_reply(mac=rogue, ip=IPv4Address(VIP4A))] * 3)
    lab.wait_metric("node1", f'metalbus_layer2_conflicts{{ip="{VIP4A}"}}', at_least=3)
    assert arping(lab.lab, lab.client, VIP4A, count=2) == [mac1, mac1]
    assert lab.metrics("node1").get(f'metalbus_layer2_yields{{ip="{VIP4A}"}}', 0) == 0
    node1 = lab.nodes["node1"].announcer
    assert node1 is not None and node1.logged('msg="conflict kept"')


def test_a_data_link_flap_shows_in_the_reports_and_heals(lab: Cluster) -> None:
    """The bus stays (management network): the placement does not move, the report follows the wire."""
    epoch = lab.place(VIP4A, "node1", "eth0")
    mac1 = lab.mac("node1")
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [mac1], timeout=5, message="VIP4A at node1")
    lab.wait_report("node1", VIP4A, lambda r: r.announcing)
    lab.set_data_link("node1", up=False)
    gone = lab.wait_report("node1", VIP4A, lambda r: not r.announcing)
    assert gone.placement_epoch == epoch  # still placed here: nothing answers it on the wire now
    lab.set_data_link("node1", up=True)
    back = lab.wait_report("node1", VIP4A, lambda r: r.announcing)
    assert (back.interfaces, back.placement_epoch) == (("eth0",), epoch)
    wait_for(lambda: arping(lab.lab, lab.client, VIP4A) == [mac1], timeout=5, message="VIP4A back at node1")
