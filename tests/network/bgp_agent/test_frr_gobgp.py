"""Real announcers against FRR 8 with zebra (two nodes: ECMP in the router's kernel table, following the
endpoints under externalTrafficPolicy Local) and against GoBGP 3 (eBGP: communities and large communities,
withdrawn on Service delete). Allocations are published as the ipam would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.events import ObjectKind, ServiceObserved
from tests.bgp_world import allocated, bgp_advertisement, bgp_peer, deleted, endpoints, node, released, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Frr, GoBgp, Peering, kernel_next_hops
from tests.network.bgp_agent.harness import NODES, ROUTER4, ROUTER6, Fabric, fabric, fabric_with_frr

pytestmark = [pytest.mark.network]
IP4, IP6 = "198.51.100.9", "2001:db8:77::9"
V4, V6 = f"{IP4}/32", f"{IP6}/128"
NODE_AS, ROUTER_AS = 64512, 64513


def web(version: str, policy: str = "Cluster") -> ServiceObserved:
    return service("web", version=version, ip_families=("IPv4", "IPv6"), external_traffic_policy=policy)


def publish_world(fab: Fabric, *, serving: dict[str, int], peer_address: str = ROUTER4) -> None:
    fab.observe(
        pool("lan", "198.51.100.0/24", "2001:db8:77::/64"),
        bgp_peer("router", peer_address, my_asn=NODE_AS, peer_asn=ROUTER_AS, holdTime="9s"),
        bgp_advertisement("ads", communities=["65000:9", "large:64512:9:9"]),
        *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
        endpoints("web", serving),
        web("1"),
    )
    fab.allocate(allocated("web", IP4, IP6, pool="lan"))


def start_announcers(fab: Fabric, *names: str) -> None:
    for name in names:
        fab.start_announcer(name, wait=False)
    for name in names:
        announcer = fab.nodes[name].announcer
        assert announcer is not None
        announcer.wait_logged('msg="bgp agent started"')


def bgpd_config() -> str:
    neighbors = [v4 for v4, _ in NODES.values()]
    lines = [
        "frr defaults traditional", "hostname router", f"router bgp {ROUTER_AS}", f" bgp router-id {ROUTER4}",
        " no bgp ebgp-requires-policy", " no bgp default ipv4-unicast",
        *(f" neighbor {n} remote-as {NODE_AS}\n neighbor {n} passive\n neighbor {n} timers 3 9" for n in neighbors),
    ]  # fmt: skip
    for family in ("ipv4", "ipv6"):
        lines += [f" address-family {family} unicast", "  maximum-paths 4"]
        lines += [f"  neighbor {n} activate" for n in neighbors]
        lines += [" exit-address-family"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def frr_lab(tmp_path: Path) -> Iterator[tuple[Fabric, Frr]]:
    reason = skip_reason() or Frr.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with fabric_with_frr(tmp_path, bgpd_config()) as lab:
        yield lab


def test_frr_two_nodes_ecmp_in_the_kernel_following_endpoints(frr_lab: tuple[Fabric, Frr]) -> None:
    fab, _ = frr_lab
    publish_world(fab, serving={"node1": 1})
    start_announcers(fab, *NODES)

    def hops(prefix: str) -> set[str]:
        return kernel_next_hops(fab.lab, fab.router, prefix)

    both4 = {v4 for v4, _ in NODES.values()}
    both6 = {v6 for _, v6 in NODES.values()}
    wait_for(lambda: hops(V4) == both4, timeout=30, message="ECMP over both nodes (IPv4)")
    wait_for(lambda: hops(V6) == both6, timeout=30, message="ECMP over both nodes (IPv6)")

    fab.observe(web("2", "Local"))  # only node1 has an endpoint
    wait_for(lambda: hops(V4) == {NODES["node1"][0]}, timeout=15, message="node1 only (Local)")
    wait_for(lambda: hops(V6) == {NODES["node1"][1]}, timeout=15, message="node1 only (Local, IPv6)")
    fab.observe(endpoints("web", {"node1": 1, "node2": 1}))
    wait_for(lambda: hops(V4) == both4, timeout=15, message="both again with an endpoint on each")

    fab.observe(endpoints("web", {}))  # no endpoint anywhere: withdrawn everywhere
    wait_for(lambda: not hops(V4) and not hops(V6), timeout=15, message="withdrawn without endpoints")


@pytest.fixture(params=["ipv4", "ipv6"], ids=["session-over-ipv4", "session-over-ipv6"])
def gobgp_lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Fabric, GoBgp]]:
    reason = skip_reason() or GoBgp.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    v6 = request.param == "ipv6"
    with fabric(tmp_path) as fab:
        peering = Peering(
            router_id=ROUTER4, local=ROUTER6 if v6 else ROUTER4, local_as=ROUTER_AS,
            neighbor=NODES["node1"][1 if v6 else 0], neighbor_as=NODE_AS, graceful_restart=False,
        )  # fmt: skip
        gobgp = GoBgp.start(fab.lab, fab.router, tmp_path / "gobgp", peering)
        try:
            yield fab, gobgp
        except BaseException:
            print(fab.diagnostics(), gobgp.diagnostics(), sep="\n")
            raise


def test_gobgp_routes_with_communities_withdrawn_on_delete(gobgp_lab: tuple[Fabric, GoBgp]) -> None:
    """Both families over one session, IPv4 or IPv6: the other family's next hop is the node's address."""
    fab, gobgp = gobgp_lab
    publish_world(fab, serving={"node2": 1}, peer_address=gobgp.peering.local)
    start_announcers(fab, "node1")
    wait_for(gobgp.established, timeout=30, message="GoBGP session")
    for prefix, hop in ((V4, NODES["node1"][0]), (V6, NODES["node1"][1])):
        route = wait_for(lambda p=prefix: gobgp.route(p), timeout=15, message=f"{prefix} at GoBGP")  # type: ignore[misc]
        assert route.next_hop == hop
        assert route.as_path == (NODE_AS,)
        assert route.communities == ("65000:9",)
        assert route.large_communities == ("64512:9:9",)
    fab.observe(deleted(ObjectKind.SERVICE, "web"))
    fab.allocate(released("web", IP4, IP6))
    wait_for(lambda: gobgp.route(V4) is None and gobgp.route(V6) is None, timeout=15, message="withdrawn")
