"""Convergence of an unnumbered session (BGPPeer ``interface``, RFC 8950) next to a numbered one, FRR 8 receiving.

    python bench/bgp_unnumbered.py [--prefixes 10000] [--rounds 3]

One node and one router joined by a veth that has IPv4 addresses (for the numbered session) and IPv6
link-local ones; FRR (bgpd and zebra, which installs what it learns in the router's kernel) has a neighbour at
the node's IPv4 address and one on the interface (`neighbor eth0 interface`). Each round runs the node's
session as the announcer's agent runs it (``tests/network/bgp/peer_session_proc``), once numbered, once
unnumbered, one after the other, and measures:
- up: session process start → Established at FRR (unnumbered: router discovery included);
- converge: on the established session, every prefix handed to the session at once → all of them in FRR's
  table (IPv4 /32s: in NLRI with an IPv4 next hop when numbered, in MP_REACH_NLRI with the link-local next hop
  when unnumbered).
Prints a table, then one JSON object as the last line. ``bench/bgp.py`` prints the same figures beside its own.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from tests.netlab import Lab, skip_reason, wait_for
from tests.network.bgp.link_harness import PeerSessionProcess, frr_unnumbered
from tests.network.bgp.routers import Frr, start_frr_with_zebra

NODE4, ROUTER4 = "10.77.0.2", "10.77.0.1"
BASE = ipaddress.IPv4Address("10.100.0.0")
SESSIONS: dict[str, tuple[str, dict[str, Any]]] = {  # FRR's name of the neighbour, the node's BGPPeer
    "numbered": (NODE4, {"peerAddress": ROUTER4}),
    "unnumbered": ("eth0", {"interface": "eth0"}),
}


def frr_peers(frr: Frr) -> dict[str, Any]:
    out = frr.vtysh("show bgp ipv4 unicast summary json", check=False).stdout
    return dict(json.loads(out or "{}").get("peers", {}))


def received(frr: Frr, neighbor: str) -> int:
    return int(frr_peers(frr).get(neighbor, {}).get("pfxRcd", 0))


def established(frr: Frr, neighbor: str) -> bool:
    return bool(frr_peers(frr).get(neighbor, {}).get("state") == "Established")


def one_session(lab: Lab, node: str, frr: Frr, directory: Path, kind: str, prefixes: list[str]) -> dict[str, float]:
    neighbor, peer = SESSIONS[kind]
    spec = {"myASN": 64512, "peerASN": 64513, "holdTime": "9s", "connectTime": "2s", **peer}
    started = time.monotonic()
    session = PeerSessionProcess(lab, node, directory / f"{kind}.log", peer=spec, routes=[])
    try:
        wait_for(lambda: established(frr, neighbor), timeout=60, message=f"{kind} session Established")
        up = time.monotonic() - started
        started = time.monotonic()
        session.announce(prefixes)
        wait_for(lambda: received(frr, neighbor) >= len(prefixes), timeout=120, message=f"{kind}: all at FRR",
                 interval=0.05)  # fmt: skip
        converge = time.monotonic() - started
    finally:
        session.stop()
    wait_for(lambda: not established(frr, neighbor), timeout=30, message=f"{kind} session down")
    return {f"{kind}_up_s": up, f"{kind}_converge_s": converge}


def unnumbered_vs_numbered(count: int, rounds: int) -> dict[str, float]:
    """Median figures of ``rounds`` rounds, each a numbered then an unnumbered session carrying ``count``
    IPv4 prefixes to FRR."""
    prefixes = [f"{BASE + index}/32" for index in range(count)]
    results: list[dict[str, float]] = []
    with (
        Lab("mbunb") as lab,
        tempfile.TemporaryDirectory(prefix="mbunb-") as tmp,
        tempfile.TemporaryDirectory(prefix="mbunb-frr-") as frr_dir,  # zebra runs as frr: a directory of its own
    ):
        node, router = lab.namespace("node"), lab.namespace("router")
        lab.veth(node, router, addresses_a=[f"{NODE4}/24"], addresses_b=[f"{ROUTER4}/24"])
        frr = start_frr_with_zebra(lab, router, Path(frr_dir), frr_unnumbered(numbered=NODE4))
        for _ in range(rounds):
            figures: dict[str, float] = {}
            for kind in SESSIONS:
                figures |= one_session(lab, node, frr, Path(tmp), kind, prefixes)
            results.append(figures)
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    return skip_reason() or Frr.skip_reason() or (None if shutil.which("vtysh") else "vtysh not installed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    reason = why_not()
    if reason is not None:
        print(f"skipped: {reason}")
        print(json.dumps({"benchmark": "bgp_unnumbered", "skipped": reason}))
        return
    figures = unnumbered_vs_numbered(args.prefixes, args.rounds)
    print(f"{'median of ' + str(args.rounds) + ' round(s), FRR 8':<40}{'numbered':>12}{'unnumbered':>12}")
    print(f"{'session start → Established, s':<40}{figures['numbered_up_s']:>12.3f}{figures['unnumbered_up_s']:>12.3f}")
    label = f"{args.prefixes} prefixes → all at FRR, s"
    print(f"{label:<40}{figures['numbered_converge_s']:>12.3f}{figures['unnumbered_converge_s']:>12.3f}")
    print(json.dumps({"benchmark": "bgp_unnumbered", "prefixes": args.prefixes, "rounds": args.rounds,
                      "peer": "frr8", **{k: round(v, 3) for k, v in figures.items()}}))  # fmt: skip


if __name__ == "__main__":
    main()
