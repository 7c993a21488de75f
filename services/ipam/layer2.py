"""The decider's L2 bookkeeping: allocations + world + configuration + live announcers → placement events.

Placement rules live in ``placement``; this module keeps what they need up to date and cheap to redo:
which IPs form one group (union of the IPs a Service holds and of the Services holding an IP), each
Service's demand, and the ``Placer``. Groups with equal demands (same advertisements and traffic
policy; for ``Local``, the same endpoint nodes) share one ``Kind``: their eligibility is computed once,
and a liveness or node change re-evaluates each kind, not each group, so a node's death costs about
the number of kinds plus the groups it held. Only groups touched since the last ``settle`` are
reconsidered, and only those that moved (or sit on a node whose selection changed) are compared with
the ledger. Events are emitted only where they differ from the ledger. A standby keeps all this built
(``warm``: each group on its recorded node, nothing solved), so taking over solves and compares only what
changed since. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.events import (
    Event,
    IPAllocated,
    L2PlacementCleared,
    L2PlacementDecided,
    ServiceId,
)
from schemas.metallb import ConfigObject, IPAddressPool, L2Advertisement
from schemas.metallb.rules import NodeFacts, TrafficPolicy, serving_nodes, traffic_policy
from services.common.compact import Compactor
from services.common.subjects import ipam_placement_subject
from services.ipam.core import ServiceKey
from services.ipam.dataplane_rule import Answering
from services.ipam.holdings import Bookkeeping
from services.ipam.ledger import Ledger, Placement
from services.ipam.placement import (
    EMPTY_CONFIG,
    EMPTY_TOPOLOGY,
    Demand,
    L2Config,
    Topology,
    eligibility,
    interfaces,
)
from services.ipam.placer import Change, GroupKey, Kind, Move, Placer
from services.ipam.world import Touched, World

Signature = tuple[Any, ...]


@dataclass(slots=True)
class _IPGroup:
    """IPs held by the same Services, placed together: the IPs, their Services, the Services' demands
    (``signature``, shared by equal groups) and the Kind of nodes that may hold them (None: not over L2).
    One record, not a map each (at 41 700 groups, a map was ~3.8 MB)."""

    ips: tuple[str, ...]
    members: tuple[ServiceKey, ...]
    signature: Signature
    kind: Kind | None = None


class Layer2(Bookkeeping):
    def __init__(self) -> None:
        super().__init__()
        self.live: frozenset[str] = frozenset()
        self.answering: dict[str, Answering] = {}
        self.placer = Placer()
        self._config = EMPTY_CONFIG
        self._topology = EMPTY_TOPOLOGY
        self._facts: dict[str, NodeFacts] = {}
        self._demands: dict[ServiceKey, Demand] = {}
        #: Equal demands, serving node sets and group signatures are kept once (most repeat).
        self._shared = Compactor()
        self._ids: dict[ServiceKey, ServiceId] = {}
        self._group_of: dict[str, GroupKey] = {}
        self._groups: dict[GroupKey, _IPGroup] = {}
        #: one Kind per distinct demand signature (None: not announced over L2), with demands to evaluate it
        self._kinds: dict[Signature, Kind | None] = {}
        self._kind_demands: dict[Signature, list[Demand]] = {}
        self._dirty_nodes: set[str] = set()
        self._live_changed = False
        #: IPs to compare again whatever their Services do: those ``warm`` found differing from the ledger.
        self._unsettled: set[str] = set()
        #: IPs whose recorded placement another replica changed since (their groups are redone from the ledger).
        self._followed: set[str] = set()

    # --- what changed -----------------------------------------------------------------------------

    def set_live(self, live: frozenset[str], answering: Mapping[str, Answering] | None = None) -> None:
        """The live announcers, and (when given) what those that do not answer anything answer on."""
        if live != self.live:
            self.live = live
            self._live_changed = True
        if answering is not None and answering != self.answering:
            self.answering = dict(answering)
            self._live_changed = True

    def _configure(self, objects: tuple[ConfigObject, ...]) -> bool:
        config = L2Config(
            (o for o in objects if isinstance(o, L2Advertisement)), (o for o in objects if isinstance(o, IPAddressPool))
        )
        if config == self._config:  # a BGPPeer, a pool's range, a re-delivery: nothing to redo here
            return False
        self._config = config
        return True

    def touch(self, change: Touched) -> None:
        if self.active or self._warm:  # else taking over looks at everything anyway
            super().touch(change)
            self._dirty_nodes |= change.nodes

    # --- following (a standby) ------------------------------------------------------------------

    def followed(self, event: Event) -> None:
        """A decision another replica appended was folded into the ledger (a standby following the stream)."""
        if not self._warm:
            return  # the first ``warm`` looks at everything
        if isinstance(event, L2PlacementDecided | L2PlacementCleared):
            self._followed.add(event.ip)
        else:
            self.recorded(event)

    def warm(self, world: World, ledger: Ledger, objects: tuple[ConfigObject, ...], live: frozenset[str],
             answering: Mapping[str, Answering] | None = None) -> None:
        """A standby's hook (off the loop, as often as it likes): bring the groups, demands, kinds and eligibility
        up to date with the ledger and the world (everything the first time, then what changed since), each group
        in the placer on its recorded node, and remember the IPs whose recorded placement differs from what the
        rules say for that node. Nothing is solved or decided: taking over then solves (a group on its recorded
        node stays there while eligible) and compares only those IPs and what changed afterwards."""
        self.set_configuration(objects)
        self.set_live(live, answering)
        if not self._warm:
            self._everything = True
        self._warm = True
        check, _ = self._reconsider(world, ledger, solve=False)
        self._unsettled = {ip for ip in check if self._difference(ip, ledger, {}) is not None}

    # --- deciding -------------------------------------------------------------------------------

    def settle(self, world: World, ledger: Ledger) -> list[tuple[str, Event]]:
        """The placement events that bring the ledger to what the rules want now."""
        if not self.active:
            return []
        check, changes = self._reconsider(world, ledger, solve=True)
        return [out for ip in check if (out := self._difference(ip, ledger, changes)) is not None]

    def _reconsider(self, world: World, ledger: Ledger, *, solve: bool) -> tuple[list[str], dict[GroupKey, Change]]:
        """Bring the groups up to date with what changed since the last call and (``solve``) place them; the IPs
        whose placement may now differ from the ledger, in order, and the groups that moved."""
        if not (self._config.advertisements or ledger.placements or self._holdings):
            # Nothing is announced over L2 (BGP only) and nothing was: no groups to keep. Whatever
            # ends this (L2Advertisements, a placement in the ledger) recomputes everything.
            self._dirty_services.clear()
            self._dirty_nodes.clear()
            self._unsettled.clear()
            self._followed.clear()
            self._everything = True
            return [], {}
        check, self._unsettled = self._unsettled, set()
        everything, self._everything = self._everything, False
        if everything:
            self._dirty_services |= self._holdings.services() | ledger.allocations.keys()
            self._dirty_nodes |= self._facts.keys() | world.nodes.keys()
            check |= ledger.placements.keys()
        moved_nodes = self._refresh_topology(world, force=everything)
        regrouped, affected = self._regroup(world, ledger)
        check |= affected
        if moved_nodes is not None:
            self._retarget()
        changes = {change.group: change for change in self.placer.solve()} if solve else {}
        check.update(ip for key in regrouped if key in self._groups for ip in self._groups[key].ips)
        check.update(ip for key in changes for ip in self._groups[key].ips)
        if moved_nodes:
            on_moved = (group.ips for key, group in self._groups.items() if self.placer.node_of(key) in moved_nodes)
            check.update(ip for ips in on_moved for ip in ips)
        return sorted(check), changes

    def _refresh_topology(self, world: World, *, force: bool) -> set[str] | None:
        """Rebuild the topology if nodes or liveness changed; the nodes whose selection changed."""
        changed = False
        for name in self._dirty_nodes:
            node = world.nodes.get(name)
            facts = None if node is None else NodeFacts(name, dict(node.labels), node.network_unavailable)
            if facts != self._facts.get(name):
                changed = True
                if facts is None:
                    del self._facts[name]
                else:
                    self._facts[name] = facts
        self._dirty_nodes.clear()
        if not (changed or force or self._live_changed):
            return None
        self._live_changed = False
        old, self._topology = self._topology, Topology(self._config, self._facts.values(), self.live, self.answering)
        if force or old.config is not self._config:
            return set(self._facts) | set(old.usable)
        moved = set(old.usable ^ self._topology.usable)
        for before, after in zip(old.preference, self._topology.preference, strict=True):
            moved |= {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
        for before_nodes, after_nodes in zip(old.selected, self._topology.selected, strict=True):
            moved |= before_nodes ^ after_nodes
        return moved

    def _regroup(self, world: World, ledger: Ledger) -> tuple[set[GroupKey], set[str]]:
        """Recompute the demands of touched Services and the groups of their IPs; the groups redone and
        every IP concerned."""
        # a placement another replica recorded: its group is put again on the recorded node
        affected, self._followed = self._followed, set()
        for key in self._dirty_services:
            old_ips, new_ips = self._holdings.refresh(key, ledger)
            affected.update(old_ips, new_ips)
            self._demands.pop(key, None)
            self._ids.pop(key, None)
            allocation = ledger.allocations.get(key)
            if allocation is None:
                continue
            self._ids[key] = allocation.service
            self._demands[key] = self._demand(key, allocation, world)
        self._dirty_services.clear()
        for ip in list(affected):
            group = self._group_of.get(ip)
            if group is not None:
                affected.update(self._groups[group].ips)
        for ip in affected:
            group = self._group_of.pop(ip, None)
            if group is not None and group in self._groups:
                del self._groups[group]
                self.placer.remove(group)
        redone: set[GroupKey] = set()
        for ip in sorted(affected):
            if ip in self._group_of or not self._holdings.held(ip):
                continue
            ips, services = self._component(ip)
            group = ips[0]
            redone.add(group)
            signature = self._shared.shared(tuple(self._demands[s].signature() for s in services))
            self._groups[group] = _IPGroup(ips, services, signature)
            for member in ips:
                self._group_of[member] = group
            self._evaluate(group, ledger)
        return redone, affected

    def _component(self, start: str) -> tuple[tuple[str, ...], tuple[ServiceKey, ...]]:
        ips: set[str] = {start}
        services: set[ServiceKey] = set()
        frontier = [start]
        while frontier:
            for service in self._holdings.holders(frontier.pop()):
                if service not in services:
                    services.add(service)
                    fresh = [ip for ip in self._holdings.ips_of(service) if ip not in ips]
                    ips.update(fresh)
                    frontier.extend(fresh)
        return tuple(sorted(ips)), tuple(sorted(services))

    def _demand(self, key: ServiceKey, allocation: IPAllocated, world: World) -> Demand:
        service = world.services.get(key)
        endpoints = world.endpoints.get(key)
        policy = traffic_policy(service.external_traffic_policy if service else None)
        return self._shared.shared(Demand(
            advertisements=self._config.selecting(allocation.pool, service.labels if service else {}),
            local=policy is TrafficPolicy.LOCAL,
            serving=self._shared.shared(serving_nodes(endpoints.nodes)) if endpoints else frozenset(),
        ))

    def _evaluate(self, key: GroupKey, ledger: Ledger) -> None:
        group = self._groups[key]
        signature = group.signature
        if signature not in self._kinds:
            demands = [self._demands[s] for s in group.members]
            eligible = eligibility(demands, self._topology)
            self._kinds[signature] = None if eligible is None else Kind(eligible)
            self._kind_demands[signature] = demands
        kind = group.kind = self._kinds[signature]
        if kind is None:
            self.placer.remove(key)
            return
        current = None if key in self.placer else self._recorded_node(key, ledger)
        self.placer.put(key, weight=len(group.ips), kind=kind, current=current)

    def _retarget(self) -> None:
        """The topology changed: new eligibility once per kind (kinds nobody uses any more go)."""
        for signature, kind in list(self._kinds.items()):
            if kind is None:
                continue  # not over L2: depends on the configuration only
            if not kind:
                del self._kinds[signature], self._kind_demands[signature]
                continue
            eligible = eligibility(self._kind_demands[signature], self._topology)
            assert eligible is not None
            self.placer.retarget(kind, eligible)

    def _recorded_node(self, key: GroupKey, ledger: Ledger) -> str | None:
        for ip in self._groups[key].ips:
            placement = ledger.placements.get(ip)
            if placement is not None:
                return placement.decision.node
        return None

    def _difference(self, ip: str, ledger: Ledger, changes: dict[GroupKey, Change]) -> tuple[str, Event] | None:
        recorded = ledger.placements.get(ip)
        group = self._group_of.get(ip)
        node = None if group is None else self.placer.node_of(group)
        if group is None or node is None:
            if recorded is None:
                return None
            if group is None:
                why = "Released: no Service holds the IP"
            elif (found := self._groups.get(group)) is None or found.kind is None:
                why = "NotAdvertised: no L2Advertisement selects its pool and Services"
            else:
                why = f"{Move.CLEARED.value}: no live, eligible node"
            return ipam_placement_subject(ip), L2PlacementCleared(ip=ip, reason=why)
        services = self._groups[group].members
        demands = [self._demands[s] for s in services]
        wanted = tuple(self._ids[s] for s, d in zip(services, demands, strict=True) if d.wants)
        names = interfaces(demands, self._topology, node)
        if recorded is not None:
            decision = recorded.decision
            if (decision.node, decision.services, decision.interfaces) == (node, wanted, names):
                return None
        event = L2PlacementDecided(
            ip=ip, node=node, services=wanted, interfaces=names, reason=self._reason(changes.get(group), recorded, node)
        )
        return ipam_placement_subject(ip), event

    def _reason(self, change: Change | None, recorded: Placement | None, node: str) -> str:
        if change is None and recorded is not None and recorded.decision.node == node:
            return f"Updated: {node} keeps it; its Services or interfaces changed"
        if change is None or change.old is None:
            return f"{Move.PLACED.value}: {node} (least loaded eligible node, or where its group is)"
        if change.move is Move.FAILOVER:
            return f"{Move.FAILOVER.value}: {self._topology.why_not(change.old)}; moved to {node}"
        if change.move is Move.REBALANCED:
            return f"{Move.REBALANCED.value}: {change.old} held more than its fair share + 1; moved to {node}"
        return f"{change.move.value}: {node}"

    def eligible(self, ip: str) -> frozenset[str] | None:
        """The nodes eligible for ``ip``'s group now (None: not announced over L2)."""
        group = self._group_of.get(ip)
        found = None if group is None else self._groups.get(group)
        kind = None if found is None else found.kind
        return None if kind is None else kind.eligible.nodes

    def placed(self) -> Iterable[tuple[GroupKey, str]]:
        for key in self._groups:
            node = self.placer.node_of(key)
            if node is not None:
                yield key, node
