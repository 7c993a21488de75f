"""ipam's BGP decisions, the pure cost: deciding every IP, endpoint changes, a configuration change.

With ``services`` Services in one BGP-advertised pool (half ``Cluster``, half ``Local``, each with serving
endpoints on two of ``nodes`` nodes), a decider takes over; then we time, without any I/O:
- taking over with and without a BGPAdvertisement (the difference is what deciding BGP for every IP costs);
- endpoint changes that change no decision (Cluster endpoints moving, Local ones scaling on the same nodes):
  the time per change and how many events are appended (none expected);
- endpoint changes that move a Local Service's endpoints to another node (one decision each);
- a configuration change every decision sees (the advertisement's localPref): every IP re-decided.

``nice -n 10 python bench/bgp_decisions.py [--quick]``; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from schemas.events import BGPAdvertisementDecided, BGPAdvertisementWithdrawn, Event
from services.ipam.decider import Decider, Outgoing
from tests.bgp_world import bgp_advertisement, bgp_peer, endpoints, node
from tests.builders import pool, service


def world(services: int, nodes: int, *, bgp: bool) -> list[Event]:
    names = [f"node-{i:04d}" for i in range(nodes)]
    events: list[Event] = [pool("lan", "10.0.0.0/8"), *(node(n) for n in names)]
    if bgp:
        events += [bgp_peer("tor", "192.0.2.1", my_asn=64512, peer_asn=64513),
                   bgp_advertisement("edge", communities=["65000:1"], localPref=100)]  # fmt: skip
    for i in range(services):
        name = f"s{i:05d}"
        events.append(service(name, external_traffic_policy="Local" if i % 2 else "Cluster"))
        events.append(endpoints(name, {names[i % nodes]: 1, names[(i + 1) % nodes]: 1}))
    return events


def taken_over(events: list[Event]) -> tuple[Decider, float, list[Outgoing]]:
    decider = Decider()
    for event in events:
        decider.load_observation(event)
    started = time.perf_counter()
    out = decider.activate()
    return decider, time.perf_counter() - started, out


def bgp_count(out: list[Outgoing]) -> int:
    return sum(isinstance(o.event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn) for o in out)


def timed_changes(decider: Decider, changes: Sequence[Event]) -> tuple[float, int]:
    """Mean seconds per observed change, and BGP events appended in all."""
    appended = 0
    started = time.perf_counter()
    for change in changes:
        appended += bgp_count(decider.observe(change))
    return (time.perf_counter() - started) / len(changes), appended


def measure(*, services: int, nodes: int, changes: int) -> dict[str, Any]:
    gc.disable()
    _, without_bgp, _ = taken_over(world(services, nodes, bgp=False))
    decider, with_bgp, out = taken_over(world(services, nodes, bgp=True))
    names = [f"node-{i:04d}" for i in range(nodes)]
    quiet = [
        endpoints(f"s{i:05d}", {names[(i + 7) % nodes]: 3} if i % 2 == 0 else
                  {names[i % nodes]: 5, names[(i + 1) % nodes]: 2})
        for i in range(changes)
    ]  # fmt: skip
    quiet_s, quiet_appended = timed_changes(decider, quiet)
    moving = [endpoints(f"s{i:05d}", {names[(i + 9) % nodes]: 1}) for i in range(1, 2 * changes, 2)]
    moving_s, moving_appended = timed_changes(decider, moving)
    reconfigure_s, reconfigured = timed_changes(
        decider, [bgp_advertisement("edge", version="2", communities=["65000:1"], localPref=200)]
    )
    gc.enable()
    return {
        "services": services,
        "nodes": nodes,
        "bgp_decisions_at_takeover": bgp_count(out),
        "takeover_s_without_bgp": round(without_bgp, 3),
        "takeover_s_with_bgp": round(with_bgp, 3),
        "no_op_endpoint_changes": len(quiet),
        "no_op_change_us": round(quiet_s * 1e6, 1),
        "no_op_changes_appended": quiet_appended,
        "local_moves": len(moving),
        "local_move_us": round(moving_s * 1e6, 1),
        "local_moves_appended": moving_appended,
        "reconfigure_all_s": round(reconfigure_s, 3),
        "reconfigure_appended": reconfigured,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 000 Services instead of 20 000")
    args = parser.parse_args()
    services, nodes, changes = (2000, 200, 500) if args.quick else (20000, 5000, 2000)
    figures = measure(services=services, nodes=nodes, changes=changes)
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
