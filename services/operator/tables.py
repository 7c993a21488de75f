"""Rich tables of a :class:`~services.operator.views.ClusterView`, shared by ``status`` and ``lab``."""

from __future__ import annotations

from datetime import datetime

from rich.markup import escape
from rich.table import Table

from schemas.events import AllocationFailed, IPAllocated
from services.operator.views import ClusterView, since


def announced_by(view: ClusterView, ip: str, now: datetime) -> str:
    """``node2 (eth0, 12s)`` per node announcing ``ip``; the placement when nobody reports yet."""
    parts = []
    for report in view.announcing(ip):
        via = ", ".join(report.event.interfaces or report.event.peers)
        parts.append(f"{report.event.node} ({via}, {since(report.at, now)})")
    if not parts and ip in view.placements:
        parts.append(f"{view.placements[ip].event.node} (placed, not reported yet)")
    return "; ".join(parts) or "-"


def services_table(view: ClusterView, now: datetime, *, title: str = "services", why: bool = True) -> Table:
    """One row per Service address; ``why`` adds the reason of the allocation."""
    table = Table(title=title)
    for column in ("service", "IP", "pool", "mode", "announced by (since)", "held since", *(["why"] if why else [])):
        table.add_column(column)
    for key in sorted(view.decisions):
        event, at = view.decisions[key]
        if isinstance(event, IPAllocated):
            for index, ip in enumerate(event.ips):
                first = index == 0
                reason = [escape(event.reason) if first else ""] if why else []
                table.add_row(key if first else "", ip, event.pool if first else "", view.mode_of(ip),
                              escape(announced_by(view, ip, now)), since(at, now) if first else "", *reason)
        elif isinstance(event, AllocationFailed):
            message = escape(f"{event.reason.value}: {event.message}")
            table.add_row(key, "[red]none[/red]", "", "", message if not why else "", "", *([message] if why else []))
    return table


def sessions_table(view: ClusterView, now: datetime) -> Table:
    table = Table(title="BGP sessions")
    for column in ("node", "peer", "address", "state", "since", "reason"):
        table.add_column(column)
    for (node, peer), session in sorted(view.sessions.items()):
        event = session.event
        table.add_row(node, peer, event.peer_address, event.state.value, since(session.at, now),
                      escape(event.reason))
    return table
