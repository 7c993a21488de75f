"""The announcer works with exactly the capabilities its DaemonSet grants (read from the manifest): as
uid 0 with every other capability out of its bounding set and no new privileges, it answers ARP and NDP
for a placed address and holds a BGP session signed with TCP MD5 to a real BIRD."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from schemas.events import Event
from tests.bgp_world import bgp_advertisement, bgp_peer, config_object, endpoints, node, secret, service
from tests.builders import pool
from tests.netlab import REPO, skip_reason, wait_for
from tests.network.bgp.routers import Bird
from tests.network.bgp_agent.harness import NODES, ROUTER4, BirdNeighbor, Fabric, fabric, start_bird

_SKIP = skip_reason() or Bird.skip_reason()
pytestmark = [pytest.mark.network, pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

IP4, IP6 = "198.51.100.9", "2001:db8:77::9"
PASSWORD = "md5-with-few-capabilities"
ASN = 64512
MANIFEST = REPO / "k8s" / "base" / "announcer.yaml"
#: Linux capability numbers (include/uapi/linux/capability.h) of the ones a DaemonSet may name here.
CAPABILITY_BITS = {"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13}


def granted_capabilities() -> tuple[str, ...]:
    """What the announcer container adds after dropping ALL, as the manifest says."""
    for document in yaml.safe_load_all(MANIFEST.read_text()):
        if document and document.get("kind") == "DaemonSet":
            (container,) = [c for c in document["spec"]["template"]["spec"]["containers"] if c["name"] == "announcer"]
            capabilities = container["securityContext"]["capabilities"]
            assert capabilities["drop"] == ["ALL"]
            return tuple(capabilities["add"])
    raise AssertionError(f"no announcer DaemonSet in {MANIFEST}")


def as_the_daemonset_runs_it(capabilities: tuple[str, ...]) -> tuple[str, ...]:
    """setpriv: root, but only ``capabilities`` left in the bounding set, none inheritable, no new privileges."""
    kept = "".join(f",+{name.lower()}" for name in capabilities)
    return ("setpriv", f"--bounding-set=-all{kept}", "--inh-caps=-all", "--no-new-privs", "--")


def effective_capabilities(pid: int) -> set[str]:
    """The capabilities a process (the announcer under ip netns exec and setpriv: the deepest child) holds."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if children:
        return effective_capabilities(int(children[0]))
    status = Path(f"/proc/{pid}/status").read_text()
    (mask,) = re.findall(r"^CapEff:\s*([0-9a-f]+)$", status, re.MULTILINE)
    held = {name for name, bit in CAPABILITY_BITS.items() if int(mask, 16) >> bit & 1}
    assert int(mask, 16) & ~sum(1 << bit for bit in CAPABILITY_BITS.values()) == 0, f"more capabilities: {mask}"
    return held


def dual_stack_md5_world() -> tuple[Event, ...]:
    """A pool advertised over L2 and over BGP to the router (TCP MD5, its password in a Secret), both nodes,
    and a dual-stack Service asking for IP4 and IP6 with its endpoint on node1."""
    return (
        pool("lan", "198.51.100.0/24", "2001:db8:77::/64"),
        bgp_peer("router", ROUTER4, my_asn=ASN, peer_asn=ASN, holdTime="9s", passwordSecret={"name": "md5"}),
        secret("md5", PASSWORD),
        bgp_advertisement("ads"),
        config_object("L2Advertisement", "l2", {}),
        *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
        endpoints("web", {"node1": 1}),
        service(
            "web", ip_families=("IPv4", "IPv6"), ip_family_policy="RequireDualStack",
            annotations={"metallb.io/loadBalancerIPs": f"{IP4},{IP6}"},
        ),
    )  # fmt: skip


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Fabric, dict[str, BirdNeighbor]]]:
    with fabric(tmp_path, prefix="mbcap") as fab:
        bird = start_bird(fab, router_as=ASN, node_as=ASN, password=PASSWORD)
        fab.observe(*dual_stack_md5_world())
        fab.start_ipam()
        try:
            wait_for(lambda: fab.allocations().get("default/web") == (IP4, IP6), timeout=20, message="allocation")
            fab.start_announcers(wrapper=as_the_daemonset_runs_it(granted_capabilities()))
            yield fab, bird
        except BaseException:
            print(fab.diagnostics(), *(b.diagnostics()[-3000:] for b in bird.values()), sep="\n")
            raise


def test_the_announcer_needs_no_more_than_the_daemonset_grants(lab: tuple[Fabric, dict[str, BirdNeighbor]]) -> None:
    fab, bird = lab
    granted = set(granted_capabilities())
    for name in NODES:
        announcer = fab.nodes[name].announcer
        assert announcer is not None
        assert effective_capabilities(announcer.proc.pid) == granted
    wait_for(lambda: all(b.established() for b in bird.values()), timeout=20, message="both sessions (TCP MD5)")
    wait_for(lambda: bool(bird["node1"].route(f"{IP4}/32")), timeout=10, message="the route at BIRD")

    def answered(*command: str) -> bool:
        return fab.lab.run(fab.router, *command, check=False).returncode == 0

    wait_for(lambda: answered("arping", "-c", "1", "-w", "1", "-I", "eth0", IP4), timeout=15, message="ARP answer")
    wait_for(lambda: answered("ndisc6", "-1", "-r", "1", "-w", "500", IP6, "eth0"), timeout=15, message="NDP answer")
    for name in NODES:
        announcer = fab.nodes[name].announcer
        assert announcer is not None
        assert not announcer.logged(r"Operation not permitted|PermissionError"), announcer.tail()
