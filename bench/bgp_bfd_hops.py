"""BFD detection time over one hop and over several, side by side, for bench/bgp.py.

One FRR 8 router (zebra, bfdd, bgpd) and two nodes, each running one BGPPeer's session as the announcer runs it
(``tests.network.bgp.peer_session_proc``) with the same BFDProfile (300 ms x 3):

    node-a (10.79.0.2) ─┐                                     single hop: eBGP, BFD on UDP 3784, TTL 255
                        br ── router (10.79.0.1, FRR)
    hop (10.79.0.3) ────┘  forwards 10.78.1.0/24
     └── node-b (10.78.1.2)                                   multihop: ebgpMultiHop, BFD on UDP 4784

A cut the router cannot see itself (node-a's port on the bridge down; the hop's link to node-b down) → the
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
PREFIX_A, PREFIX_B = "198.51.100.1/32", "198.51.100.2/32"
PROFILE = {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3}
NEIGHBORS = (BfdNeighbor(NODE_A, remote_as=64512, local=ROUTER), BfdNeighbor(NODE_B, remote_as=64512, local=ROUTER,
                                                                            interface=None))  # fmt: skip
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
    """Median seconds from a cut to the route gone at FRR: ``bfd_single_hop_cut_s`` and ``bfd_multihop_cut_s``."""
    single: list[float] = []
    multi: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mbbgp-hops-") as tmp, Lab("mbhop") as lab:
        directory = Path(tmp)
        bridge, router, hop = lab.namespace("br"), lab.namespace("router"), lab.namespace("hop")
        node_a, node_b = lab.namespace("node-a"), lab.namespace("node-b")
        lab.bridge(bridge)
        lab.link(router, bridge_ns=bridge, addresses=[f"{ROUTER}/24"])
        port_a = lab.link(node_a, bridge_ns=bridge, addresses=[f"{NODE_A}/24"])
        lab.link(hop, bridge_ns=bridge, addresses=[f"{HOP}/24"])
        lab.veth(hop, node_b, ifname_a="eth1", addresses_a=[f"{HOP_B}/24"], addresses_b=[f"{NODE_B}/24"])
        lab.sysctl(hop, "net.ipv4.ip_forward", "1")
        lab.run(router, "ip", "route", "add", "10.78.1.0/24", "via", HOP)
        lab.run(node_b, "ip", "route", "add", "default", "via", HOP_B)
        try:
            frr = start_frr_with_zebra(lab, router, directory, BGPD, bfdd_config=BFDD)  # user frr enters it
            for ns, address, prefix, spec in (
                (node_a, NODE_A, PREFIX_A, peer(NODE_A)),
                (node_b, NODE_B, PREFIX_B, peer(NODE_B, ebgpMultiHop=True)),
            ):
                PeerSessionProcess(lab, ns, directory / f"{ns}.log", peer=spec, routes=[prefix],
                                   node_addresses=[address], bfd_profiles={"bench": PROFILE})  # fmt: skip
            for _ in range(rounds):
                single.append(cut_to_gone(lab, frr, prefix=PREFIX_A, neighbor=NODE_A, ns=bridge, link=port_a))
                multi.append(cut_to_gone(lab, frr, prefix=PREFIX_B, neighbor=NODE_B, ns=hop, link="eth1"))
        finally:
            lab.close()  # the daemons go before their directory does
    return {"bfd_single_hop_cut_s": statistics.median(single), "bfd_multihop_cut_s": statistics.median(multi)}


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
    print(
        json.dumps({"benchmark": "bgp_bfd_hops", "rounds": args.rounds, **{k: round(v, 3) for k, v in figures.items()}})
    )


if __name__ == "__main__":
    main()
