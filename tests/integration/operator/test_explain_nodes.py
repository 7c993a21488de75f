"""`metalbus explain` per node, through a real nats-server and a real ipam replica: the observed world is
published on K8S as the watcher would, ipam decides L2 and BGP, and explain says — for each mode — why each
node does or does not announce the Service, nodes grouped by reason."""

from __future__ import annotations

from schemas.events import BGPAdvertisementDecided, Event
from services.common.bus import Bus
from services.common.nats_server import EmbeddedNats
from services.common.subjects import IPAM_BGP_DECISIONS, StreamName
from services.operator.explain import show_explain
from tests.bgp_world import bgp_advertisement, bgp_peer, endpoints, node
from tests.builders import pool, service
from tests.builders_l2 import l2
from tests.integration.ipam.helpers import observe
from tests.integration.ipam.test_ipam_service import replica
from tests.integration.operator.test_explain_history import heartbeating, said
from tests.waiting import async_wait_until

EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"
RACKED = {"matchExpressions": [{"key": "rack", "operator": "In", "values": ["r1", "r2"]}]}
RACKS = [node(f"node-{i:02}", labels={"rack": "r1" if i < 10 else "r2"}) for i in range(30)]
WORLD: list[Event] = [
    pool("lan", "192.168.10.0/24"),
    l2("lan", ipAddressPools=["lan"]),
    bgp_peer("tor-r1", "10.0.0.1", my_asn=64512, peer_asn=64513, nodeSelectors=[{"matchLabels": {"rack": "r1"}}]),
    bgp_advertisement("edge", ipAddressPools=["lan"], communities=["65000:1"],
                      nodeSelectors=[RACKED]),
    *RACKS,
    node("node-x", labels={"rack": "r1", EXCLUDE: ""}),
    node("node-other"),
    service("web", external_traffic_policy="Local", annotations={"metallb.io/loadBalancerIPs": "192.168.10.7"}),
    endpoints("web", {"node-01": 1, "node-02": 1, "node-12": 1}),
]


async def _decided(bus: Bus) -> bool:
    async for received in bus.read(StreamName.IPAM, subjects=[IPAM_BGP_DECISIONS], last_per_subject=True):
        if isinstance(received.event, BGPAdvertisementDecided) and received.event.nodes == ("node-01", "node-02",
                                                                                            "node-12"):
            return True
    return False


async def test_explain_says_per_node_why_it_announces_or_not(bus: Bus, nats_server: EmbeddedNats) -> None:
    await observe(bus, WORLD)
    async with heartbeating(bus, "node-02"), replica(nats_server.url, "a"):
        await async_wait_until(lambda: _decided(bus), timeout=15, what="ipam's BGP decision for web")
        text = await said(lambda console: show_explain(nats_server.url, "default/web", console=console))
    # over BGP: the two serving nodes under the peer's rack, the third serving one has no peer
    assert "192.168.10.7: BGP — advertised as 192.168.10.7/32 by edge, only from the 3 nodes" in text
    assert "Announces to tor-r1 (2): node-01, node-02" in text
    assert "NoPeerForNode (1): node-12" in text
    assert "NodeLabeledExcludeBalancers (1): node-x" in text
    # 27 racked nodes and node-other have no serving endpoint; only five names are listed
    assert "NoLocalServingEndpoints (28): node-00, node-03, node-04, node-05, node-06, … and 23 more" in text
    # layer 2: one node answers (the only live one), the other serving nodes stand by
    assert "192.168.10.7: layer 2 by lan; per node:" in text
    assert "Announces (1): node-02" in text
    assert "Standby (2): node-01, node-12" in text
