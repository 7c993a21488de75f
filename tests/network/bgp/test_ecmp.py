"""Two nodes announce the same service IPs to FRR with zebra: the router's kernel table holds one ECMP route
with a leg per node, and follows when a node withdraws (externalTrafficPolicy: Local losing its endpoint) or
leaves (SIGTERM)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.harness import ROUTER4, ROUTER6, Net, SpeakerProcess, route
from tests.network.bgp.routers import Frr, kernel_next_hops, start_frr_with_zebra

_SKIP = skip_reason() or Frr.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

V4, V6 = "198.51.100.7/32", "2001:db8:77::7/128"
NODES = {"node1": ("10.77.0.2", "fd77::2"), "node2": ("10.77.0.3", "fd77::3")}


def bgpd_config() -> str:
    neighbors = [address for address, _ in NODES.values()]
    lines = [
        "frr defaults traditional",
        "hostname router",
        "router bgp 64513",
        f" bgp router-id {ROUTER4}",
        " no bgp ebgp-requires-policy",
        " no bgp default ipv4-unicast",
        *(f" neighbor {n} remote-as 64512\n neighbor {n} passive\n neighbor {n} timers 3 9" for n in neighbors),
    ]
    for family in ("ipv4", "ipv6"):
        lines += [f" address-family {family} unicast", "  maximum-paths 4"]
        lines += [f"  neighbor {n} activate" for n in neighbors]
        lines += [" exit-address-family"]
    return "\n".join(lines) + "\n"


@dataclass
class Fabric:
    lab: Lab
    router: str
    speakers: dict[str, SpeakerProcess]
    frr: Frr

    def hops(self, prefix: str) -> set[str]:
        return kernel_next_hops(self.lab, self.router, prefix)

    def wait_hops(self, prefix: str, expected: set[str]) -> None:
        try:
            wait_for(lambda: self.hops(prefix) == expected, timeout=15, message=f"{prefix} via {sorted(expected)}")
        except TimeoutError:
            print(self.frr.vtysh("show bgp summary").stdout, *(s.events() for s in self.speakers.values()))
            raise


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Fabric]:
    with Lab("mbbgp") as lab:
        bridge = lab.namespace("br")
        lab.bridge(bridge)
        router = lab.namespace("router")
        lab.link(router, bridge_ns=bridge, addresses=[f"{ROUTER4}/24", f"{ROUTER6}/64"])
        namespaces = {name: lab.namespace(name) for name in NODES}
        for name, (v4, v6) in NODES.items():
            lab.link(namespaces[name], bridge_ns=bridge, addresses=[f"{v4}/24", f"{v6}/64"])
        # zebra runs as user frr, which cannot enter pytest's private tmp_path
        with tempfile.TemporaryDirectory(prefix="mbbgp-frr-") as frr_dir:
            frr = start_frr_with_zebra(lab, router, Path(frr_dir), bgpd_config())
            speakers = {
                name: SpeakerProcess(
                    Net(lab, namespaces[name], router, tmp_path),
                    name,
                    local_as=64512,
                    peer_as=64513,
                    router_id=v4,
                    source_address=v4,
                    next_hop_v6=v6,
                )
                for name, (v4, v6) in NODES.items()
            }
            yield Fabric(lab, router, speakers, frr)
            lab.close()  # the daemons go before their directory does


def test_two_nodes_give_two_paths_in_the_router_kernel(fabric: Fabric) -> None:
    for speaker in fabric.speakers.values():
        speaker.announce(route(V4), route(V6))
    fabric.wait_hops(V4, {"10.77.0.2", "10.77.0.3"})
    fabric.wait_hops(V6, {"fd77::2", "fd77::3"})

    fabric.speakers["node2"].announce()  # node2 lost its local endpoint: it withdraws
    fabric.wait_hops(V4, {"10.77.0.2"})
    fabric.wait_hops(V6, {"fd77::2"})

    fabric.speakers["node1"].proc.terminate()  # node1's announcer stops: Cease, routes gone
    fabric.wait_hops(V4, set())
    fabric.wait_hops(V6, set())
