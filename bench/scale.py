"""The whole system at cluster scale, side by side with an earlier commit (issue #13's figures).

    python bench/scale.py --quick          # 100 nodes, 600 Services: both trees in about 2 minutes
    nice -n 10 python bench/scale.py       # 5 000 nodes, 50 000 Services, 500 endpoint changes a second
    python bench/scale.py --baseline REF --nodes N --services S --rate R
    python bench/scale.py --no-baseline    # this tree alone
    python bench/scale.py --ref HEAD       # a commit (in a temporary worktree), not the working tree

For each tree — REF (default efc31b2, checked out with ``git worktree add`` into a temporary directory and
removed afterwards), then this one — ``bench/scale_run.py`` runs, one tree after the other (never both at
once: 2 cores), with this venv:

- nats-server started by that tree's ``EmbeddedNats`` (plus a monitoring port, for /varz message counts);
- the Kubernetes API stand-in (``bench/cluster_api.py``): the Nodes, the Services (a third Local, a quarter
  dual-stack), their EndpointSlices, two pools with an L2Advertisement, a BGPAdvertisement and a BGPPeer;
- that tree's real services: the watcher (``--kubeconfig``), two ipam replicas, three announcers, each in a
  network namespace of its own (``bench/scale_procs.py``);
- the other nodes simulated by ``bench/node_sim.py`` in that tree's liveness protocol.

Then: cold start (the watcher starts; every Service's status written), a third announcer started on the full
world, a steady state without churn, endpoint churn, L2 failover after kill -9 and after SIGSTOP of a real
announcer owning IPs, and the standby ipam's takeover after kill -9 of the active one.
Prints a table (baseline, this tree, ratio this/baseline); the last line is one JSON object. Progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_BASELINE = "efc31b2"
#: ``--quick``: small enough that both trees run in under 2 minutes on 2 shared cores.
QUICK_NODES, QUICK_SERVICES = 100, 600
#: Above this many nodes the simulated nodes share connections, ``SHARED_NODES_PER_CONNECTION`` to one (each
#: heartbeat naming the one it is sent on: ipam's work per heartbeat is the same): 5 000 connections, each
#: pinged by nats-server every 250 ms, cost the server and the simulator more than the 2 cores.
OWN_CONNECTION_NODES, SHARED_NODES_PER_CONNECTION = 1000, 50

#: (figure, what it is, unit, target at full size)
ROWS: list[tuple[str, str, str, str]] = [
    ("cold_start_s", "cold start → every status written", "s", "≤ 60"),
    ("cold_start_half_s", "cold start → half the statuses written", "s", ""),
    ("statuses_in_a_minute", "statuses written in the cold start's first minute", "", "all"),
    ("watcher_cpu_ms_per_service", "watcher CPU per Service (cold start)", "ms", "≤ 1"),
    ("ipam_liveness_cpu_cores", "active ipam CPU, steady, no churn", "cores", "≤ 0.10"),
    ("ipam_standby_cpu_cores", "standby ipam CPU, steady, no churn", "cores", "≤ 0.10"),
    ("ipam_live_nodes", "nodes the active ipam believes live", "", "all"),
    ("announcer_idle_rss_mb", "announcer RSS, idle", "MB", "≤ 80"),
    ("announcer_idle_cpu_cores", "announcer CPU, idle", "cores", ""),
    ("announcer_churn_rss_mb", "announcer RSS, under churn", "MB", "≤ 80"),
    ("announcer_churn_cpu_cores", "announcer CPU, under churn", "cores", "≤ 0.05"),
    ("endpoint_changes_per_s", "endpoint changes a second (achieved)", "/s", ""),
    ("announcer_ready_s", "announcer ready after start (full world, settled)", "s", "≤ 5"),
    ("nats_msgs_per_endpoint_change", "NATS messages delivered per endpoint change¹", "", ""),
    ("nats_idle_msgs_per_s", "NATS messages delivered a second, idle (all)", "/s", ""),
    ("nats_server_idle_cpu_cores", "nats-server CPU, steady, no churn", "cores", ""),
    ("simulator_idle_cpu_cores", "simulated nodes' CPU (the harness), steady", "cores", ""),
    ("simulated_connections_lost", "simulated nodes' connections lost (stale)", "", "0"),
    ("ipam_takeover_s", "standby ipam takeover (kill -9 → new Service decided)", "s", "≤ 1"),
    ("l2_failover_kill9_p50_s", "L2 failover after kill -9, p50", "s", ""),
    ("l2_failover_kill9_p99_s", "L2 failover after kill -9, p99", "s", "≤ 0.15"),
    ("l2_failover_kill9_ips", "  IPs moved", "", ""),
    ("l2_failover_sigstop_p50_s", "L2 failover after SIGSTOP, p50", "s", ""),
    ("l2_failover_sigstop_p99_s", "L2 failover after SIGSTOP, p99", "s", "≤ 1"),
    ("l2_failover_sigstop_ips", "  IPs moved", "", ""),
    ("ignored_sigterm", "services that ignored SIGTERM for 10 s", "", "none"),
    ("server_cut_connections", "services' connections the server cut, before the faults²", "", "none"),
    ("peak_rss_mb:watcher", "watcher peak RSS", "MB", "≤ 400"),
    ("peak_rss_mb:ipam-a", "ipam peak RSS (replica a)", "MB", "≤ 400"),
    ("peak_rss_mb:ipam-b", "ipam peak RSS (replica b)", "MB", "≤ 400"),
    ("peak_rss_mb:announcer-0", "announcer peak RSS", "MB", ""),
    *((f"loop_lag_max_s:{name}", f"max event-loop lag: {name}", "s", "")
      for name in ("watcher", "ipam-a", "ipam-b", "announcer-0", "announcer-1", "announcer-2")),
]


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _git(*arguments: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *arguments], check=True, capture_output=True,
                          text=True).stdout.strip()


@contextlib.contextmanager
def worktree(ref: str) -> Any:
    """``ref`` checked out in a temporary directory, removed afterwards (whatever happens)."""
    parent = Path(tempfile.mkdtemp(prefix="metalbus-baseline-"))
    path = parent / "tree"
    try:
        _git("worktree", "add", "--detach", str(path), ref)
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
                       capture_output=True, check=False)
        subprocess.run(["git", "-C", str(REPO), "worktree", "prune"], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(parent)], check=False)


def run_tree(tree: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """``bench/scale_run.py`` against ``tree``; its figures, or why there are none."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, str(HERE / "scale_run.py"), "--tree", str(tree), "--nodes", str(args.nodes),
                   "--services", str(args.services), "--rate", str(args.rate),
                   "--churn-seconds", str(args.churn_seconds), "--idle-seconds", str(args.idle_seconds),
                   "--status-timeout", str(args.status_timeout),
                   "--nodes-per-connection", str(args.nodes_per_connection), "--out", out.name,
                   "--log-level", args.log_level]
        if args.keep_logs:
            command += ["--keep-logs", str(args.keep_logs / label)]
        log(f"{label}: {tree} ({args.nodes} nodes, {args.services} Services, {args.rate:.0f} changes/s)")
        started = time.monotonic()
        child = subprocess.Popen(command, cwd=tree)
        try:
            child.wait()
        except KeyboardInterrupt:
            log("interrupted: the run cleans up")
            child.send_signal(signal.SIGTERM)  # Ctrl-C reached it too; SIGTERM for a SIGTERM of our own
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
            raise
        figures: dict[str, Any] = {}
        with contextlib.suppress(json.JSONDecodeError, OSError):
            figures = json.loads(Path(out.name).read_text() or "{}")
        if child.returncode != 0 and not figures:
            figures = {"run": f"failed: scale_run exited {child.returncode}"}
        log(f"{label}: done in {time.monotonic() - started:.0f} s")
        return figures


def _shown(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def _ratio(new: Any, old: Any) -> str:
    if isinstance(new, int | float) and isinstance(old, int | float) and old and not math.isnan(old):
        return f"{new / old:.2f}"
    return ""


def table(columns: dict[str, dict[str, Any]]) -> str:
    labels = list(columns)
    known = {name for name, *_ in ROWS}
    extra = sorted({k for figures in columns.values() for k in figures} - known)
    rows = [*ROWS, *((name, name, "", "") for name in extra)]
    width = max(len(what) for _, what, *_ in rows) + 2
    header = f"{'figure':<{width}}{'unit':<7}" + "".join(f"{label[:24]:>26}" for label in labels)
    if len(labels) == 2:
        header += f"{'new/base':>10}"
    lines = [header + f"  {'target':<8}", "-" * (len(header) + 10)]
    for name, what, unit, target in rows:
        values = [columns[label].get(name) for label in labels]
        if all(v is None for v in values):
            continue
        cells = "".join(f"{_shown(v)[:25]:>26}" for v in values)
        ratio = f"{_ratio(values[1], values[0]):>10}" if len(values) == 2 else ""
        lines.append(f"{what:<{width}}{unit:<7}{cells}{ratio}  {target}")
    failures = [f"{label}: {name}: {value}" for label in labels for name, value in columns[label].items()
                if isinstance(value, str) and value.startswith("failed")]
    notes = ["", "¹ server /connz out_msgs during the churn, less the idle rate, ÷ changes; connections that read",
             "  only liveness subjects (ipam's heartbeat readers) and the benchmark's observer left out",
             "² the server's reason for each (a stale connection: its pings unanswered; a slow consumer: not read in",
             "  time), from its /connz:",
             *(f"  {label}: {columns[label].get('server_cut_connections')}" for label in labels)]
    return "\n".join(lines + notes + (["", "failures:", *failures] if failures else []))


def _connections_said(nodes_per_connection: int) -> str:
    if nodes_per_connection == 1:
        return "one NATS connection per node (as real announcers)"
    return (f"{nodes_per_connection} to a NATS connection, each heartbeat naming it (ipam's work per heartbeat "
            "as with one each; the server pings fewer connections; the older protocol shares 4 in all)")


def _interrupted(*_: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_NODES} nodes, {QUICK_SERVICES} Services, "
                        "short windows")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--services", type=int)
    parser.add_argument("--rate", type=float, default=500.0, help="endpoint changes a second")
    parser.add_argument("--churn-seconds", type=float)
    parser.add_argument("--idle-seconds", type=float)
    parser.add_argument("--status-timeout", type=float, help="give up waiting for every status after this")
    parser.add_argument("--nodes-per-connection", type=int,
                        help=f"simulated nodes sharing one NATS connection (default: 1 up to {OWN_CONNECTION_NODES} "
                        f"nodes, {SHARED_NODES_PER_CONNECTION} above; each heartbeat names its connection)")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="the commit to compare with")
    parser.add_argument("--no-baseline", action="store_true", help="measure this tree alone")
    parser.add_argument("--tree", type=Path, default=REPO, help="the tree to measure (default: this one)")
    parser.add_argument("--ref", help="measure this commit (in a temporary worktree) instead of a tree")
    parser.add_argument("--keep-logs", type=Path, help="keep the services' and nats-server's logs here")
    parser.add_argument("--log-level", default="WARNING", help="the services' log level (INFO says what each did)")
    args = parser.parse_args()
    quick = args.quick
    args.nodes = args.nodes or (QUICK_NODES if quick else 5000)
    args.services = args.services or (QUICK_SERVICES if quick else 50_000)
    args.churn_seconds = args.churn_seconds or (4.0 if quick else 30.0)
    args.idle_seconds = args.idle_seconds or (3.0 if quick else 20.0)
    args.status_timeout = args.status_timeout or (40.0 if quick else 900.0)
    args.nodes_per_connection = args.nodes_per_connection or (
        1 if args.nodes <= OWN_CONNECTION_NODES else SHARED_NODES_PER_CONNECTION)

    signal.signal(signal.SIGTERM, _interrupted)
    started = time.monotonic()
    columns: dict[str, dict[str, Any]] = {}
    head = _git("rev-parse", "--short", "HEAD")
    if not args.no_baseline:
        base = _git("rev-parse", "--short", args.baseline)
        with worktree(base) as tree:
            columns[f"baseline {base}"] = run_tree(tree, args, f"baseline-{base}")
    if args.ref:
        ref = _git("rev-parse", "--short", args.ref)
        with worktree(ref) as tree:
            columns[f"{args.ref} {ref}"] = run_tree(tree, args, ref)
    else:
        label = f"this tree ({head}+)" if args.tree.resolve() == REPO else str(args.tree)
        columns[label] = run_tree(args.tree.resolve(), args, "tree")
    print(f"metalbus at scale: {args.nodes} nodes, {args.services} Services, {args.rate:.0f} endpoint "
          f"changes/s for {args.churn_seconds:.0f} s; wall time {time.monotonic() - started:.0f} s")
    print(f"simulated nodes: {_connections_said(args.nodes_per_connection)}")
    print(table(columns))
    print(json.dumps({"nodes": args.nodes, "services": args.services, "rate": args.rate,
                      "nodes_per_connection": args.nodes_per_connection, "columns": columns}))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted: every process, namespace and temporary tree removed")
        sys.exit(130)
