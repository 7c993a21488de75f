"""ipam's BGP decisions, the pure cost: deciding every IP, endpoint changes, a configuration change.

With ``services`` Services in one BGP-advertised pool (half ``Cluster``, half ``Local``, each with serving
endpoints on two of ``nodes`` nodes), a decider takes over; then we time, without any I/O:
- taking over with and without a BGPAdvertisement (the difference is what deciding BGP for every IP costs),
  and the time spent in the BGP decisions alone, per IP: a first takeover (every decision new, built and
  appended), a standby's (the ledger read back from the stream as JSON: every IP compared, none appended),
  and a warm standby's (``Decider.warm`` beforehand, then changes the active never decided: only those IPs
  compared at takeover, each appended);
- endpoint changes that change no decision (Cluster endpoints moving, Local ones scaling on the same nodes):
  the time per change and how many events are appended (none expected);
- endpoint changes that move a Local Service's endpoints to another node (one decision each);
- a configuration change every decision sees (the advertisement's localPref): every IP re-decided (in all,
  and in the BGP decisions alone).

Times are the process's CPU time (the machine may be shared). ``nice -n 10 python bench/bgp_decisions.py
[--quick]``; the last line is one JSON object.
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
from schemas.metallb import ConfigObject
from services.ipam.decider import Decider, Outgoing
from services.ipam.ledger import Ledger
from services.ipam.world import World
from tests.bgp_world import bgp_advertisement, bgp_peer, endpoints, node, read_back
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


class BGPClock:
    """Seconds spent in one decider's BGP decisions (its ``settle`` and ``warm``: ``Decider.warm`` warms more)."""

    def __init__(self, decider: Decider) -> None:
        self.seconds = 0.0
        settle, warm = decider.bgp.settle, decider.bgp.warm

        def timed_settle(world: World, ledger: Ledger) -> list[tuple[str, Event]]:
            started = time.process_time()
            try:
                return settle(world, ledger)
            finally:
                self.seconds += time.process_time() - started

        def timed_warm(world: World, ledger: Ledger, objects: tuple[ConfigObject, ...]) -> None:
            started = time.process_time()
            try:
                warm(world, ledger, objects)
            finally:
                self.seconds += time.process_time() - started

        decider.bgp.settle = timed_settle  # type: ignore[method-assign]
        decider.bgp.warm = timed_warm  # type: ignore[method-assign]

    def lap(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def taken_over(events: list[Event]) -> float:
    decider = read_back((), events)
    started = time.process_time()
    decider.activate()
    return time.process_time() - started


def bgp_taken_over(
    events: list[Event], *, history: Sequence[Outgoing] = ()
) -> tuple[Decider, BGPClock, float, list[Outgoing]]:
    """Take over; the seconds spent in the BGP decisions alone (the decider's clock keeps going)."""
    decider = read_back(history, events)
    clock = BGPClock(decider)
    out = decider.activate()
    return decider, clock, clock.lap(), out


def warm_taken_over(events: list[Event], *, history: Sequence[Outgoing], unanswered: Sequence[Event]) -> dict[str, Any]:
    """A standby that warmed its BGP decisions (``Decider.warm``), then saw ``unanswered`` (changes the active
    never decided: it died), takes over: the BGP time per IP of warming, and of taking over."""
    decider = read_back(history, events)
    if not hasattr(decider, "warm"):
        return {"bgp_warm_us_per_ip": None, "bgp_warm_standby_takeover_us_per_ip": None}  # a commit without it
    clock = BGPClock(decider)
    decider.warm()
    warmed = clock.lap()
    for event in unanswered:
        decider.load_observation(event)
    out = decider.activate()
    ips = len(decider.ledger.bgp)
    return {
        "bgp_warm_us_per_ip": round(warmed / ips * 1e6, 1),
        "bgp_warm_standby_unanswered_changes": len(unanswered),
        "bgp_warm_standby_takeover_us_per_ip": round(clock.lap() / ips * 1e6, 2),
        "bgp_warm_standby_takeover_appended": bgp_count(out),
    }


def bgp_count(out: list[Outgoing]) -> int:
    return sum(isinstance(o.event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn) for o in out)


def timed_changes(decider: Decider, changes: Sequence[Event]) -> tuple[float, int]:
    """Mean seconds per observed change, and BGP events appended in all."""
    appended = 0
    started = time.process_time()
    for change in changes:
        appended += bgp_count(decider.observe(change))
    return (time.process_time() - started) / len(changes), appended


def measure(*, services: int, nodes: int, changes: int) -> dict[str, Any]:
    gc.disable()
    bgp_world = world(services, nodes, bgp=True)
    without_bgp = taken_over(world(services, nodes, bgp=False))
    with_bgp = taken_over(bgp_world)
    decider, clock, first_bgp_s, out = bgp_taken_over(bgp_world)
    ips = bgp_count(out)
    _, _, standby_bgp_s, standby_out = bgp_taken_over(bgp_world, history=out)
    names = [f"node-{i:04d}" for i in range(nodes)]
    quiet = [
        endpoints(f"s{i:05d}", {names[(i + 7) % nodes]: 3} if i % 2 == 0 else
                  {names[i % nodes]: 5, names[(i + 1) % nodes]: 2})
        for i in range(changes)
    ]  # fmt: skip
    quiet_s, quiet_appended = timed_changes(decider, quiet)
    moving = [endpoints(f"s{i:05d}", {names[(i + 9) % nodes]: 1}) for i in range(1, 2 * changes, 2)]
    warm = warm_taken_over(bgp_world, history=out, unanswered=moving[: max(1, services // 100)])
    moving_s, moving_appended = timed_changes(decider, moving)
    clock.lap()
    reconfigure_s, reconfigured = timed_changes(
        decider, [bgp_advertisement("edge", version="2", communities=["65000:1"], localPref=200)]
    )
    reconfigure_bgp_s = clock.lap()
    gc.enable()
    return {
        "services": services,
        "nodes": nodes,
        "bgp_decisions_at_takeover": ips,
        "takeover_s_without_bgp": round(without_bgp, 3),
        "takeover_s_with_bgp": round(with_bgp, 3),
        "bgp_first_takeover_us_per_ip": round(first_bgp_s / ips * 1e6, 1),
        "bgp_standby_takeover_us_per_ip": round(standby_bgp_s / ips * 1e6, 1),
        "bgp_standby_takeover_appended": bgp_count(standby_out),
        **warm,
        "no_op_endpoint_changes": len(quiet),
        "no_op_change_us": round(quiet_s * 1e6, 1),
        "no_op_changes_appended": quiet_appended,
        "local_moves": len(moving),
        "local_move_us": round(moving_s * 1e6, 1),
        "local_moves_appended": moving_appended,
        "reconfigure_all_s": round(reconfigure_s, 3),
        "reconfigure_appended": reconfigured,
        "reconfigure_bgp_us_per_ip": round(reconfigure_bgp_s / ips * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 000 Services instead of 20 000")
    args = parser.parse_args()
    services, nodes, changes = (2000, 200, 500) if args.quick else (20000, 5000, 2000)
    figures = measure(services=services, nodes=nodes, changes=changes)
    for key, value in figures.items():
        print(f"{key:>36}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
