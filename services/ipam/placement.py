"""L2 placement: which one node answers ARP/NDP for each IP. Pure: no I/O, no clock, deterministic.

The unit of placement is a *group* of IPs that must stay on one node: the IPs of one Service (a
dual-stack pair) and every IP shared between Services, closed transitively. The rules:

Eligible nodes (``eligibility``)
  A node is *usable* when its announcer is live, Kubernetes knows the node, the node is not
  ``NetworkUnavailable`` and does not carry ``node.kubernetes.io/exclude-from-external-load-balancers``.
  A Service *wants* its IPs announced when an L2Advertisement selects its pool (``ipAddressPools`` /
  ``ipAddressPoolSelectors``; neither selects every pool) and the Service (``serviceSelectors``), and it
  has a serving endpoint somewhere. A node is eligible for a Service when it is usable and one of those
  advertisements selects it (``nodeSelectors``) and, for ``externalTrafficPolicy: Local``, a serving
  endpoint runs on it. A node is eligible for a group when it is eligible for every Service of the group
  that wants it; Services without a serving endpoint do not hold the shared IP back. A group none of whose
  Services has an L2Advertisement gets no placement at all (a BGP-only pool).

Choice (``Placer``)
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

Interfaces: the union of the ``interfaces`` of the wanting Services' advertisements that select the chosen
node; empty (every interface) when one of them names none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from schemas.metallb import IPAddressPool, L2Advertisement

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"

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


@dataclass(frozen=True, slots=True)
class NodeFacts:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    network_unavailable: bool = False

    @property
    def usable(self) -> bool:
        return not self.network_unavailable and EXCLUDE_LABEL not in self.labels


class L2Config:
    """The L2 side of a configuration: the L2Advertisements (in name order) and the pools' labels."""

    def __init__(self, advertisements: Iterable[L2Advertisement], pools: Iterable[IPAddressPool]) -> None:
        self.advertisements = tuple(
            sorted(advertisements, key=lambda a: (a.metadata.namespace or "", a.metadata.name))
        )
        self.pool_labels: dict[str, Mapping[str, str]] = {p.metadata.name: p.metadata.labels for p in pools}

    def __eq__(self, other: object) -> bool:
        """Equal when placement would see no difference (other kinds and fields do not matter)."""
        if not isinstance(other, L2Config):
            return NotImplemented
        return (
            tuple(a.spec for a in self.advertisements) == tuple(a.spec for a in other.advertisements)
            and {k: dict(v) for k, v in self.pool_labels.items()} == {k: dict(v) for k, v in other.pool_labels.items()}
        )

    __hash__ = None  # type: ignore[assignment]

    def selecting(self, pool: str, service_labels: Mapping[str, str]) -> tuple[int, ...]:
        """Indices of the advertisements that select ``pool`` and a Service with ``service_labels``."""
        labels = self.pool_labels.get(pool, {})
        return tuple(
            index
            for index, ad in enumerate(self.advertisements)
            if ad.spec.selects_pool(pool, labels) and ad.spec.selects_service(service_labels)
        )


EMPTY_CONFIG = L2Config((), ())


class Topology:
    """Which usable nodes each advertisement selects, and how much each prefers them."""

    def __init__(self, config: L2Config, nodes: Iterable[NodeFacts], live: frozenset[str]) -> None:
        self.config = config
        known = {node.name: node for node in nodes}
        self.live = live
        self.known = frozenset(known)
        self.usable = frozenset(name for name, node in known.items() if name in live and node.usable)
        ordered = sorted(self.usable)
        self.selected: tuple[frozenset[str], ...] = tuple(
            frozenset(n for n in ordered if ad.spec.selects_node(known[n].labels)) for ad in config.advertisements
        )
        self.preference: tuple[dict[str, int], ...] = tuple(
            {n: w for n in self.selected[i] if (w := ad.spec.node_preference(known[n].labels))}
            for i, ad in enumerate(config.advertisements)
        )

    def why_not(self, node: str) -> str:
        """Plain words for why ``node`` cannot answer (for the reason of a failover)."""
        if node not in self.live:
            return f"{node} is not live"
        if node not in self.known:
            return f"{node} is not a known node"
        if node not in self.usable:
            return f"{node} is unavailable or excluded"
        return f"{node} is no longer eligible"


EMPTY_TOPOLOGY = Topology(EMPTY_CONFIG, (), frozenset())


@dataclass(frozen=True, slots=True)
class Demand:
    """One Service's claim on its IPs, as placement needs it."""

    advertisements: tuple[int, ...]
    """The advertisements selecting its pool and the Service (none: it is not announced over L2)."""
    local: bool
    """``externalTrafficPolicy: Local``."""
    serving: frozenset[str]
    """Nodes with a serving endpoint of the Service."""

    @property
    def l2(self) -> bool:
        return bool(self.advertisements)

    @property
    def wants(self) -> bool:
        return bool(self.advertisements) and bool(self.serving)

    def signature(self) -> tuple[tuple[int, ...], bool, frozenset[str] | bool]:
        """What eligibility depends on: Services with equal signatures are eligible on the same nodes."""
        return self.advertisements, self.local, self.serving if self.local else bool(self.serving)


@dataclass(frozen=True, slots=True)
class Eligibility:
    nodes: frozenset[str]
    """Every eligible node."""
    preferred: frozenset[str]
    """The eligible nodes of the highest preference (all of them when nothing is preferred)."""


NOWHERE = Eligibility(frozenset(), frozenset())


def eligibility(demands: Sequence[Demand], topology: Topology) -> Eligibility | None:
    """Where a group may be placed; None when none of its Services is announced over L2."""
    if not any(d.l2 for d in demands):
        return None
    nodes: frozenset[str] | None = None
    wanting = [d for d in demands if d.wants]
    for demand in wanting:
        own = frozenset().union(*(topology.selected[a] for a in demand.advertisements))
        if demand.local:
            own &= demand.serving
        nodes = own if nodes is None else nodes & own
    if not nodes:
        return NOWHERE
    ads = sorted({a for d in wanting for a in d.advertisements})
    scores = {n: max((topology.preference[a].get(n, 0) for a in ads), default=0) for n in nodes}
    best = max(scores.values())
    return Eligibility(nodes, frozenset(n for n, s in scores.items() if s == best))


def interfaces(demands: Sequence[Demand], topology: Topology, node: str) -> tuple[str, ...]:
    """The interfaces ``node`` answers on for a group: the union over the advertisements that apply there."""
    names: set[str] = set()
    for a in sorted({a for d in demands if d.wants for a in d.advertisements}):
        if node in topology.selected[a]:
            listed = topology.config.advertisements[a].spec.interfaces
            if not listed:
                return ()
            names.update(listed)
    return tuple(sorted(names))


# --- the choice -------------------------------------------------------------------------------


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
            if before != after:
                self._unfile(before, node, keys)
                self._file(after, node, keys)
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
        """Move one group of ``cls`` off the most loaded node above ``fair`` + 1 that can give one away."""
        loads = self._loads
        members = self._members.get(cls, {})
        for source in sorted(members, key=lambda n: (-loads.get(n, 0), n)):
            load = loads.get(source, 0)
            if load <= fair + 1:
                return False
            target = self._least_loaded(cls - {source}, 0)
            room = load - loads.get(target, 0)
            movable = [k for k in members[source] if self._groups[k].weight < room]
            if movable:
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
