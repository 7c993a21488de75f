"""The current picture from the bus, for the operator commands: the last decision per IPAM subject and
the last report per ANNOUNCE subject, each with when it was made. Folding is pure; :func:`read_view`
is the only I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from schemas.events import (
    AllocationFailed,
    AnnouncementMode,
    AnnouncementReported,
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPSessionChanged,
    ConfigurationEvaluated,
    ConfigurationPart,
    DataPlaneReported,
    IPAllocated,
    IPReleased,
    L2PlacementCleared,
    L2PlacementDecided,
    PoolUsageReported,
)
from schemas.events.in_force import InForceParts
from services.common.bus import Bus, BusSettings, Received
from services.common.errors import NotFound
from services.common.subjects import StreamName


@dataclass(frozen=True, slots=True)
class At:
    """A fact with its stream position and time."""

    sequence: int
    time: datetime


@dataclass(frozen=True, slots=True)
class Placement:
    event: L2PlacementDecided
    at: At


@dataclass(frozen=True, slots=True)
class Report:
    event: AnnouncementReported
    at: At


@dataclass(frozen=True, slots=True)
class Session:
    event: BGPSessionChanged
    at: At


Decision = IPAllocated | AllocationFailed | IPReleased
BGPDecision = BGPAdvertisementDecided | BGPAdvertisementWithdrawn


@dataclass
class ClusterView:
    decisions: dict[str, tuple[Decision, At]] = field(default_factory=dict)
    placements: dict[str, Placement] = field(default_factory=dict)
    cleared: dict[str, tuple[L2PlacementCleared, At]] = field(default_factory=dict)
    usage: dict[str, PoolUsageReported] = field(default_factory=dict)
    configuration: ConfigurationEvaluated | None = None
    #: the raw objects of the configuration in force (from its parts)
    in_force: InForceParts = field(default_factory=InForceParts)
    bgp: dict[str, tuple[BGPDecision, At]] = field(default_factory=dict)
    reports: dict[tuple[str, str], Report] = field(default_factory=dict)
    sessions: dict[tuple[str, str], Session] = field(default_factory=dict)
    #: each node's newest data-plane report: whether it can answer, and on which interfaces
    dataplanes: dict[str, DataPlaneReported] = field(default_factory=dict)

    def fold(self, received: Received) -> None:
        event = received.event
        at = At(received.sequence, received.time or received.envelope.time)
        if isinstance(event, IPAllocated | AllocationFailed | IPReleased):
            self.decisions[f"{event.service.namespace}/{event.service.name}"] = (event, at)
        elif isinstance(event, L2PlacementDecided):
            self.placements[event.ip] = Placement(event, at)
            self.cleared.pop(event.ip, None)
        elif isinstance(event, L2PlacementCleared):
            self.placements.pop(event.ip, None)
            self.cleared[event.ip] = (event, at)
        elif isinstance(event, PoolUsageReported):
            self.usage[event.pool] = event
        elif isinstance(event, ConfigurationEvaluated):
            self.configuration = event
            self.in_force.settle(event)
        elif isinstance(event, ConfigurationPart):
            self.in_force.add(event)
        elif isinstance(event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn):
            self.bgp[event.ip] = (event, at)
        elif isinstance(event, AnnouncementReported):
            self.reports[(event.node, event.ip)] = Report(event, at)
        elif isinstance(event, BGPSessionChanged):
            self.sessions[(event.node, event.peer)] = Session(event, at)
        elif isinstance(event, DataPlaneReported):
            self.dataplanes[event.node] = event

    # --- questions ------------------------------------------------------------------------------

    def allocation(self, service: str) -> tuple[IPAllocated, At] | None:
        decision = self.decisions.get(service)
        if decision is not None and isinstance(decision[0], IPAllocated):
            return decision[0], decision[1]
        return None

    def announcing(self, ip: str) -> list[Report]:
        """Reports of nodes announcing ``ip`` now, by node."""
        return [r for (node, address), r in sorted(self.reports.items())
                if address == ip and r.event.announcing]

    def mode_of(self, ip: str) -> str:
        modes = sorted({r.event.mode.value for r in self.announcing(ip)})
        if not modes and ip in self.placements:
            modes = [AnnouncementMode.L2.value]
        return "+".join(modes) or "-"


async def read_view(bus: Bus) -> ClusterView:
    """The last value of every IPAM and ANNOUNCE subject, folded."""
    view = ClusterView()
    for stream in (StreamName.IPAM, StreamName.ANNOUNCE):
        try:
            await bus.replay(stream, view.fold, last_per_subject=True)
        except NotFound:  # not created yet: nothing decided, nothing announced
            continue
    return view


def since(at: At, now: datetime) -> str:
    """How long ago, in the largest sensible unit: ``12s``, ``4m``, ``3h``, ``2d``."""
    seconds = max(0, int((now - at.time).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


async def connect_operator(nats_url: str, *, ca_file: str | None, command: str) -> Bus:
    """The bus for one operator command: one attempt, a short timeout (a person is waiting)."""
    return await Bus.connect(BusSettings(url=nats_url, connect_timeout=2.0, initial_attempts=1, tls_ca_file=ca_file),
                             producer=f"{command}/cli")
