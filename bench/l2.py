"""L2 benchmark in network namespaces (needs root, iproute2, keepalived): real announcers, a client prober.

    python bench/l2.py [--quick] [--trials N]      (--quick: under a minute, 8 kill -9 trials instead of 30)

In one lab (tests/network/l2_cluster/harness.py: three nodes, a client, NATS on a management network):
- ARP round trip from the client to a VIP answered by an announcer vs to an address the node's kernel owns;
- start-up: process spawned → first ARP answer for an IP already placed on its node;
- failover after kill -9 of the owning announcer, after a pulled cable (data and bus link down at the
  switch), and after its data link alone went down (the bus up: the announcer reports it cannot answer), seen
  by a client probing every 10 ms: takeover (event → first answer from the new owner) and gap (last answer
  before → first answer after), p50/p99;
- a rollout: every announcer stopped and started again in turn, 1.5 s apart: the longest time the VIP went
  unanswered (probed every 50 ms);
- the same kill -9 with keepalived (VRRP) in two node namespaces: the Debian defaults (advert_int 1) and
  a tuned VRRPv3 (advert_int 0.1), as the reference;
- the placement figures of bench/l2_placement.py (100 simulated announcers, 5 000 IPs: spread, re-placement;
  with --quick only its pure, in-process figures).
Start-up and round trips use placements published directly; failovers run the real `metalbus ipam` (it moves an
IP after 0.35 s without heartbeats from its node).
Prints figures; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench.l2_placement import measure as measure_placement
from bench.l2_placement import pure as pure_placement
from tests.netlab import skip_reason, wait_for
from tests.network.l2_cluster.harness import (
    AnnouncerProcess,
    Cluster,
    NeighborWatch,
    cluster,
    l2_world,
    lb_service,
    other_than,
)

VIP_RTT, VIP_START, VIP_FAIL, VIP_VRRP = "10.0.0.100", "10.0.0.150", "10.0.0.120", "10.0.0.200"
NODE1_ADDRESS = "10.0.0.11"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"p50_ms": round(percentile(ms, 0.5), 1), "p99_ms": round(percentile(ms, 0.99), 1),
            "max_ms": round(max(ms), 1), "trials": len(ms)}


def _rtt(net: Cluster, target: str, count: int) -> list[float]:
    result = net.lab.run(
        net.client, sys.executable, "-m", "tests.network.l2_cluster.prober", "--ip", target, "--rtt", str(count),
        timeout=120,
    )  # fmt: skip
    rtts: list[float] = json.loads(result.stdout.splitlines()[-1])["rtt_ms"]
    return rtts


def _arping_rtt(net: Cluster, target: str, count: int) -> list[float]:
    """One `arping -c 1` per sample (its interval takes whole seconds only); arping times each reply itself."""
    rtts: list[float] = []
    for _ in range(count):
        result = net.lab.run(net.client, "arping", "-b", "-c", "1", "-w", "1", "-I", "eth0", target, check=False)
        rtts += [float(m[1]) for m in re.finditer(r"reply from \S+ \[[0-9A-Fa-f:]{17}\]\s+([0-9.]+)ms", result.stdout)]
    return rtts


def arp_round_trip(net: Cluster, rounds: int, per_round: int) -> dict[str, float]:
    """Two probes: a raw-socket ping-pong in Python (little fixed cost, so the ratio is the harshest) and
    `arping` (what the lab notes measured with)."""
    net.place(VIP_RTT, "node1", "eth0")
    wait_for(lambda: _rtt(net, VIP_RTT, 1), timeout=5, message="the VIP to answer")
    announcer: list[float] = []
    kernel: list[float] = []
    announcer_arping: list[float] = []
    kernel_arping: list[float] = []
    for _ in range(rounds):  # interleaved, so both see the same machine load
        announcer += _rtt(net, VIP_RTT, per_round)
        kernel += _rtt(net, NODE1_ADDRESS, per_round)
        announcer_arping += _arping_rtt(net, VIP_RTT, per_round // 4)
        kernel_arping += _arping_rtt(net, NODE1_ADDRESS, per_round // 4)
    arping_ratio = statistics.median(announcer_arping) / statistics.median(kernel_arping)
    print(f"ARP round trip (arping): announcer {statistics.median(announcer_arping):.3f} ms vs kernel "
          f"{statistics.median(kernel_arping):.3f} ms (p50, ratio {arping_ratio:.2f}, target <= 1.5)")
    figures = {
        "arping_announcer_p50_ms": round(statistics.median(announcer_arping), 3),
        "arping_kernel_p50_ms": round(statistics.median(kernel_arping), 3),
        "arping_ratio_p50": round(arping_ratio, 2),
        "announcer_p50_ms": round(statistics.median(announcer), 3),
        "kernel_p50_ms": round(statistics.median(kernel), 3),
        "announcer_p99_ms": round(percentile(announcer, 0.99), 3),
        "kernel_p99_ms": round(percentile(kernel, 0.99), 3),
        "ratio_p50": round(statistics.median(announcer) / statistics.median(kernel), 2),
        "samples": len(announcer),
    }
    print(f"ARP round trip (raw socket): announcer {figures['announcer_p50_ms']} ms vs kernel "
          f"{figures['kernel_p50_ms']} ms (p50, ratio {figures['ratio_p50']}, target <= 1.5)")
    return figures


def _logged_at(announcer: AnnouncerProcess, pattern: str) -> float:
    """Wall-clock time of the first log line matching `pattern` (the log stamps milliseconds, UTC)."""
    line = next(line for line in announcer.log if re.search(pattern, line))
    match = re.search(r"time=(\S+)", line)
    assert match is not None, line
    stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return stamp.timestamp()


def startup(net: Cluster, trials: int) -> dict[str, object]:
    """Spawn → first answer, split into interpreter and imports (spawn → the runtime's first log line) and
    the service's own start (first log line → responder answering: connect, streams, placements)."""
    net.terminate("node3")
    net.place(VIP_START, "node3", "eth0")
    watch = NeighborWatch(net.lab, net.client, VIP_START)
    took: list[float] = []
    imports: list[float] = []
    service: list[float] = []
    cpu: list[float] = []
    try:
        for _ in range(trials):
            wall, started = time.time(), time.monotonic()
            announcer = net.start("node3", wait=False)
            first = watch.first_after(started, timeout=15)
            cpu.append(_cpu_seconds(announcer.proc.pid))
            took.append(first - started)
            announcer.wait_started()
            imports.append(_logged_at(announcer, "component=announcer .*msg=starting ") - wall)
            service.append((first - started) - imports[-1])
            net.terminate("node3")
    finally:
        watch.stop()
    net.start("node3")
    total, before, after, used = summary(took), summary(imports), summary(service), summary(cpu)
    print(f"start-up to first answer: p50 {total['p50_ms']} ms, max {total['max_ms']} ms (target <= 1000); "
          f"of which interpreter and imports p50 {before['p50_ms']} ms, service start p50 {after['p50_ms']} ms; "
          f"CPU time used by then p50 {used['p50_ms']} ms (the machine's load stretches the rest)")
    return {**total, "imports": before, "service": after, "cpu": used}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (clock ticks of 10 ms)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _failovers(net: Cluster, trials: int, *, fault: str) -> dict[str, object]:
    """``fault``: "kill" (kill -9 of the owner's announcer), "cable" (its data and bus links cut at the switch) or
    "data_link" (its data link alone: the bus stays up, the announcer reports it cannot answer)."""
    watch = NeighborWatch(net.lab, net.client, VIP_FAIL)
    takeovers: list[float] = []
    gaps: list[float] = []
    try:
        for _ in range(trials):
            owner = net.wait_owner(VIP_FAIL)
            old_mac = net.mac(owner)
            watch.first_after(time.monotonic(), mac=old_mac)  # the owner answers now
            announcer = net.nodes[owner].announcer
            assert announcer is not None
            mark = announcer.mark()
            event = time.monotonic()
            if fault == "kill":
                net.kill(owner)
            else:
                net.set_data_link(owner, up=False)
                if fault == "cable":
                    net.set_mgmt_link(owner, up=False)
            first = watch.first_after(event, not_mac=old_mac)
            before = watch.last_before(first) or event
            takeovers.append(first - event)
            gaps.append(first - before)
            print(f"  {fault}: {owner}'s IP answered by another node after {(first - event) * 1000:.0f} ms", flush=True)
            if fault == "kill":
                net.start(owner)
            else:
                net.set_data_link(owner, up=True)
                if fault == "cable":
                    net.set_mgmt_link(owner, up=True)
                    announcer.wait_logged('msg="placements read"', since=mark, timeout=15)
                else:
                    try:
                        announcer.wait_logged(r'msg="data plane reported" .* interfaces=eth0', since=mark, timeout=15)
                    except TimeoutError:
                        print(announcer.tail(40))
                        raise
            try:
                net.wait_owner(VIP_FAIL, other_than(owner))
            except TimeoutError:
                Path("/tmp/ipam-debug.log").write_text("".join(net.ipam.log if net.ipam else []))
                for name, node in net.nodes.items():
                    if node.announcer is not None:
                        Path(f"/tmp/ann-{name}.log").write_text("".join(node.announcer.log))
                raise
    finally:
        watch.stop()
    return {"takeover": summary(takeovers), "gap": summary(gaps)}


def rollout(net: Cluster, rounds: int, *, apart: float = 1.5) -> dict[str, object]:
    """A DaemonSet rollout: every announcer stopped and started again in turn, ``apart`` seconds apart, the VIP
    probed every 50 ms; the longest time it went unanswered, per round."""
    gaps: list[float] = []
    for _ in range(rounds):
        watch = NeighborWatch(net.lab, net.client, VIP_FAIL, interval=0.05)
        try:
            watch.first_after(time.monotonic())
            started = time.monotonic()
            for index, name in enumerate(net.nodes):
                time.sleep(max(0.0, started + apart * index - time.monotonic()))  # the rollout's pace
                net.terminate(name)
                net.start(name, wait=False)
            for name in net.nodes:
                announcer = net.nodes[name].announcer
                assert announcer is not None
                announcer.wait_started()
            ended = watch.first_after(time.monotonic())
        finally:
            watch.stop()
        gaps.append(watch.longest_gap_between(started, ended))
    return {"longest_gap": summary(gaps), "apart_s": apart}


KEEPALIVED = """global_defs {{
    router_id {router}
    vrrp_garp_master_delay 5
    vrrp_garp_master_repeat 2
}}
vrrp_instance bench {{
    state {state}
    interface eth0
    virtual_router_id 77
    priority {priority}
    {version}
    advert_int {advert}
    virtual_ipaddress {{
        {vip}/24 dev eth0
    }}
}}
"""


@contextmanager
def keepalived_pair(
    net: Cluster, advert: float, directory: Path
) -> Iterator[tuple[Callable[[str], None], dict[str, subprocess.Popen[str]]]]:
    """keepalived in node2 (master, priority 150) and node3 (backup); yields a starter per node."""
    version = "version 3" if advert < 1 else ""

    def start(name: str) -> None:
        node = net.nodes[name]
        conf = directory / f"{name}.conf"
        state, priority = ("MASTER", 150) if name == "node2" else ("BACKUP", 100)
        conf.write_text(KEEPALIVED.format(router=name, state=state, priority=priority, version=version,
                                          advert=advert, vip=VIP_VRRP))
        pid_files = [directory / f"{name}.pid", directory / f"{name}.vrrp.pid"]
        for stale in pid_files:  # a killed daemon's files name pids that may linger as zombies
            stale.unlink(missing_ok=True)
        running[name] = net.lab.popen(
            node.ns, "keepalived", "-n", "-P", "-l", "-f", str(conf), "-p", str(pid_files[0]), "-r", str(pid_files[1]),
            "-i", name, stdin=None,
        )  # fmt: skip

    running: dict[str, subprocess.Popen[str]] = {}
    for name in ("node2", "node3"):
        start(name)
    try:
        yield start, running
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """kill -9 keepalived and its VRRP child (the parent would restart a lone dead child)."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    for pid in [proc.pid, *map(int, children)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(5)


def keepalived(net: Cluster, trials: int, advert: float) -> dict[str, object]:
    master_mac, backup_mac = net.mac("node2"), net.mac("node3")
    takeovers: list[float] = []
    gaps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mb-vrrp-") as raw, keepalived_pair(net, advert, Path(raw)) as pair:
        start, running = pair
        watch = NeighborWatch(net.lab, net.client, VIP_VRRP)
        try:
            for _ in range(trials):
                try:
                    watch.first_after(time.monotonic(), mac=master_mac, timeout=30)
                except TimeoutError:
                    _keepalived_diagnostics(net, running)
                    raise
                event = time.monotonic()
                _kill_tree(running["node2"])
                # kill -9 leaves the VIP on the dead master's interface: take it off as a dead node would
                net.lab.run(net.nodes["node2"].ns, "ip", "addr", "del", f"{VIP_VRRP}/24", "dev", "eth0", check=False)
                first = watch.first_after(event, mac=backup_mac, timeout=30)
                takeovers.append(first - event)
                gaps.append(first - (watch.last_before(first) or event))
                start("node2")  # preempts back: the next trial kills the master again
        finally:
            watch.stop()
    return {"advert_int_s": advert, "takeover": summary(takeovers), "gap": summary(gaps)}


def _keepalived_diagnostics(net: Cluster, running: dict[str, subprocess.Popen[str]]) -> None:
    for name, proc in running.items():
        print(f"{name}: keepalived {'exited ' + str(proc.returncode) if proc.poll() is not None else 'running'}; "
              + net.lab.run(net.nodes[name].ns, "ip", "-br", "addr", "show", "eth0").stdout.strip(), file=sys.stderr)
        if proc.poll() is None:
            proc.terminate()
        assert proc.stderr is not None
        print(proc.stderr.read()[-1500:], file=sys.stderr)


def _print_failover(label: str, figures: dict[str, object], target: str) -> None:
    takeover, gap = figures["takeover"], figures["gap"]
    assert isinstance(takeover, dict) and isinstance(gap, dict)
    print(f"{label}: gap p50 {gap['p50_ms']} ms p99 {gap['p99_ms']} ms; takeover p50 {takeover['p50_ms']} ms "
          f"p99 {takeover['p99_ms']} ms over {gap['trials']} trials ({target})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer trials, under a minute")
    parser.add_argument("--no-placement", action="store_true", help="skip bench/l2_placement.py's figures")
    parser.add_argument("--trials", type=int, default=None, help="kill -9 failover trials (default 30, quick 8)")
    args = parser.parse_args()
    reason = skip_reason()
    if reason is None and shutil.which("keepalived") is None:
        reason = "keepalived is not installed (Debian: keepalived)"
    if reason is not None:
        print(json.dumps({"skipped": reason}))
        return
    kill_trials = args.trials or (8 if args.quick else 30)
    small = 3 if args.quick else 10
    figures: dict[str, object] = {"quick": args.quick}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metalbus-bench-l2-") as directory, \
            cluster(Path(directory), "mbbench") as net:
        net.start_all()
        figures["arp_rtt"] = arp_round_trip(net, rounds=2 if args.quick else 5, per_round=100)
        figures["startup"] = startup(net, small)
        # From here the real ipam places: a Service asking for VIP_FAIL, serving on every node.
        net.observe(*l2_world(lb_service("fail", VIP_FAIL)))
        net.start_ipam()
        killed = figures["failover_kill9"] = _failovers(net, kill_trials, fault="kill")
        _print_failover("failover after kill -9", killed, "target p99 <= 1000 ms")
        pulled = figures["failover_cut_link"] = _failovers(net, small, fault="cable")
        _print_failover("failover after a pulled cable", pulled, "target <= 2000 ms")
        data_link = figures["failover_data_link_bus_up"] = _failovers(net, small, fault="data_link")
        _print_failover("failover after the owner's data link went down, its bus up", data_link, "target <= 1000 ms")
        rolled = figures["rollout"] = rollout(net, 2 if args.quick else 5)
        gap = rolled["longest_gap"]
        assert isinstance(gap, dict)
        print(f"rollout (every announcer restarted in turn, 1.5 s apart): longest unanswered p50 {gap['p50_ms']} ms "
              f"max {gap['max_ms']} ms over {gap['trials']} rollouts (target <= 500 ms)")
        for advert in (0.1,) if args.quick else (1.0, 0.1):
            key = f"keepalived_kill9_advert_{advert}"
            reference = figures[key] = keepalived(net, small, advert)
            _print_failover(f"keepalived kill -9 (advert_int {advert})", reference, "reference")
    if not args.no_placement:
        # bench/l2_placement.py, 100 simulated announcers and 5 000 IPs: through NATS in a full run; in a quick
        # one only its pure figures (the NATS part alone takes most of a minute)
        raw: dict[str, object]
        try:
            if args.quick:
                raw = {"announcers": 100, "ips": 5000, **pure_placement(100, 5000)}
            else:
                raw = {**measure_placement(announcers=100, ips=5000)}
        except Exception as error:  # another benchmark's failure must not lose the figures above
            raw = {"error": repr(error)}
        placement = figures["placement"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in raw.items()}
        print("placement (100 announcers, 5 000 IPs): " + ", ".join(f"{k} {v}" for k, v in placement.items()))
    figures["elapsed_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
