"""BFD detection time over one hop and over several, side by side, for bench/bgp.py.

One FRR 8 router (zebra, bfdd, bgpd) and three nodes, each running one BGPPeer's session as the announcer runs it
(``tests.network.bgp.peer_session_proc``) with the same BFDProfile (300 ms x 3), node-c's with echo mode too:

    node-a (10.79.0.2) ─┐                                     single hop: eBGP, BFD on UDP 3784, TTL 255
    node-c (10.79.0.4) ─┤                                     single hop, echoMode, echoInterval 50 ms
                        br ── router (10.79.0.1, FRR)
    hop (10.79.0.3) ────┘  forwards 10.78.1.0/24
     └── node-b (10.78.1.2)                                   multihop: ebgpMultiHop, BFD on UDP 4784

A cut the router cannot see itself (a node's port on the bridge down; the hop's link to node-b down) → the
node's prefix gone from FRR's table, polled every 10 ms. Each figure is the median of ``rounds`` cuts.

    python bench/bgp_bfd_hops.py [--rounds 5]      (alone; bench/bgp.py runs it beside its own figures)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.frr_bfd import BfdNeighbor, bfd_peer, bfdd_config, bgpd_config
from tests.network.bgp.link_harness import PeerSessionProcess
from tests.network.bgp.routers import Frr, start_frr_with_zebra

ROUTER, NODE_A, HOP, HOP_B, NODE_B = "10.79.0.1", "10.79.0.2", "10.79.0.3", "10.78.1.1", "10.78.1.2"
NODE_C, ECHO_MS = "10.79.0.4", 50
PREFIX_A, PREFIX_B, PREFIX_C = "198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32"
PROFILE = {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3}
ECHO = {**PROFILE, "echoMode": True, "echoInterval": ECHO_MS}
NEIGHBORS = (
    BfdNeighbor(NODE_A, remote_as=64512, local=ROUTER),
    BfdNeighbor(NODE_B, remote_as=64512, local=ROUTER, interface=None),
    BfdNeighbor(NODE_C, remote_as=64512, local=ROUTER, echo_ms=ECHO_MS),
)
BGPD, BFDD = bgpd_config(router_as=64513, router_id=ROUTER, neighbors=NEIGHBORS), bfdd_config(NEIGHBORS)


def peer(address: str, **spec: Any) -> dict[str, Any]:
    return {"myASN": 64512, "peerASN": 64513, "peerAddress": ROUTER, "sourceAddress": address, "holdTime": "90s",
            "connectTime": "1s", "bfdProfile": "bench", **spec}  # fmt: skip


def cut_to_gone(lab: Lab, frr: Frr, *, prefix: str, neighbor: str, ns: str, link: str) -> float:
    """Both BFD and the route up, then ``link`` in ``ns`` down: seconds until FRR has no ``prefix``; restored."""
    wait_for(lambda: frr.route(prefix), timeout=60, message=f"{prefix} at FRR")
    wait_for(lambda: bfd_peer(frr, neighbor).get("status") == "up", timeout=30, message=f"BFD with {neighbor} up")
    cut = time.monotonic()
    lab.run(ns, "ip", "link", "set", link, "down")
    wait_for(lambda: frr.route(prefix) is None, timeout=30, message=f"{prefix} gone", interval=0.01)
    gone = time.monotonic() - cut
    lab.run(ns, "ip", "link", "set", link, "up")
    return gone


def run_bfd_hops(rounds: int) -> dict[str, float]:
    """Median seconds from a cut to the route gone at FRR: ``bfd_single_hop_cut_s``, ``bfd_multihop_cut_s`` and
    ``bfd_echo_cut_s``."""
    single: list[float] = []
    multi: list[float] = []
    echo: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mbbgp-hops-") as tmp, Lab("mbhop") as lab:
        directory = Path(tmp)
        bridge, router, hop = lab.namespace("br"), lab.namespace("router"), lab.namespace("hop")
        node_a, node_b, node_c = lab.namespace("node-a"), lab.namespace("node-b"), lab.namespace("node-c")
        lab.bridge(bridge)
        lab.link(router, bridge_ns=bridge, addresses=[f"{ROUTER}/24"])
        port_a = lab.link(node_a, bridge_ns=bridge, addresses=[f"{NODE_A}/24"])
        port_c = lab.link(node_c, bridge_ns=bridge, addresses=[f"{NODE_C}/24"])
        for ns in (router, node_c):  # each loops the other's echoes
            lab.sysctl(ns, "net.ipv4.ip_forward", "1")
        lab.link(hop, bridge_ns=bridge, addresses=[f"{HOP}/24"])
        lab.veth(hop, node_b, ifname_a="eth1", addresses_a=[f"{HOP_B}/24"], addresses_b=[f"{NODE_B}/24"])
        lab.sysctl(hop, "net.ipv4.ip_forward", "1")
        lab.run(router, "ip", "route", "add", "10.78.1.0/24", "via", HOP)
        lab.run(node_b, "ip", "route", "add", "default", "via", HOP_B)
        try:
            frr = start_frr_with_zebra(lab, router, directory, BGPD, bfdd_config=BFDD)  # user frr enters it
            for ns, address, prefix, spec, profile in (
                (node_a, NODE_A, PREFIX_A, peer(NODE_A), PROFILE),
                (node_b, NODE_B, PREFIX_B, peer(NODE_B, ebgpMultiHop=True), PROFILE),
                (node_c, NODE_C, PREFIX_C, peer(NODE_C), ECHO),
            ):
                PeerSessionProcess(lab, ns, directory / f"{ns}.log", peer=spec, routes=[prefix],
                                   node_addresses=[address], bfd_profiles={"bench": profile})  # fmt: skip
            for _ in range(rounds):
                single.append(cut_to_gone(lab, frr, prefix=PREFIX_A, neighbor=NODE_A, ns=bridge, link=port_a))
                multi.append(cut_to_gone(lab, frr, prefix=PREFIX_B, neighbor=NODE_B, ns=hop, link="eth1"))
                echo.append(cut_to_gone(lab, frr, prefix=PREFIX_C, neighbor=NODE_C, ns=bridge, link=port_c))
        finally:
            lab.close()  # the daemons go before their directory does
    return {"bfd_single_hop_cut_s": statistics.median(single), "bfd_multihop_cut_s": statistics.median(multi),
            "bfd_echo_cut_s": statistics.median(echo)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    reason = skip_reason() or Frr.skip_reason() or (None if os.geteuid() == 0 else "needs root")
    if reason is not None:
        print(json.dumps({"benchmark": "bgp_bfd_hops", "skipped": reason}))
        return
    figures = run_bfd_hops(args.rounds)
    print(f"BFD 300 ms x 3 at FRR, cut → route gone (median of {args.rounds})")
    print(f"  single hop  {figures['bfd_single_hop_cut_s']:.3f} s")
    print(f"  multihop    {figures['bfd_multihop_cut_s']:.3f} s")
    print(f"  echo mode   {figures['bfd_echo_cut_s']:.3f} s  (echo {ECHO_MS} ms x 3, single hop)")
    print(
        json.dumps({"benchmark": "bgp_bfd_hops", "rounds": args.rounds, **{k: round(v, 3) for k, v in figures.items()}})
    )


if __name__ == "__main__":
    main()
