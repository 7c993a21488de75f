"""``metalbus lab up`` / ``metalbus lab down``: the whole system on one machine, in network namespaces."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.live import Live

from services.common.bus import Bus, BusSettings
from services.lab.checks import Mode, Verdict, check_service
from services.lab.discovery import lab_state_dir
from services.lab.host import LabError, run, teardown
from services.lab.plan import BGP_POOL, NODES, SERVICE_NAMESPACE, SERVICES, LabPlan
from services.lab.state import LabState
from services.lab.up import bird_socket, build, missing_requirements
from services.operator.tables import services_table, sessions_table
from services.operator.views import ClusterView, read_view


def node_identities(plan: LabPlan) -> tuple[dict[str, str], dict[str, str]]:
    """MAC of each node's eth0 → node, and node address → node."""
    macs = {}
    for name in NODES:
        mac = run("cat", "/sys/class/net/eth0/address", ns=plan.ns(name)).stdout.strip().lower()
        macs[mac] = name
    hops = {address: name for name, addresses in NODES.items() for address in addresses}
    return macs, hops


def expected_services() -> list[str]:
    return [f"{SERVICE_NAMESPACE}/{s.name}" for s in SERVICES]


def decided(view: ClusterView, plan: LabPlan) -> bool:
    """The sample Services have IPs (with a directory of one's own: anything was decided)."""
    if plan.objects_dir is not None:
        return bool(view.decisions)
    return all(view.allocation(key) is not None for key in expected_services())


def mode_of(view: ClusterView, ip: str, pool: str) -> Mode:
    if any(r.event.mode.value == Mode.BGP.value for r in view.announcing(ip)) or pool == BGP_POOL:
        return Mode.BGP
    return Mode.L2


def probe(plan: LabPlan, view: ClusterView) -> list[Verdict]:
    """One check per allocated address of every Service, as the bus shows them now."""
    macs, hops = node_identities(plan)
    verdicts = []
    for key in sorted(view.decisions):
        allocation = view.allocation(key)
        if allocation is None:
            continue
        event, _ = allocation
        for ip in event.ips:
            verdicts.append(check_service(
                service=key, ip=ip, mode=mode_of(view, ip, event.pool), client_ns=plan.ns("client"),
                router_ns=plan.ns("router"), bird_socket=bird_socket(plan), macs=macs, next_hops=hops,
            ))
    return verdicts


async def _connect(plan: LabPlan) -> Bus:
    return await Bus.connect(BusSettings(url=plan.operator_url, connect_timeout=2.0, initial_attempts=3),
                             producer="lab/cli")


def _render(view: ClusterView, verdicts: list[Verdict] | None) -> Group:
    now = datetime.now(UTC)
    parts: list[object] = [services_table(view, now, title="lab services (edit the YAML: it follows)", why=False)]
    if view.sessions:
        parts.append(sessions_table(view, now))
    if verdicts is not None:
        parts += [("[green]✓[/green] " if v.reachable else "[yellow]…[/yellow] ") + v.describe() for v in verdicts]
    return Group(*parts)  # type: ignore[arg-type]


async def wait_and_check(plan: LabPlan, console: Console, *, within: float = 45.0) -> list[Verdict]:
    """Show the table until the sample Services have IPs, then probe until every L2 address answers
    (BGP addresses too, if the router learns them) or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    bus = await _connect(plan)
    async with bus:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            view = await read_view(bus)
            while not decided(view, plan) and time.monotonic() < deadline:
                live.update(_render(view, None))
                await asyncio.sleep(0.5)  # refresh of a display, not synchronisation
                view = await read_view(bus)
            verdicts = await asyncio.to_thread(probe, plan, view)
            while not all(v.reachable for v in verdicts) and time.monotonic() < deadline:
                live.update(_render(view, verdicts))
                await asyncio.sleep(1.0)
                view = await read_view(bus)
                verdicts = await asyncio.to_thread(probe, plan, view)
            live.update(_render(view, verdicts))
    return verdicts


async def follow(plan: LabPlan, console: Console, verdicts: list[Verdict]) -> None:
    """The live table until Ctrl-C (re-probing reachability every few seconds)."""
    bus = await _connect(plan)
    async with bus:
        with Live(console=console, refresh_per_second=2) as live:
            probed = time.monotonic()
            while True:
                view = await read_view(bus)
                if time.monotonic() - probed > 5:
                    verdicts = await asyncio.to_thread(probe, plan, view)
                    probed = time.monotonic()
                live.update(_render(view, verdicts))
                await asyncio.sleep(1.0)  # refresh of a display


def lab_up(plan: LabPlan, *, follow_live: bool, console: Console | None = None) -> int:
    console = console or Console()
    problems = missing_requirements()
    if problems:
        console.print("metalbus lab cannot run here; it needs:")
        for problem in problems:
            console.print(f"  - {problem}")
        return 2
    try:
        build(plan, say=lambda text: console.print(text))
    except LabError as error:
        console.print(f"[red]lab failed to come up:[/red] {error}")
        return 1
    except KeyboardInterrupt:  # build() has removed what it made
        console.print("interrupted: the lab is removed")
        return 130
    try:
        kept = _checked_and_followed(plan, console, follow_live=follow_live)
    except KeyboardInterrupt:  # wherever it lands, Ctrl-C means: stop and remove the lab
        kept = None
    except Exception as error:  # the lab went away under us (`lab down` elsewhere), or a bug
        console.print(f"\nstopped: {error!r}")
        kept = None
    if kept is not None:
        return kept
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
    console.print()
    console.print("stopping the lab")
    return lab_down(plan, console=console)


def _checked_and_followed(plan: LabPlan, console: Console, *, follow_live: bool) -> int | None:
    """The checks, then (``follow_live``) the live table until Ctrl-C. An exit code when the lab stays
    up (``--no-follow``); None when it is to be removed."""
    console.print(f"objects: {plan.objects} (edit them; status is written to {plan.objects / 'status'})")
    pointer = "" if plan.state_dir == lab_state_dir(os.environ) else f"METALBUS_LAB_STATE_DIR={plan.state_dir} "
    console.print(f"bus: {pointer}metalbus status | explain demo/web | history demo/web (they find this lab's bus)")
    console.print(f"     other NATS clients: {plan.operator_url} (the read-only operator user)")
    console.print(f"logs: {plan.state_dir / 'logs'}")
    verdicts = asyncio.run(wait_and_check(plan, console))
    console.print()
    expected = 1 if plan.objects_dir is not None else len(SERVICES)
    l2_ok = all(v.reachable for v in verdicts if v.mode is Mode.L2) and len(verdicts) >= expected
    if not follow_live:
        console.print("lab is up; `metalbus lab down` removes it" if l2_ok else
                      "[red]some layer 2 addresses are not reachable[/red]; `metalbus lab down` removes the lab")
        return 0 if l2_ok else 1
    console.print("following (Ctrl-C stops and removes the lab)")
    asyncio.run(follow(plan, console, verdicts))
    return None


def lab_down(plan: LabPlan, *, console: Console | None = None) -> int:
    console = console or Console()
    problems = missing_requirements()
    if problems and problems[0].startswith("root"):
        console.print(f"metalbus lab down needs {problems[0]}")
        return 2
    state = LabState.load(plan.state_file)
    removed = teardown(plan.prefix, state)
    for runtime in ("nats", "logs", "bird", "objects"):
        shutil.rmtree(plan.state_dir / runtime, ignore_errors=True)
    plan.state_file.unlink(missing_ok=True)
    console.print(f"removed: {', '.join(removed)}" if removed else "nothing to remove: no lab is up")
    return 0
