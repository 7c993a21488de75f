"""A real announcer with a BGPPeer that has ``interface: eth0`` and no address (BGP unnumbered), as a MetalLB
user writes it, against FRR 8 with zebra (`neighbor eth0 interface remote-as external`): the announcer finds
FRR on the link, the Service's IPv4 and IPv6 addresses reach FRR with the node's link-local next hop and the
router's kernel through it, and the session is counted under the router's link-local address scoped to the
interface. Allocations are published as the ipam would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bgp_world import allocated, bgp_advertisement, config_object, endpoints, node, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.link_harness import frr_unnumbered, node_link_local
from tests.network.bgp.routers import Frr
from tests.network.bgp_agent.harness import NODES, Fabric, fabric_with_frr

pytestmark = [pytest.mark.network]
IP4, IP6 = "198.51.100.9", "2001:db8:77::9"


@pytest.fixture
def frr_lab(tmp_path: Path) -> Iterator[tuple[Fabric, Frr]]:
    reason = skip_reason() or Frr.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with fabric_with_frr(tmp_path, frr_unnumbered(), neighbor="eth0", diagnose="show bgp neighbors eth0") as lab:
        yield lab


def test_an_interface_peer_carries_the_service_to_frr_over_link_local(frr_lab: tuple[Fabric, Frr]) -> None:
    fab, frr = frr_lab
    hostname = {"matchLabels": {"kubernetes.io/hostname": "node1"}}  # one node on the router's unnumbered port
    fab.observe(
        pool("lan", "198.51.100.0/24", "2001:db8:77::/64"),
        config_object("BGPPeer", "router", {"myASN": 64512, "peerASN": 64513, "interface": "eth0",
                                            "holdTime": "9s", "nodeSelectors": [hostname]}),
        bgp_advertisement("ads"),
        *(node(name, v4, v6, labels={"kubernetes.io/hostname": name}) for name, (v4, v6) in NODES.items()),
        endpoints("web", {"node1": 1}),
        service("web", ip_families=("IPv4", "IPv6")),
    )  # fmt: skip
    fab.allocate(allocated("web", IP4, IP6, pool="lan"))
    fab.start_announcer("node1")
    node_ll = node_link_local(fab.lab, fab.nodes["node1"].ns)

    def route(prefix: str) -> dict[str, Any] | None:
        family = "ipv6" if ":" in prefix else "ipv4"
        paths = json.loads(frr.vtysh(f"show bgp {family} unicast {prefix} json").stdout or "{}").get("paths")
        return dict(paths[0]) if paths else None

    v4 = wait_for(lambda: route(f"{IP4}/32"), timeout=30, message="the IPv4 address at FRR")
    assert [h["ip"] for h in v4["nexthops"]] == [node_ll]
    v6 = wait_for(lambda: route(f"{IP6}/128"), timeout=10, message="the IPv6 address at FRR")
    assert node_ll in [h["ip"] for h in v6["nexthops"]]

    def kernel(prefix: str) -> dict[str, Any] | None:
        out = fab.lab.run(fab.router, "ip", "-j", "route", "show", prefix, check=False).stdout
        routes = json.loads(out) if out.strip() else []
        return dict(routes[0]) if routes else None

    installed = wait_for(lambda: kernel(IP4), timeout=10, message="the IPv4 address in the router's kernel")
    assert installed.get("via") == {"family": "inet6", "host": node_ll}, installed

    router_ll = node_link_local(fab.lab, fab.router)  # the peer, as it was found on the link
    up = f'metallb_bgp_session_up{{peer="{router_ll}%eth0"}}'
    wait_for(lambda: fab.metrics("node1").get(up) == 1.0, timeout=10, message=f"{up} 1")
