"""Which live announcers can answer ARP/NDP, and on what: the pure rule over their data-plane reports (times
are passed in; no I/O, no clock).

Each announcer reports (``DataPlaneReported``, on change) whether it is ready and the interfaces it answers on.
A report counts for the announcer instance that sent it, as the heartbeats name the node's instance:

- the current instance's report is in force: not ready answers nothing (starting, stopping), ready answers on
  its interfaces (``Answering.answers``: an advertisement that names none needs one of ``interfaces``, one that
  names some needs one of those);
- an instance with no report yet is *starting* (it says ``not ready`` before its first heartbeat, so this is a
  moment) for ``starting_grace`` after it was first heard; then it is an announcer that sends no reports (an
  earlier release) and answers anything, as before. Instances already running when the rule began listening
  are given that trust at once: when they started is unknown;
- flapping is damped: a report that takes something away is in force at once (an IP must leave a node that
  cannot answer for it); one that gives something back counts at once when nothing was lost in the last
  minute, else after a hold-down of 2 s for one loss in that minute, twice as long for each further one, up
  to a minute (IPs are sticky: what moved away stays away). Meanwhile the node is *held down*: it is chosen
  only for an IP no other node can answer (better a node that flapped than one that cannot answer at all).
  A new instance starts afresh.

Nodes that answer anything are left out of the view; the view of a node that is not live does not matter.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

from schemas.events import DataPlaneReported
from schemas.events.announcements import answers_on

STARTING_GRACE = 3.0
HOLD_DOWN = 2.0
MAX_HOLD_DOWN = 60.0
FLAP_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Answering:
    """What one node's announcer answers on; ``why`` says what is missing when it answers nothing."""

    interfaces: frozenset[str] = frozenset()
    named_only: frozenset[str] = frozenset()
    why: str = ""
    #: It answers again, but lost something within the last minute: chosen only when no other node can answer.
    held_down: bool = False

    def answers(self, listed: Collection[str]) -> bool:
        """Whether it can answer for an IP whose advertisements list ``listed`` (empty: every interface)."""
        return answers_on(self.interfaces, self.named_only, listed)

    @property
    def anything(self) -> bool:
        return bool(self.interfaces or self.named_only)

    def covers(self, other: Answering) -> bool:
        """Whether it answers on everything ``other`` does."""
        return other.interfaces <= self.interfaces and other.named_only <= self.named_only

    def why_not(self) -> str:
        return self.why or "no interface of its can answer (down, no carrier, gone or excluded)"


STARTING = Answering(why="its announcer is starting")


def answering_of(report: DataPlaneReported) -> Answering:
    if not report.ready:
        return Answering(why="its announcer is not ready")
    return Answering(frozenset(report.interfaces), frozenset(report.named_only))


@dataclass(slots=True)
class _Node:
    instance: str = ""
    heard_at: float = 0.0
    trusted: bool = False  # running before the rule listened: no report means an announcer that sends none
    instance_report: str = ""  # the instance of ``in_force``
    in_force: Answering | None = None
    pending: Answering | None = None
    pending_at: float = 0.0
    #: when it lost interfaces within the flap window, oldest first (a tuple: nearly always empty, and a deque
    #: was 760 bytes a node)
    losses: tuple[float, ...] = ()


class DataPlanes:
    def __init__(self, *, starting_grace: float = STARTING_GRACE, hold_down: float = HOLD_DOWN,
                 max_hold_down: float = MAX_HOLD_DOWN, flap_window: float = FLAP_WINDOW) -> None:
        self.starting_grace = starting_grace
        self.hold_down = hold_down
        self.max_hold_down = max_hold_down
        self.flap_window = flap_window
        self._nodes: dict[str, _Node] = {}
        self._listening_since: float | None = None

    def listening(self, now: float) -> None:
        """Heartbeats are heard from now on: instances heard within the next grace were running already."""
        if self._listening_since is None:
            self._listening_since = now

    def heard(self, node: str, instance: str, now: float) -> bool:
        """A heartbeat of ``instance`` on ``node``; whether the view may have changed (a new instance)."""
        state = self._nodes.get(node)
        if state is None:
            state = self._nodes[node] = _Node()
        if state.instance == instance:
            return False
        state.instance, state.heard_at = instance, now
        since = self._listening_since
        state.trusted = since is None or now < since + self.starting_grace
        if state.instance_report != instance:
            state.in_force, state.pending = None, None
            state.losses = ()
        return True

    def reported(self, report: DataPlaneReported, now: float) -> bool:
        """A report arrived; whether the view may have changed."""
        state = self._nodes.get(report.node)
        if state is None:
            state = self._nodes[report.node] = _Node()
        new = answering_of(report)
        if state.instance_report != report.instance or state.in_force is None:
            state.instance_report, state.in_force, state.pending = report.instance, new, None
            state.losses = ()
            return True
        current = state.in_force
        if current.covers(new):  # something taken away (or nothing changed): at once
            state.pending = None
            if new == current:
                return False
            if report.ready and current.anything:
                state.losses = (*state.losses, now)
            state.in_force = new
            return True
        state.losses = tuple(lost for lost in state.losses if lost >= now - self.flap_window)
        if not state.losses:
            state.in_force, state.pending = new, None
            return True
        hold = min(self.max_hold_down, self.hold_down * 2 ** (len(state.losses) - 1))
        state.pending, state.pending_at = new, now + hold
        return False

    def tick(self, now: float) -> bool:
        """Hold-downs and starting graces that ended by ``now`` take effect; whether the view may have changed."""
        changed = False
        for state in self._nodes.values():
            if state.pending is not None and now >= state.pending_at:
                state.in_force, state.pending = state.pending, None
                changed = True
            elif (state.instance and state.instance_report != state.instance and not state.trusted
                  and now >= state.heard_at + self.starting_grace):
                state.trusted = True
                changed = True
        return changed

    def next_change(self) -> float | None:
        """When ``tick`` next has something to do (None: nothing pending)."""
        times = [s.pending_at for s in self._nodes.values() if s.pending is not None]
        times += [s.heard_at + self.starting_grace for s in self._nodes.values()
                  if s.instance and s.instance_report != s.instance and not s.trusted]
        return min(times, default=None)

    def forget(self, node: str) -> None:
        self._nodes.pop(node, None)

    def view(self) -> Mapping[str, Answering]:
        """What each node answers on, for the nodes that do not answer anything (as of the last ``tick``)."""
        view: dict[str, Answering] = {}
        for name, state in self._nodes.items():
            if state.instance and state.instance_report == state.instance and state.in_force is not None:
                view[name] = state.in_force if state.pending is None else replace(state.pending, held_down=True)
            elif state.instance and not state.trusted:
                view[name] = STARTING
        return view
