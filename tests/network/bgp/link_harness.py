"""What the unnumbered and VRF network tests (and bench/bgp.py) share: FRR's side of an unnumbered session,
and one BGPPeer's session run in a namespace as the announcer's agent runs it (``peer_session_proc``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.netlab import Lab


def frr_unnumbered(
    *,
    interface: str = "eth0",
    numbered: str | None = None,
    remote_as: str = "external",
    password: str = "",
    bfd: bool = False,
    timers: tuple[int, int] = (3, 9),
) -> str:
    """bgpd's configuration: ``neighbor IFNAME interface`` (and, with ``numbered``, a neighbor at that address
    too), both address families activated, ``timers`` (keepalive, hold); with ``password``, TCP MD5 on the
    interface's; with ``bfd``, BFD beside it (bfdd must run)."""
    neighbors = [f"{interface} interface", *([numbered] if numbered else [])]
    names = [interface, *([numbered] if numbered else [])]
    lines = [
        "frr defaults traditional",
        "hostname router",
        "router bgp 64513",
        " bgp router-id 10.255.0.1",
        " no bgp ebgp-requires-policy",
        *(f" neighbor {n} remote-as {remote_as}" for n in neighbors),
        *(f" neighbor {n} timers {timers[0]} {timers[1]}\n neighbor {n} timers connect 2" for n in names),
        *([f" neighbor {interface} password {password}"] if password else []),
        *([f" neighbor {interface} bfd"] if bfd else []),
    ]
    for family in ("ipv4", "ipv6"):
        lines += [f" address-family {family} unicast", *(f"  neighbor {n} activate" for n in names)]
        lines += [" exit-address-family"]
    return "\n".join(lines) + "\n"


def node_link_local(lab: Lab, ns: str, interface: str = "eth0") -> str:
    """The IPv6 link-local address of ``interface`` in ``ns``."""
    out = lab.run(ns, "ip", "-j", "-6", "addr", "show", "dev", interface, "scope", "link").stdout
    found = [a["local"] for link in json.loads(out) for a in link.get("addr_info", []) if "local" in a]
    assert found, f"no link-local address on {interface} in {ns}: {out}"
    return str(found[0])


class PeerSessionProcess:
    """tests.network.bgp.peer_session_proc in a namespace: one BGPPeer's session as the agent runs it."""

    def __init__(
        self,
        lab: Lab,
        ns: str,
        log: Path,
        *,
        peer: dict[str, Any],
        routes: Sequence[str],
        node_addresses: Sequence[str] = (),
        bfd_profiles: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self.log = log
        config = {"peer": peer, "node": {"name": "node", "addresses": list(node_addresses)}, "routes": list(routes),
                  "bfdProfiles": dict(bfd_profiles or {})}  # fmt: skip
        module = "tests.network.bgp.peer_session_proc"
        self.proc = lab.popen(ns, sys.executable, "-m", module, json.dumps(config), str(log))

    def announce(self, routes: Sequence[str]) -> None:
        """The whole set the session should advertise from now on."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"routes": list(routes)}) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def states(self) -> list[str]:
        text = self.log.read_text() if self.log.exists() else ""
        return [line.split(" state ", 1)[1] for line in text.splitlines() if " state " in line]

    def reached(self, state: str) -> bool:
        return any(s.startswith(state) for s in self.states())


def bird_unnumbered(*, neighbor: str, interface: str = "eth0", log_file: Path) -> str:
    """BIRD 2 as the router of an unnumbered link: router advertisements (its radv protocol, as FRR's zebra
    sends them for an unnumbered interface) and a passive session to the node's link-local address with
    extended next hop for IPv4."""
    return f"""
router id 10.255.0.2;
log "{log_file}" all;
protocol device {{ scan time 1; }}
protocol radv {{ interface "{interface}" {{ min ra interval 3; max ra interval 4; }}; }}
protocol bgp node {{
    local as 64513;
    neighbor {neighbor}%{interface} as 64512;
    interface "{interface}";
    passive on;
    hold time 9;
    connect delay time 1;
    connect retry time 2;
    error wait time 1, 2;
    ipv4 {{ import all; export none; extended next hop on; }};
    ipv6 {{ import all; export none; }};
}}
"""


GOBGP_UNNUMBERED = """[global.config]
  as = 64513
  router-id = "10.255.0.3"
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-interface = "{interface}"
    peer-as = 64512
  [neighbors.transport.config]
    passive-mode = true
  [neighbors.timers.config]
    hold-time = 9
    keepalive-interval = 3
    connect-retry = 2
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"""
"""GoBGP 3 with ``neighbor-interface``: it takes the one link-local neighbour its kernel knows on the interface
(so it starts once the node has been heard there) and sends no router advertisements of its own."""

RADV_ONLY = """router id 10.255.0.3;
protocol device {{ scan time 1; }}
protocol radv {{ interface "{interface}" {{ min ra interval 3; max ra interval 4; }}; }}
"""
"""BIRD as nothing but the router advertisements beside GoBGP, as radvd would send them."""
