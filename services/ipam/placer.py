"""L2 placement, the choice: which eligible node each IP group goes on. Pure: no I/O, no clock, deterministic.

The rules (``Placer``):
  1. Sticky: a group stays on its node while that node stays eligible.
  2. Otherwise among the eligible nodes with the highest ``preferredNodeSelectors`` weight (the best
     matching advertisement's sum of matched weights; all nodes tie when nobody prefers), the one holding
     the fewest IPs; ties go to the highest stable hash of the group xor the node, so equal clusters spread alike.
  3. Rebalancing, the one exception to stickiness: a group's *candidates* are its preferred nodes plus its
     current node, and their *fair share* is the mean number of IPs they hold. A group moves to its
     least-loaded candidate only when its node holds more than fair share + 1 *and* the move lowers the
     imbalance (target + group size < source). It stops as soon as no such move is left, so after every
     ``solve`` no node holds more than fair share + 1 of the IPs it is eligible for (fair share + the group
     size for the rare two-IP groups), and no IP moves that this bound does not require.

Groups with equal demands share a ``Kind``: a change of their eligibility is applied once per kind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from services.ipam.placement import Eligibility

GroupKey = str  # the group's lowest IP (text order)


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


def _class(preferred: frozenset[str], node: str) -> frozenset[str]:
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
        return preferred if self.node is None or self.node in preferred else preferred | {self.node}


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
        self._node_hash: dict[str, int] = {}
        #: candidate set → node → groups on that node with that candidate set (for rebalancing)
        self._members: dict[frozenset[str], dict[str, set[GroupKey]]] = {}
        self._classes_of: dict[str, set[frozenset[str]]] = {}
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
            self._add_load(group.node, weight - group.weight)
        group.weight, group.kind = weight, kind
        self._attach(key)
        self._dirty.add(key)

    def retarget(self, kind: Kind, eligible: Eligibility) -> None:
        """New eligibility for every group of ``kind`` at once."""
        old = kind.eligible
        if old == eligible:
            return
        for node, keys in kind.on.items():
            before, after = _class(old.preferred, node), _class(eligible.preferred, node)
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
        touched = {self._groups[key].candidates for key in dirty}  # few distinct sets: union those
        self._rebalance(set().union(*touched))
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

    def _hash_of(self, node: str) -> int:
        value = self._node_hash.get(node)
        if value is None:
            value = self._node_hash[node] = stable_hash(node)
        return value

    def _least_loaded(self, nodes: Iterable[str], group_hash: int) -> str:
        """The node holding the fewest IPs; among equals, the highest hash of (group, node)."""
        loads = self._loads
        low = min(loads.get(n, 0) for n in nodes)
        ties = [n for n in nodes if loads.get(n, 0) == low]
        if len(ties) == 1:
            return ties[0]
        return max(ties, key=lambda n: (group_hash ^ self._hash_of(n), n))

    def _add_load(self, node: str, delta: int) -> None:
        load = self._loads.get(node, 0) + delta
        if load:
            self._loads[node] = load
        else:
            self._loads.pop(node, None)
        self._touched_nodes.add(node)

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

    def _file(self, cls: frozenset[str], node: str, keys: set[GroupKey]) -> None:
        """Record ``keys`` as groups on ``node`` whose candidates are ``cls`` (the rebalancing index)."""
        members = self._members.get(cls)
        if members is None:
            members = self._members[cls] = {}
            for candidate in cls:
                self._classes_of.setdefault(candidate, set()).add(cls)
        members.setdefault(node, set()).update(keys)

    def _unfile(self, cls: frozenset[str], node: str, keys: set[GroupKey]) -> None:
        members = self._members[cls]
        on_node = members[node]
        on_node.difference_update(keys)
        if not on_node:
            del members[node]
        if not members:
            del self._members[cls]
            for candidate in cls:
                classes = self._classes_of[candidate]
                classes.discard(cls)
                if not classes:
                    del self._classes_of[candidate]

    def _rebalance(self, nodes: set[str]) -> None:
        """Move groups off nodes above fair share + 1, only while a move lowers the imbalance. Only the
        candidate sets of nodes whose load or membership changed can break the bound, so only those are
        looked at. Every move lowers the sum of squared loads, so this ends."""
        nodes |= self._touched_nodes
        self._touched_nodes = set()
        while nodes:
            classes = {cls for node in nodes for cls in self._classes_of.get(node, ())}
            for cls in sorted(classes, key=sorted):
                self._rebalance_class(cls)
            nodes, self._touched_nodes = self._touched_nodes, set()

    def _rebalance_class(self, cls: frozenset[str]) -> None:
        loads = self._loads
        if len(cls) < 2:
            return
        members = self._members.get(cls)
        if not members:
            return
        fair = sum(loads.get(n, 0) for n in cls) / len(cls)
        if max(loads.get(n, 0) for n in members) <= fair + 1:
            return  # the common case: nothing to move, nothing to sort
        while self._move_one(cls, fair):
            pass

    def _move_one(self, cls: frozenset[str], fair: float) -> bool:
        """Move one group of ``cls`` off the most loaded node above ``fair`` + 1 that can give one away.

        The target is the least-loaded node of ``cls``, looked for once, when a group can move: a source,
        above ``fair`` + 1, is never among the least loaded (at most ``fair``). Sources go from the most
        loaded down, so once the room between source and target is one IP no later source can give a group
        away (a group holds one IP or more). At 5 000 nodes, looking for the target again for each source
        (every node holding a dual-stack pair is above fair + 1 while fair is below one, and cannot give it
        away) cost ~5 ms per source per solve: minutes for a cold start's endpoints."""
        loads = self._loads
        members = self._members.get(cls, {})
        low: int | None = None  # the least-loaded node's load; that node is looked for only to move a group
        for source in sorted(members, key=lambda n: (-loads.get(n, 0), n)):
            load = loads.get(source, 0)
            if load <= fair + 1:
                return False
            if low is None:
                low = min(loads.get(n, 0) for n in cls)
            room = load - low
            if room <= 1:
                return False
            movable = [k for k in members[source] if self._groups[k].weight < room]
            if movable:
                target = self._least_loaded(cls, 0)
                target_hash = self._hash_of(target)
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
