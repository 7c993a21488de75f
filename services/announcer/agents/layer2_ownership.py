"""Which IPs this node answers for (pure): the newest placement of its IPs, conflicts seen on the wire, partition.

The ipam decides placements; each carries an epoch (its IPAM stream sequence) and only the newest per IP
counts, so a late or replayed older decision never undoes a newer one. Only the IPs this node holds are kept:
those a placement named it for since the last full read (and those it reported before that read), each with
its newest placement — the epoch a withdrawal names when an IP moves away. Another node's placement of an IP
this node does not hold changes nothing here and is not kept: tens of thousands of them would be kept for
nothing (a claim on the wire reads the IP's newest placement from the stream itself). While the bus is reachable the
placement is the truth: another station claiming one of our IPs on the wire is counted and logged, and our
gratuitous schedule wins the neighbour caches back. While partitioned, the ipam has most likely moved our
IPs already, so a claim on the wire is believed and the IP yielded at once. A resync (re-reading every
placement after the bus comes back) forgets the yields: the fresh placements decide again.

An IP moved from this node to another live one (rebalanced, its endpoints moved) is handed over, not dropped:
it is still answered until the new owner claims it on the wire (its takeover's gratuitous ARP/NA, a few ms) or
for ``HANDOVER`` seconds at most. So a move to a node that cannot answer after all (cut off from the bus just
as the ipam chose it) leaves the IP answered here until the ipam, noticing, moves it back. A clear drops the
IP at once.

No I/O, no clock: the shell passes times in.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, KeysView, Mapping
from dataclasses import dataclass
from ipaddress import ip_address

from schemas.events import AnnouncementMode, AnnouncementReported, L2PlacementCleared, L2PlacementDecided, ServiceId
from services.announcer.l2.interfaces import IPAddress

#: The longest an IP moved away is still answered while the new owner does not claim it: longer than the ipam
#: takes to move it back from a new owner that turned out unreachable (the server's stale close, ~1 s).
HANDOVER = 2.0


class Connectivity(enum.Enum):
    CONNECTED = "connected"
    PARTITIONED = "partitioned"


class Applied(enum.Enum):
    """What folding one placement into the table did."""

    NEWER = "newer"  # it is now the newest placement of its IP
    STALE = "stale"  # its epoch is not above the one held: ignored
    ELSEWHERE = "elsewhere"  # another node's (or none's) placement of an IP this node does not hold: not kept
    INVALID = "invalid"  # its `ip` is not an IP address: ignored


class ConflictVerdict(enum.Enum):
    """What to do when another station claims an IP we answer for."""

    YIELD = "yield"  # partitioned: believe the wire, stop answering at once
    KEEP = "keep"  # connected: the newest placement names us; count it, keep answering
    NOT_OURS = "not_ours"  # we do not answer for it (any more): nothing to do
    HANDED_OVER = "handed_over"  # moved to another node, which claims it now: stop answering


@dataclass(frozen=True, slots=True)
class Placement:
    """The newest decision about one IP. `node` None: cleared (nobody announces it)."""

    ip: IPAddress
    epoch: int
    node: str | None
    interfaces: frozenset[str] = frozenset()
    services: tuple[ServiceId, ...] = ()


def placement_of(
    event: L2PlacementDecided | L2PlacementCleared, *, epoch: int, node: str | None = None
) -> Placement | None:
    """The placement an IPAM event states, or None when its IP does not parse. Given ``node`` (this one), a
    placement on another node keeps only its epoch and node: its Services and interfaces never matter here
    (an IP that moved away is withdrawn naming that epoch)."""
    try:
        ip = ip_address(event.ip)
    except ValueError:
        return None
    if isinstance(event, L2PlacementCleared):
        return Placement(ip=ip, epoch=epoch, node=None)
    if node is not None and event.node != node:
        return Placement(ip=ip, epoch=epoch, node=event.node)
    return Placement(
        ip=ip, epoch=epoch, node=event.node, interfaces=frozenset(event.interfaces), services=event.services
    )


def connectivity(*, connected: bool, last_contact: float | None, now: float, stale_after: float) -> Connectivity:
    """Connected while the client says so and the server answered a round trip recently."""
    if not connected or last_contact is None or now - last_contact > stale_after:
        return Connectivity.PARTITIONED
    return Connectivity.CONNECTED


class Ownership:
    """The newest placement of each IP this node holds, and the IPs it yielded while partitioned."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._held: dict[IPAddress, Placement] = {}
        self._yielded: dict[IPAddress, int] = {}  # IP -> epoch of the placement yielded
        #: IPs moved to another node and still answered: the placement answered under, and until when
        self._handing: dict[IPAddress, tuple[Placement, float]] = {}

    def apply(self, placement: Placement | None, *, now: float | None = None) -> Applied:
        """Fold one placement in; given ``now``, an IP this node answers that moves to another node is handed
        over (answered until claimed, ``HANDOVER`` at most)."""
        if placement is None:
            return Applied.INVALID
        held = self._held.get(placement.ip)
        if held is None:
            if placement.node != self.node:
                return Applied.ELSEWHERE
        elif held.epoch >= placement.epoch:
            return Applied.STALE
        answered = self.desired().get(placement.ip)
        self._handing.pop(placement.ip, None)
        if now is not None and answered is not None and placement.node not in (None, self.node):
            self._handing[placement.ip] = (answered, now + HANDOVER)
        self._held[placement.ip] = placement
        return Applied.NEWER

    def handing_over(self, ip: IPAddress) -> bool:
        return ip in self._handing

    def drop_handover(self, ip: IPAddress) -> None:
        """Stop answering a moved IP at once (no interface answers it here now: nothing to hand over)."""
        self._handing.pop(ip, None)

    def handovers_end(self) -> float | None:
        """When the next handover ends unclaimed (None: none under way)."""
        return min((until for _, until in self._handing.values()), default=None)

    def end_handovers(self, now: float) -> bool:
        """Stop answering the IPs handed over whose time is up; whether any."""
        ended = [ip for ip, (_, until) in self._handing.items() if until <= now]
        for ip in ended:
            del self._handing[ip]
        return bool(ended)

    def resynced(self, placements: Iterable[Placement], *, owned: Collection[IPAddress] = ()) -> None:
        """Replace everything with a fresh read of the placements; yields are forgotten. ``owned``: IPs this
        node answered for until now, whose newest placement is kept wherever it is (a withdrawal names it)."""
        self._held.clear()
        self._yielded.clear()
        self._handing.clear()
        for placement in placements:
            if placement.node == self.node or placement.ip in owned:
                held = self._held.get(placement.ip)
                if held is None or held.epoch < placement.epoch:
                    self._held[placement.ip] = placement

    def newest(self, ip: IPAddress) -> Placement | None:
        """The newest placement of a held IP (None: not held)."""
        return self._held.get(ip)

    def held(self) -> KeysView[IPAddress]:
        """The IPs kept: named for this node since the last full read, or owned before it."""
        return self._held.keys()

    def desired(self) -> dict[IPAddress, Placement]:
        """The IPs to answer for: the newest placement names this node and it was not yielded; and those handed
        over and not claimed yet (with the placement they were answered under)."""
        desired = {
            ip: placement
            for ip, placement in self._held.items()
            if placement.node == self.node and self._yielded.get(ip, -1) < placement.epoch
        }
        for ip, (placement, _) in self._handing.items():
            desired.setdefault(ip, placement)
        return desired

    def conflict(self, ip: IPAddress, *, connectivity: Connectivity) -> ConflictVerdict:
        """Another station claimed `ip` on the wire; on YIELD it leaves the desired set at once."""
        if self._handing.pop(ip, None) is not None:
            return ConflictVerdict.HANDED_OVER
        placement = self._held.get(ip)
        if placement is None or placement.node != self.node or self._yielded.get(ip, -1) >= placement.epoch:
            return ConflictVerdict.NOT_OURS
        if connectivity is Connectivity.CONNECTED:
            return ConflictVerdict.KEEP
        self._yielded[ip] = placement.epoch
        return ConflictVerdict.YIELD

    def yielded(self) -> frozenset[IPAddress]:
        return frozenset(self._yielded)


# --- what to report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answering:
    """One IP as it is answered on the wire now."""

    interfaces: tuple[str, ...]
    epoch: int
    services: tuple[ServiceId, ...]


def answering(
    desired: Mapping[IPAddress, Placement], announced: Mapping[IPAddress, tuple[str, ...]]
) -> dict[IPAddress, Answering]:
    """Desired IPs that some interface answers for, with those interfaces."""
    return {
        ip: Answering(interfaces=tuple(sorted(announced[ip])), epoch=placement.epoch, services=placement.services)
        for ip, placement in desired.items()
        if announced.get(ip)
    }


def report_changes(
    *,
    node: str,
    reported: Mapping[IPAddress, Answering],
    answering: Mapping[IPAddress, Answering],
    newest_epoch: Mapping[IPAddress, int],
    refresh: Collection[IPAddress] = (),
) -> list[tuple[IPAddress, AnnouncementReported]]:
    """The reports that bring `reported` (what the ANNOUNCE stream says) to `answering` (what the wire
    answers), ordered by IP; those `refresh` names are published again even when unchanged (``report_ages``).

    A withdrawal names the newest epoch known for the IP (the placement that moved it, if any)."""
    changes: list[tuple[IPAddress, AnnouncementReported]] = []
    for ip in sorted(set(reported) | set(answering), key=lambda a: (a.version, a)):
        before, after = reported.get(ip), answering.get(ip)
        if before == after and (after is None or ip not in refresh):
            continue
        if after is not None:
            event = AnnouncementReported(
                node=node, ip=str(ip), mode=AnnouncementMode.L2, announcing=True, services=after.services,
                interfaces=after.interfaces, placement_epoch=after.epoch,
            )  # fmt: skip
        else:
            assert before is not None
            event = AnnouncementReported(
                node=node, ip=str(ip), mode=AnnouncementMode.L2, announcing=False, services=before.services,
                placement_epoch=max(before.epoch, newest_epoch.get(ip, 0)),
            )  # fmt: skip
        changes.append((ip, event))
    return changes
