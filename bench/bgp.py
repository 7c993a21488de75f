"""BGP mode against BIRD 2 in network namespaces (root), side by side with ExaBGP announcing the same set.

    python bench/bgp.py [--prefixes 10000] [--rounds 3] [--quick]

Measured, each from a real `metalbus announcer` (the world and the allocations on the bus as the watcher and
the ipam publish them) and from ExaBGP 5 (installed with pip into a temporary directory, never into the
project) announcing the same prefixes as static routes:
- announce: on an established session, every prefix made to be announced at once (metalbus: the ipam's
  allocations published on the bus; ExaBGP: the same routes written to its text API) → all of them in BIRD's
  table (target ≤ 5 s, metalbus/ExaBGP ratio ≤ 1);
- cold start: process start → all of them at BIRD (ExaBGP: as static routes in its configuration; full runs);
- withdraw: SIGTERM to the announcer → no route of its session left at BIRD (target ≤ 0.5 s);
- bfd: the node's link cut (BFD 300 ms x 3 on both sides) → its routes gone at BIRD (target ≤ 1.5 s);
- bfd hops: the same BFDProfile beside a single hop session and beside an ebgpMultiHop session behind a
  router, both to one FRR 8, each cut where FRR cannot see it → the prefix gone at FRR, and beside them a
  single hop session with echo mode (50 ms) (bench/bgp_bfd_hops.py);
- unnumbered: --prefixes IPv4 prefixes handed at once to an established session → all in FRR 8's table, over
  a numbered session and over an unnumbered one (RFC 8950) on the same link (bench/bgp_unnumbered.py);
- flood: BIRD exports --flood routes to the announcer at once (then withdraws them): time until the announcer
  counted them all, and BFD's state at BIRD sampled meanwhile (target: never down); beside it, the loop time
  the session core spends on that many received routes, counted (as the announcer does) and fully decoded.
Prints a table, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.bgp_bfd_hops import run_bfd_hops
from bench.bgp_unnumbered import unnumbered_vs_numbered
from schemas.events import Event
from services.announcer.bgp.capabilities import IPV4_UNICAST
from services.announcer.bgp.session import ReceivedRoutes
from services.common.bus import Bus
from services.common.subjects import ipam_allocation_subject, observed_subject
from tests.bgp_world import allocated, bgp_advertisement, bgp_peer, config_object, endpoints, node, released, service
from tests.builders import pool
from tests.netlab import skip_reason, wait_for
from tests.network.bgp.routers import Frr
from tests.network.bgp_agent.harness import (
    FLOOD_PROTOCOL,
    NODES,
    ROUTER4,
    BirdNeighbor,
    Fabric,
    Process,
    fabric,
    start_bird,
)
from tests.unit.announcer.bgp.test_session import A_CONFIG, Pair
from tests.unit.announcer.bgp.test_update_count import announcements, full_table

ASN = 64512
BASE = ipaddress.IPv4Address("10.100.0.0")


def prefixes(count: int) -> list[str]:
    return [str(BASE + index) for index in range(count)]


def route_count(bird: BirdNeighbor) -> int:
    out = bird.birdc(f"show route count protocol {bird.only}", check=False).stdout
    for line in out.splitlines():
        if line.startswith("Total:"):
            return int(line.split()[1])
    return 0


def wait_count(bird: BirdNeighbor, predicate: object, *, timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll BIRD until the protocol's route count satisfies ``predicate``; returns when (monotonic). Each poll
    runs birdc in the router's namespace: polling faster only where the figure is sub-second."""
    assert callable(predicate)
    wait_for(lambda: predicate(route_count(bird)), timeout=timeout, message=what, interval=interval)
    return time.monotonic()


def publish(fab: Fabric, bus: Bus, items: list[tuple[str, Event, str | None]]) -> None:
    """With ``bus``'s credential: the watcher's for observed state, the ipam's for allocations."""
    for first in range(0, len(items), 5000):
        fab.bus.call(bus.publish_many(items[first : first + 5000]), timeout=60)


def publish_world(fab: Fabric, ips: list[str]) -> None:
    """Configuration, nodes, and one Service with an endpoint per IP; no allocation yet."""
    head: list[Event] = [
        pool("bench", "10.100.0.0/16"),
        config_object("BFDProfile", "fast", {"receiveInterval": 300, "transmitInterval": 300, "detectMultiplier": 3}),
        bgp_peer("router", ROUTER4, my_asn=ASN, peer_asn=ASN, holdTime="9s", bfdProfile="fast", connectTime="2s"),
        bgp_advertisement("ads", communities=["65000:1"]),
        *(node(name, v4, v6) for name, (v4, v6) in NODES.items()),
    ]
    items: list[tuple[str, Event, str | None]] = [(observed_subject(e), e, None) for e in head]
    for index in range(len(ips)):
        name = f"svc-{index}"
        items.append((observed_subject(s := service(name)), s, None))
        items.append((observed_subject(e := endpoints(name, {"node2": 1})), e, None))
    publish(fab, fab.as_watcher, items)


def allocations(ips: list[str], *, release: bool = False) -> list[tuple[str, Event, str | None]]:
    def event(index: int, ip: str) -> Event:
        return released(f"svc-{index}", ip) if release else allocated(f"svc-{index}", ip, pool="bench")

    return [(ipam_allocation_subject("default", f"svc-{i}"), event(i, ip), None) for i, ip in enumerate(ips)]


# --- ExaBGP ---------------------------------------------------------------------------------------------


def exabgp_path() -> Path | None:
    """ExaBGP 5 installed with pip into a directory of its own under the system's temporary directory (kept
    between runs, never in the project's environment), or None when pip cannot get it."""
    target = Path(tempfile.gettempdir()) / "metalbus-bench-exabgp"
    if (target / "exabgp" / "__init__.py").exists():
        return target
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target", str(target),
         "exabgp>=5,<6"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    return target if result.returncode == 0 else None


FEEDER = """import ipaddress, os, sys, time
trigger, count = sys.argv[1], int(sys.argv[2])
while not os.path.exists(trigger):
    time.sleep(0.002)
base = ipaddress.IPv4Address("10.100.0.0")
sys.stdout.write("".join(f"announce route {base + i}/32 next-hop self community [65000:1]\\n" for i in range(count)))
sys.stdout.flush()
while True:
    time.sleep(60)
"""


def exabgp_config(ips: list[str], local: str, *, feeder: str | None) -> str:
    routes = "\n".join(f"        route {ip}/32 next-hop self community [65000:1];" for ip in ips)
    process = f"process feeder {{\n    run {feeder};\n    encoder text;\n}}\n" if feeder else ""
    body = "    api {\n        processes [ feeder ];\n    }\n" if feeder else f"    static {{\n{routes}\n    }}\n"
    return f"""{process}neighbor {ROUTER4} {{
    router-id {local};
    local-address {local};
    local-as {ASN};
    peer-as {ASN};
    hold-time 9;
    family {{
        ipv4 unicast;
    }}
{body}}}
"""


def start_exabgp(fab: Fabric, config: str, package: Path) -> subprocess.Popen[str]:
    conf = fab.directory / "exabgp.conf"
    conf.write_text(config)
    env_vars = {"exabgp_daemon_user": "root", "exabgp_daemon_drop": "false", "exabgp_cli_enable": "false",
                "exabgp_api_ack": "false", "exabgp_log_level": "WARNING", "PYTHONPATH": str(package)}  # fmt: skip
    return fab.lab.popen(fab.nodes["node2"].ns, "env", *(f"{k}={v}" for k, v in env_vars.items()), sys.executable,
                         "-m", "exabgp", "server", str(conf), stdin=subprocess.DEVNULL)  # fmt: skip


def stop(bird: BirdNeighbor, proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(15)
    wait_count(bird, lambda n: n == 0, timeout=30, what="routes gone")


def run_exabgp(fab: Fabric, bird: BirdNeighbor, ips: list[str], package: Path, *, cold: bool) -> dict[str, float]:
    """On an established session, the API feeder announces every prefix; with ``cold`` also the same set as
    static routes from process start."""
    local = NODES["node2"][0]
    trigger = fab.directory / "exabgp.go"
    trigger.unlink(missing_ok=True)
    script = fab.directory / "feeder.py"
    script.write_text(FEEDER)
    proc = start_exabgp(fab, exabgp_config(ips, local, feeder=f"{sys.executable} {script} {trigger} {len(ips)}"),
                        package)  # fmt: skip
    figures: dict[str, float] = {}
    try:
        wait_for(bird.established, timeout=60, message="ExaBGP's session")
        started = time.monotonic()
        trigger.touch()
        figures["announce_s"] = wait_count(bird, lambda n: n >= len(ips), timeout=120, what="ExaBGP's routes") - started
    finally:
        stop(bird, proc)
    if cold:
        started = time.monotonic()
        proc = start_exabgp(fab, exabgp_config(ips, local, feeder=None), package)
        try:
            done = wait_count(bird, lambda n: n >= len(ips), timeout=120, what="ExaBGP's static routes")
            figures["cold_start_s"] = done - started
        finally:
            stop(bird, proc)
    return figures


# --- a route flood from the router ------------------------------------------------------------------------

RECEIVED = f'metalbus_bgp_received_prefixes_total{{peer="{ROUTER4}"}}'


def received(fab: Fabric) -> float:
    """node1's count of received prefixes (a scrape cut short is read again)."""
    for _ in range(5):
        try:
            return fab.metrics("node1").get(RECEIVED, 0.0)
        except http.client.IncompleteRead:
            continue
    raise RuntimeError("node1's /metrics kept arriving cut short")


def bfd_up(bird: BirdNeighbor) -> bool:
    return any(" Up " in f" {line} " for line in bird.birdc("show bfd sessions", check=False).stdout.splitlines())


def absorb(fab: Fabric, bird: BirdNeighbor, *, target: float, timeout: float = 120) -> tuple[float, int, int]:
    """Wait until node1 counted ``target`` received prefixes, sampling BFD at BIRD; (seconds, samples with
    BFD down, samples)."""
    started, down, samples = time.monotonic(), 0, 0
    while received(fab) < target:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{target:.0f} received prefixes not counted in {timeout} s")
        samples += 1
        down += not bfd_up(bird)
    return time.monotonic() - started, down, samples


def run_flood(fab: Fabric, bird: BirdNeighbor, routes: int) -> dict[str, float]:
    """BIRD exports ``routes`` routes to the established announcer on node1, then withdraws them."""
    before = received(fab)
    bird.birdc(f"enable {FLOOD_PROTOCOL}")
    absorb_s, down, samples = absorb(fab, bird, target=before + routes)
    bird.birdc(f"disable {FLOOD_PROTOCOL}")
    withdraw_s, down_too, more = absorb(fab, bird, target=before + 2 * routes)
    return {"flood_absorb_s": absorb_s, "flood_withdraw_s": withdraw_s,
            "flood_bfd_down_samples": down + down_too, "flood_bfd_samples": samples + more}  # fmt: skip


def core_absorb(routes: int) -> dict[str, float]:
    """Loop time of one session core taking ``routes`` received /24s in 16 KiB reads, counted and decoded."""
    stream = b"".join(announcements(full_table(routes), IPV4_UNICAST))
    figures: dict[str, float] = {}
    for mode in ReceivedRoutes:
        pair = Pair.established(a=dataclasses.replace(A_CONFIG, received_routes=mode))
        started = time.perf_counter()
        for first in range(0, len(stream), 16 * 1024):
            pair.a.receive(stream[first : first + 16 * 1024], pair.now)
            while pair.a.next_event() is not None:
                pass
        figures[f"core_{mode.value}_s"] = time.perf_counter() - started
    return figures


# --- metalbus -------------------------------------------------------------------------------------------


def bfd_flaps(announcer: Process) -> int:
    """BFD sessions the announcer saw leave Up so far."""
    return sum('msg="bfd changed"' in line and "old=UP" in line for line in announcer.log)


def run_metalbus(fab: Fabric, bird: BirdNeighbor, ips: list[str], *, flood: int = 0) -> dict[str, float]:
    count = len(ips)
    announcer = fab.start_announcer("node1")
    wait_for(bird.established, timeout=30, message="metalbus's session")
    started = time.monotonic()
    publish(fab, fab.as_ipam, allocations(ips))
    done = wait_count(bird, lambda n: n >= count, timeout=120, what="metalbus's routes at BIRD")
    figures = {"announce_s": done - started}
    wait_for(lambda: "Up" in bird.birdc("show bfd sessions", check=False).stdout, timeout=20, message="BFD up")
    # cut a quiet node: its 10 000 reports are out (the burst's work shares the loop with BFD's timers)
    announcer.wait_logged(f'msg="bgp reported" .*announcing={count}', timeout=60)
    time.sleep(1.0)
    wait_count(bird, lambda n: n >= count, timeout=60, what="every route still there before the cut")
    flaps = bfd_flaps(announcer)
    figures["bfd_flaps_before_cut"] = flaps  # BFD going down with the link up: the loop starved of CPU
    if flood:
        figures |= run_flood(fab, bird, flood)
        figures["bfd_flaps_in_flood"] = bfd_flaps(announcer) - flaps
    cut = time.monotonic()
    fab.set_link("node1", up=False)
    gone = wait_count(bird, lambda n: n == 0, timeout=30, what="gone after the cut", interval=0.01)
    figures["bfd_cut_s"] = gone - cut
    fab.set_link("node1", up=True)
    wait_count(bird, lambda n: n >= count, timeout=60, what="routes back after the link")
    halt = time.monotonic()
    announcer.proc.terminate()
    gone = wait_count(bird, lambda n: n == 0, timeout=30, what="gone after SIGTERM", interval=0.01)
    figures["withdraw_s"] = gone - halt
    announcer.proc.wait(15)
    started = time.monotonic()
    announcer = fab.start_announcer("node1", wait=False)
    figures["cold_start_s"] = (
        wait_count(bird, lambda n: n >= count, timeout=120, what="routes after a restart") - started
    )
    stop(bird, announcer.proc)
    publish(fab, fab.as_ipam, allocations(ips, release=True))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flood", type=int, default=200_000, help="routes BIRD sends the announcer (0: none)")
    parser.add_argument("--quick", action="store_true", help="one round (under a minute)")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    reason = skip_reason() or (None if shutil.which("bird") else "bird not installed (Debian package bird2)")
    if reason is not None:
        print(f"skipped: {reason}")
        print(json.dumps({"benchmark": "bgp", "skipped": reason}))
        return
    ips = prefixes(args.prefixes)
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="mbbgp-bench-") as tmp:
        package = exabgp_path()
        with fabric(Path(tmp), prefix="mbbgb") as fab:
            bird = start_bird(fab, router_as=ASN, node_as=ASN, bfd_ms=300, flood=args.flood)
            publish_world(fab, ips)
            for _ in range(rounds):
                if package is not None:
                    theirs.append(run_exabgp(fab, bird["node2"], ips, package, cold=not args.quick))
                ours.append(run_metalbus(fab, bird["node1"], ips, flood=args.flood))
    mine = {key: statistics.median(r[key] for r in ours) for key in ours[0]}
    hops = run_bfd_hops(rounds) if Frr.skip_reason() is None else {}
    links = unnumbered_vs_numbered(len(ips), rounds) if Frr.skip_reason() is None else {}
    core = core_absorb(args.flood) if args.flood else {}
    exa = {key: statistics.median(r[key] for r in theirs) for key in theirs[0]} if theirs else {}
    ratio = mine["announce_s"] / exa["announce_s"] if exa else None
    nan = float("nan")
    rows = [
        (f"announce {len(ips)} on a session, s", mine["announce_s"], exa.get("announce_s", nan), "≤ 5"),
        ("ratio metalbus / ExaBGP", ratio or nan, nan, "≤ 1"),
        ("cold start → all at BIRD, s", mine["cold_start_s"], exa.get("cold_start_s", nan), ""),
        ("withdraw after SIGTERM, s", mine["withdraw_s"], nan, "≤ 0.5"),
        ("BFD 300 ms x 3: cut → gone, s", mine["bfd_cut_s"], nan, "≤ 1.5"),
    ]
    if hops:
        rows += [
            ("BFD at FRR, single hop: cut → gone", hops["bfd_single_hop_cut_s"], nan, "≤ 1.5"),
            ("BFD at FRR, multihop: cut → gone", hops["bfd_multihop_cut_s"], nan, "≤ 1.5"),
            ("BFD at FRR, echo 50 ms: cut → gone", hops["bfd_echo_cut_s"], nan, "≤ 0.5"),
        ]
    if links:
        rows += [
            (f"FRR: {len(ips)} numbered → all, s", links["numbered_converge_s"], nan, ""),
            (f"FRR: {len(ips)} unnumbered → all, s", links["unnumbered_converge_s"], nan, ""),
        ]
    if args.flood:
        rows += [
            (f"flood: {args.flood} routes counted, s", mine["flood_absorb_s"], nan, ""),
            (f"flood: {args.flood} withdrawn, s", mine["flood_withdraw_s"], nan, ""),
            ("flood: BFD down samples at BIRD", mine["flood_bfd_down_samples"], nan, "0"),
            ("flood: BFD flaps at the announcer", mine["bfd_flaps_in_flood"], nan, "0"),
            ("core: loop time, counted, s", core["core_counted_s"], nan, ""),
            ("core: loop time, decoded, s", core["core_decoded_s"], nan, ""),
        ]
    print(f"{'median of ' + str(rounds) + ' round(s)':<34}{'metalbus':>10}{'ExaBGP':>10}{'target':>10}")
    for label, value, other, target in rows:
        print(f"{label:<34}{value:>10.3f}{other:>10.3f}{target:>10}")
    print("rounds, metalbus:", [{k: round(v, 3) for k, v in r.items()} for r in ours])
    print("rounds, ExaBGP:  ", [{k: round(v, 3) for k, v in r.items()} for r in theirs])
    print(json.dumps({
        "benchmark": "bgp", "prefixes": len(ips), "rounds": rounds, "peer": "bird2",
        **{k: round(v, 3) for k, v in mine.items()}, **{k: round(v, 3) for k, v in core.items()},
        **{k: round(v, 3) for k, v in hops.items()}, **{k: round(v, 3) for k, v in links.items()},
        **{f"exabgp_{k}": round(v, 3) for k, v in exa.items()},
        "ratio_to_exabgp": round(ratio, 3) if ratio else None, "exabgp": "installed" if theirs else "unavailable",
    }))  # fmt: skip


if __name__ == "__main__":
    if os.geteuid() != 0:
        print(json.dumps({"benchmark": "bgp", "skipped": "needs root (network namespaces)"}))
        sys.exit(0)
    main()
