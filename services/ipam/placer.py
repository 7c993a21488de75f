"""L2 placement, the choice: which eligible node each IP group goes on. Pure: no I/O, no clock, deterministic.

The rules (``Placer``):
  1. Sticky: a group stays on its node while that node stays eligible.
  2. Otherwise among the eligible nodes with the highest ``preferredNodeSelectors`` weight (the best
     matching advertisement's sum of matched weights; all nodes tie when nobody prefers), the one holding
     the fewest IPs; ties go to the first of them at or after the group's stable hash on a ring of the nodes'
     stable hashes, so equal clusters spread alike.
  3. Rebalancing, the one exception to stickiness: a group's *candidates* are its preferred nodes plus its
     current node, and their *fair share* is the mean number of IPs they hold. A group moves to its
     least-loaded candidate only when its node holds more than fair share + 1 *and* the move lowers the
     imbalance (target + group size < source). It stops as soon as no such move is left, so after every
     ``solve`` no node holds more than fair share + 1 of the IPs it is eligible for (fair share + the group
     size for the rare two-IP groups), and no IP moves that this bound does not require.

Groups with equal demands share a ``Kind``: a change of their eligibility is applied once per kind. A candidate
set of ``INDEXED_FROM`` nodes or more keeps its nodes by load (``LoadLevels``), so that a placement or a check of
the bound costs a few steps, not a pass over every node (milliseconds per IP at 5 000 nodes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter

from services.ipam.load_levels import LoadLevels, RingEntry, ring_successor
from services.ipam.placement import Eligibility

GroupKey = str  # the group's lowest IP (text order)

#: Candidate sets with at least this many nodes keep them by load; smaller ones are scanned (as cheap).
INDEXED_FROM = 32


class Move(StrEnum):
    """Why a group's node changed."""

    PLACED = "Placed"
    """It had no node (new, or nothing was eligible before)."""
    FAILOVER = "NodeNotEligible"
    """Its node stopped being eligible (not live, unavailable, excluded, no longer selected, no endpoint)."""
    REBALANCED = "Rebalanced"
    """Its node held more than fair share + 1."""
    CLEARED = "NoEligibleNode"
    """No node is eligible any more."""


def stable_hash(text: str) -> int:
    """A hash equal on every replica and run (``hash()`` of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class Kind:
    """Groups eligible on the same nodes (equal demands) share one Kind, so that a change of eligibility
    (a node dies, returns, is relabelled) is applied once per Kind, not once per group: only the groups
    on a node that stopped being eligible, and those without a node, are then looked at one by one."""

    __slots__ = ("eligible", "on", "unplaced")

    def __init__(self, eligible: Eligibility) -> None:
        self.eligible = eligible
        self.on: dict[str, set[GroupKey]] = {}
        self.unplaced: set[GroupKey] = set()

    def __bool__(self) -> bool:
        """Whether any group is of this kind."""
        return bool(self.on or self.unplaced)


def _candidates(preferred: frozenset[str], node: str) -> frozenset[str]:
    """The candidate set of a group on ``node``: its preferred nodes and that node."""
    return preferred if node in preferred else preferred | {node}


@dataclass(slots=True)
class _Group:
    weight: int
    kind: Kind
    hash: int
    node: str | None = None

    @property
    def eligible(self) -> Eligibility:
        return self.kind.eligible

    @property
    def candidates(self) -> frozenset[str]:
        """Where it may be, for rebalancing: its preferred nodes and the node it is on."""
        preferred = self.eligible.preferred
        return preferred if self.node is None else _candidates(preferred, self.node)


@dataclass(slots=True, eq=False)
class _ByLoad:
    """A large candidate set's nodes by load: all of them, those holding a group of the set, and those holding
    a one-IP group of it — the only group a node two IPs above the least loaded can give away (while fair share
    is below one IP, every node holding a dual-stack pair is such a node, and cannot)."""

    every: LoadLevels
    holding: LoadLevels = field(default_factory=LoadLevels)
    light: LoadLevels = field(default_factory=LoadLevels)
    singles: dict[str, int] = field(default_factory=dict)  # the one-IP groups of the set on each node


@dataclass(slots=True, eq=False)
class _CandidateSet:
    """The groups on each node whose candidates are ``nodes`` (the rebalancing index), and a large set's
    nodes by load."""

    nodes: frozenset[str]
    order: tuple[str, ...]  # the nodes' names sorted: the order in which sets are rebalanced
    members: dict[str, set[GroupKey]]
    by_load: _ByLoad | None


@dataclass(frozen=True, slots=True)
class Change:
    group: GroupKey
    old: str | None
    new: str | None
    move: Move


class Placer:
    """Groups, their nodes, and the load (IPs held) per node. ``solve`` applies the rules above to the
    groups changed since the last call and returns what moved. The same calls give the same answers."""

    def __init__(self) -> None:
        self._groups: dict[GroupKey, _Group] = {}
        self._loads: dict[str, int] = {}
        self._ring_entries: dict[str, RingEntry] = {}
        #: candidate set → its groups by node (for rebalancing), and the sets each node is a candidate of
        self._sets: dict[frozenset[str], _CandidateSet] = {}
        self._sets_of: dict[str, set[_CandidateSet]] = {}
        self._dirty: set[GroupKey] = set()
        self._touched_nodes: set[str] = set()
        self._before: dict[GroupKey, str | None] = {}

    # --- input ----------------------------------------------------------------------------------

    def put(self, key: GroupKey, *, weight: int, kind: Kind, current: str | None = None) -> None:
        """Add a group (on ``current``, its recorded node, if any) or update its size and kind."""
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = _Group(weight, kind, stable_hash(key))
            self._dirty.add(key)
            self._attach(key)
            if current is not None:
                self._assign(key, current, record=False)
            return
        if group.weight == weight and group.kind is kind:
            return
        self._detach(key)
        if group.node is not None:
            self._add_load(group.node, weight - group.weight)  # touches the node, also when only its kind changed
        group.weight, group.kind = weight, kind
        self._attach(key)
        self._dirty.add(key)

    def retarget(self, kind: Kind, eligible: Eligibility) -> None:
        """New eligibility for every group of ``kind`` at once."""
        old = kind.eligible
        if old == eligible:
            return
        for node, keys in kind.on.items():
            before, after = _candidates(old.preferred, node), _candidates(eligible.preferred, node)
            if before != after:  # these groups join another candidate set, which may now be out of balance
                self._unfile(before, node, keys)
                self._file(after, node, keys)
                self._touched_nodes.add(node)
            if node not in eligible.nodes:
                self._dirty |= keys
        if eligible.preferred:
            self._dirty |= kind.unplaced
        kind.eligible = eligible
        self._touched_nodes |= old.preferred ^ eligible.preferred

    def remove(self, key: GroupKey) -> None:
        group = self._groups.get(key)
        if group is None:
            return
        self._detach(key)
        if group.node is not None:
            self._add_load(group.node, -group.weight)
        del self._groups[key]
        self._dirty.discard(key)
        self._before.pop(key, None)

    # --- output ---------------------------------------------------------------------------------

    def __contains__(self, key: object) -> bool:
        return key in self._groups

    def node_of(self, key: GroupKey) -> str | None:
        group = self._groups.get(key)
        return None if group is None else group.node

    @property
    def loads(self) -> Mapping[str, int]:
        return self._loads

    def groups(self) -> Iterable[GroupKey]:
        return self._groups.keys()

    def solve(self) -> list[Change]:
        """Unplace groups whose node went, place groups without one, rebalance; say what changed."""
        dirty = sorted(self._dirty)
        self._dirty.clear()
        for key in dirty:
            group = self._groups[key]
            if group.node is not None and group.node not in group.eligible.nodes:
                self._assign(key, None)
        for key in dirty:
            group = self._groups[key]
            if group.node is None and group.eligible.preferred:
                self._assign(key, self._least_loaded(group.eligible.preferred, group.hash))
        self._rebalance()
        changes: list[Change] = []
        for key in sorted(self._before):
            old, group = self._before[key], self._groups[key]
            if old == group.node:
                continue
            if group.node is None:
                move = Move.CLEARED
            elif old is None:
                move = Move.PLACED
            elif old not in group.eligible.nodes:
                move = Move.FAILOVER
            else:
                move = Move.REBALANCED
            changes.append(Change(key, old, group.node, move))
        self._before.clear()
        return changes

    # --- internals ------------------------------------------------------------------------------

    def _entry(self, node: str) -> RingEntry:
        entry = self._ring_entries.get(node)
        if entry is None:
            entry = self._ring_entries[node] = (stable_hash(node), node)
        return entry

    def _least_loaded(self, nodes: frozenset[str], group_hash: int) -> str:
        """The node holding the fewest IPs; among equals, the first at or after ``group_hash`` on the ring."""
        kept = self._sets.get(nodes)
        if kept is not None and kept.by_load is not None:
            every = kept.by_load.every
            return ring_successor(every.at(every.lowest()), group_hash)
        loads = self._loads
        low = min(loads.get(n, 0) for n in nodes)
        return ring_successor(sorted(self._entry(n) for n in nodes if loads.get(n, 0) == low), group_hash)

    def _add_load(self, node: str, delta: int) -> None:
        old = self._loads.get(node, 0)
        load = old + delta
        if load:
            self._loads[node] = load
        else:
            self._loads.pop(node, None)
        self._touched_nodes.add(node)
        for kept in self._sets_of.get(node, ()):
            by_load = kept.by_load
            if by_load is not None:
                entry = self._entry(node)
                by_load.every.move(entry, old, load)
                if node in kept.members:
                    by_load.holding.move(entry, old, load)
                if node in by_load.singles:
                    by_load.light.move(entry, old, load)

    def _assign(self, key: GroupKey, node: str | None, *, record: bool = True) -> None:
        group = self._groups[key]
        if record and key not in self._before:
            self._before[key] = group.node
        self._detach(key)
        if group.node is not None:
            self._add_load(group.node, -group.weight)
        group.node = node
        if node is not None:
            self._add_load(node, group.weight)
        self._attach(key)

    def _attach(self, key: GroupKey) -> None:
        group = self._groups[key]
        if group.node is None:
            group.kind.unplaced.add(key)
            return
        group.kind.on.setdefault(group.node, set()).add(key)
        self._file(group.candidates, group.node, {key})

    def _detach(self, key: GroupKey) -> None:
        group = self._groups[key]
        if group.node is None:
            group.kind.unplaced.discard(key)
            return
        on_node = group.kind.on[group.node]
        on_node.discard(key)
        if not on_node:
            del group.kind.on[group.node]
        self._unfile(group.candidates, group.node, {key})

    def _file(self, nodes: frozenset[str], node: str, keys: set[GroupKey]) -> None:
        """Record ``keys`` as groups on ``node`` whose candidates are ``nodes`` (the rebalancing index)."""
        kept = self._sets.get(nodes)
        if kept is None:
            kept = self._sets[nodes] = self._new_set(nodes)
        by_load = kept.by_load
        on_node = kept.members.get(node)
        if on_node is None:
            on_node = kept.members[node] = set()
            if by_load is not None:
                by_load.holding.add(self._entry(node), self._loads.get(node, 0))
        on_node.update(keys)
        if by_load is not None and (singles := self._singles(keys)):
            before = by_load.singles.get(node, 0)
            by_load.singles[node] = before + singles
            if not before:
                by_load.light.add(self._entry(node), self._loads.get(node, 0))

    def _unfile(self, nodes: frozenset[str], node: str, keys: set[GroupKey]) -> None:
        kept = self._sets[nodes]
        by_load = kept.by_load
        on_node = kept.members[node]
        on_node.difference_update(keys)
        if by_load is not None and (singles := self._singles(keys)):
            left = by_load.singles[node] - singles
            if left:
                by_load.singles[node] = left
            else:
                del by_load.singles[node]
                by_load.light.remove(self._entry(node), self._loads.get(node, 0))
        if not on_node:
            del kept.members[node]
            if by_load is not None:
                by_load.holding.remove(self._entry(node), self._loads.get(node, 0))
        if not kept.members:
            del self._sets[nodes]
            for candidate in nodes:
                sets = self._sets_of[candidate]
                sets.discard(kept)
                if not sets:
                    del self._sets_of[candidate]

    def _singles(self, keys: set[GroupKey]) -> int:
        return sum(1 for key in keys if self._groups[key].weight == 1)

    def _new_set(self, nodes: frozenset[str]) -> _CandidateSet:
        by_load = None
        if len(nodes) >= INDEXED_FROM:
            by_load = _ByLoad(LoadLevels.of((self._entry(n), self._loads.get(n, 0)) for n in nodes))
        kept = _CandidateSet(nodes, tuple(sorted(nodes)), {}, by_load)
        for candidate in nodes:
            self._sets_of.setdefault(candidate, set()).add(kept)
        return kept

    def _rebalance(self) -> None:
        """Move groups off nodes above fair share + 1, only while a move lowers the imbalance. Only the
        candidate sets of nodes whose load or groups changed can break the bound, so only those are looked
        at. Every move lowers the sum of squared loads, so this ends."""
        while self._touched_nodes:
            nodes, self._touched_nodes = self._touched_nodes, set()
            touched = {kept for node in nodes for kept in self._sets_of.get(node, ())}
            for kept in sorted(touched, key=attrgetter("order")):
                if self._sets.get(kept.nodes) is kept:  # not emptied by a move before it
                    self._rebalance_set(kept)

    def _rebalance_set(self, kept: _CandidateSet) -> None:
        size = len(kept.nodes)
        if size < 2:
            return
        if kept.by_load is not None:
            fair = kept.by_load.every.total / size
            highest = kept.by_load.holding.highest()
        else:
            loads = self._loads
            fair = sum(loads.get(n, 0) for n in kept.nodes) / size
            highest = max(loads.get(n, 0) for n in kept.members)
        if highest <= fair + 1:
            return  # the common case: nothing to move, nothing to sort
        while self._move_one(kept, fair):
            pass

    def _sources(self, kept: _CandidateSet, low: int) -> Iterator[str]:
        """The nodes holding groups of ``kept``, the most loaded first (then in ring order), given the least
        loaded holds ``low``; a large set leaves out the nodes two IPs above ``low`` without a one-IP group
        of the set (they have nothing they could give away)."""
        by_load = kept.by_load
        if by_load is not None:
            for load in by_load.holding.loads():
                for _, node in (by_load.light if load - low == 2 else by_load.holding).at(load):
                    yield node
            return
        loads = self._loads
        yield from sorted(kept.members, key=lambda n: (-loads.get(n, 0), self._entry(n)))

    def _lowest_load(self, kept: _CandidateSet) -> int:
        if kept.by_load is not None:
            return kept.by_load.every.lowest()
        return min(self._loads.get(n, 0) for n in kept.nodes)

    def _move_one(self, kept: _CandidateSet, fair: float) -> bool:
        """Move one group of ``kept`` off the most loaded node above ``fair`` + 1 that can give one away.

        The target is the least-loaded node of the set, looked for once, when a group can move: a source,
        above ``fair`` + 1, is never among the least loaded (at most ``fair``). Sources go from the most
        loaded down, so once the room between source and target is one IP no later source can give a group
        away (a group holds one IP or more). Each move returns at once: the order of the sources changed."""
        loads = self._loads
        low = self._lowest_load(kept)  # the least-loaded node's load; that node is looked for only to move a group
        for source in self._sources(kept, low):
            load = loads.get(source, 0)
            if load <= fair + 1:
                return False
            room = load - low
            if room <= 1:
                return False
            movable = [k for k in kept.members[source] if self._groups[k].weight < room]
            if movable:
                target = self._least_loaded(kept.nodes, 0)
                target_hash = self._entry(target)[0]
                self._assign(max(movable, key=lambda k: (self._groups[k].hash ^ target_hash, k)), target)
                return True
        return False


def place(
    groups: Mapping[GroupKey, tuple[int, Eligibility]], current: Mapping[GroupKey, str] | None = None
) -> dict[GroupKey, str | None]:
    """Place ``groups`` (key → (IPs in it, eligibility)) from scratch, or sticking to ``current``."""
    placer = Placer()
    current = current or {}
    kinds: dict[Eligibility, Kind] = {}
    for key in sorted(groups):
        weight, eligible = groups[key]
        kind = kinds.setdefault(eligible, Kind(eligible))
        placer.put(key, weight=weight, kind=kind, current=current.get(key))
    placer.solve()
    return {key: placer.node_of(key) for key in sorted(groups)}
