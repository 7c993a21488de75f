"""The ipam's decisions: observed world + its own ledger + the allocator → events to append. Pure.

The decider is level-triggered: for every Service it touches it computes what the Service should
hold and emits an event only where that differs from what the ledger (the IPAM stream) already says.
Re-delivered or replayed input therefore produces no new event. Every event it emits is folded into
the ledger at once with the stream sequence it must get (``Outgoing.sequence``); the shell appends
with exactly that expected sequence, so a replica that is no longer the only writer cannot append.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.events import ConfigProblem, Event, EventId, InForceSlot, ReleaseReason, ServiceObserved
from schemas.events.in_force import bounded_problems, split_in_force
from schemas.metallb import (
    ConfigObject,
    InvalidConfigObject,
    IPAddressPool,
    local_pref_conflicts,
    parse_config_object,
    validate_configuration,
)
from schemas.metallb.validation import ConfigProblem as ValidationProblem
from services.common.subjects import (
    IPAM_CONFIG_SUBJECT,
    ipam_allocation_subject,
    ipam_config_part_subject,
    ipam_pool_subject,
)
from services.ipam import core, events
from services.ipam.adapters import pool_spec, raw_service
from services.ipam.bgp import BGPDecisions
from services.ipam.core.pools import validate_pools
from services.ipam.core.requests import parse_ip
from services.ipam.dataplane_rule import Answering
from services.ipam.layer2 import Layer2
from services.ipam.ledger import Ledger, apply
from services.ipam.warm_allocator import WarmAllocator
from services.ipam.world import Touched, World, incomplete


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event to append, and the stream sequence it must land at."""

    subject: str
    event: Event
    sequence: int
    causation_id: EventId | None


@dataclass(frozen=True, slots=True)
class Configuration:
    """A valid configuration: its objects, and their digest."""

    objects: tuple[ConfigObject, ...]
    digest: str

    @property
    def pools(self) -> list[core.PoolSpec]:
        return [pool_spec(o) for o in self.objects if isinstance(o, IPAddressPool)]


EMPTY_CONFIGURATION = Configuration((), "")


class Decider:
    def __init__(self, *, load_balancer_class: str | None = None) -> None:
        self.load_balancer_class = load_balancer_class
        self.world = World()
        self.ledger = Ledger()
        self.allocator = core.Allocator()
        self.configuration = EMPTY_CONFIGURATION
        self._installed: Configuration | None = None
        self._pending: list[Outgoing] = []
        self._cause: EventId | None = None
        self._parsed: dict[core.ServiceKey, core.ParsedService] | None = None
        self._configuration_changed = False
        self._configuration_cause: EventId | None = None
        #: Nodes observed since the last placement (``defer_to_batch``), and the observation that came first.
        self._nodes_changed = False
        self._nodes_cause: EventId | None = None
        #: the observed configuration objects last judged, and the part of the verdict that depends on the nodes
        self._judged: tuple[list[ConfigObject], tuple[ValidationProblem, ...]] = ([], ())
        self.layer2 = Layer2()
        self.bgp = BGPDecisions()
        #: The configuration in force ``warm`` last parsed.
        self._warmed_with: Configuration | None = None
        #: A standby's allocator kept adopted to the ledger by ``warm`` (taken over by ``adopt``), and the
        #: observed configuration and the one in force it was built for.
        self._warm_allocator: WarmAllocator | None = None
        self._warm_for: tuple[str, str] = ("", "")
        #: Why the world cannot be decided on now (``world.incomplete``): while set, observations are folded
        #: and nothing is decided; the observation that completes the world re-adopts and decides it whole.
        self.waiting_for: str | None = None

    # --- loading (any replica) --------------------------------------------------------------

    def load_decision(self, event: Event, sequence: int) -> None:
        """Fold one event of the IPAM stream (replay, or following the active replica)."""
        apply(self.ledger, event, sequence)
        self.layer2.followed(event)
        self.bgp.followed(event)
        if self._warm_allocator is not None and isinstance(event, events.AllocationEvent):
            self._warm_allocator.changed((core.service_key(event.service.namespace, event.service.name),))

    def skip_to(self, sequence: int) -> None:
        """The stream holds messages up to ``sequence`` even if some could not be folded (invalid)."""
        self.ledger.last_sequence = max(self.ledger.last_sequence, sequence)

    def load_observation(self, event: Event) -> None:
        """Fold one observed event without deciding (the world before activation)."""
        change = self._observed(event)
        self.layer2.touch(change)
        self.bgp.touch(change)

    def _observed(self, event: Event) -> Touched:
        """``event`` folded into the world; what it touched (told to a standby's allocator too)."""
        change = self.world.apply(event)
        if self._warm_allocator is not None and change.services:
            self._warm_allocator.changed(change.services - change.shows_more)
            for key in change.shows_more:
                self._warm_allocator.shows_more(key, self.world.services[key])
        return change

    def warm(self, live: frozenset[str] | None = None, answering: Mapping[str, Answering] | None = None) -> None:
        """On a standby, as often as it likes (off the loop, while nothing else touches the decider): compare
        the BGP decisions the rules want with the ledger for what changed since the last call, so that taking
        over compares only what changed since, not every IP (``BGPDecisions.warm``); keep the L2 groups and
        their eligibility (for the announcers ``live`` now and what they answer on, ``answering``, if given)
        built from the ledger's placements (``Layer2.warm``). Deciding nothing, it appends nothing; the
        configuration in force is parsed again only when it changes."""
        if self._warmed_with is None or self._warmed_with.digest != self.ledger.in_force.generation:
            self._warmed_with = self._recorded_configuration()
        objects = self._warmed_with.objects
        self.layer2.warm(self.world, self.ledger, objects, self.layer2.live if live is None else live, answering)
        self.bgp.warm(self.world, self.ledger, objects)
        self._warm_allocations()

    def _warm_allocations(self) -> None:
        """Keep an allocator adopted to the ledger, with the pools ``adopt`` would install now (evaluated
        again only when the observed configuration or the one in force changes)."""
        built_for = (_digest(self.world.config.values()), self.ledger.in_force.generation)
        warm = self._warm_allocator
        if warm is None or self._warm_for != built_for:
            candidate, _ = self._evaluate_configuration(in_force=self._recorded_configuration())
            warm = self._warm_allocator = WarmAllocator(built_for=candidate, pools=candidate.pools)
            self._warm_for = built_for
        warm.follow(self.ledger, self.world, self._parse_with)

    # --- deciding (the active replica) ------------------------------------------------------

    def activate(self) -> list[Outgoing]:
        """Take over: configuration first, then re-adopt every recorded allocation, and only then
        decide for Services still without one. No address moves because of a restart."""
        self.adopt()
        return self.start_placing()

    def adopt(self) -> None:
        """The allocation half of ``activate``; its events wait for ``start_placing`` (the shell
        listens to the announcers meanwhile). On an incomplete world it does nothing but say so
        (``waiting_for``): nothing is released, allocated or recorded until the world is complete.

        Services whose status shows addresses are decided before the others, so that after a loss of the
        decisions (or coming from MetalLB) each keeps what it shows before anything new is allocated."""
        self._configuration_changed = self._nodes_changed = False  # evaluated below with everything observed
        self.waiting_for = self._incomplete()
        if self.waiting_for is not None:
            return
        self.configuration = self._recorded_configuration()
        warm, self._warm_allocator = self._warm_allocator, None
        adopted: dict[core.ServiceKey, core.ServiceRequest] = {}
        quiet: set[core.ServiceKey] = set()
        candidate, _ = self._evaluate_configuration(in_force=self.configuration)
        if warm is not None and warm.built_for == candidate:
            # a standby kept warm: its allocator holds the pools about to be installed and what it adopted
            warm.follow(self.ledger, self.world, self._parse_with)
            self.allocator, self._installed = warm.allocator, candidate
            adopted = {key: a.request for key, a in warm.adopted.items()}
            quiet = warm.quiet() - self.ledger.failures.keys()
        else:
            self.allocator, self._installed = core.Allocator(), None
        self._reconfigure(reconcile=False)
        # the world does not change until the end of adoption: parse each Service once
        self._parsed = dict[core.ServiceKey, core.ParsedService](adopted)
        try:
            doomed = self._readopt(skip=adopted.keys())
            for key in sorted(doomed, key=self._shown_first):
                self._reconcile(key)
            # a failure whose Service went meanwhile is withdrawn; a quiet adoption would decide nothing
            for key in sorted(self.world.services.keys() - quiet | self.ledger.failures.keys(), key=self._shown_first):
                self._reconcile(key)
        finally:
            self._parsed = None

    def start_placing(self, live: frozenset[str] | None = None,
                      answering: Mapping[str, Answering] | None = None) -> list[Outgoing]:
        """The placement half of ``activate`` (for the nodes ``live`` now and what they answer on, if given):
        every L2 placement, pool usage, and what ``adopt`` decided."""
        if live is not None:
            self.layer2.set_live(live, answering)
        if self.waiting_for is not None:
            return []
        self.layer2.activate(self.configuration.objects)
        self.bgp.activate(self.configuration.objects)
        self._place()
        self._report_usage()
        return self._drain()

    def observe(
        self, event: Event, *, cause: EventId | None = None, defer_to_batch: bool = False
    ) -> list[Outgoing]:
        """Fold one observed event in and decide what it changes (pool usage: see ``report_usage``).

        ``defer_to_batch``: a configuration change, or a Node's, is decided with the next observation that
        is not one, or by ``report_usage`` at the batch's end, so a burst of thousands of metallb.io objects
        or Nodes is evaluated once, not once per object (each Node rebuilds the L2 topology: at 5 000 nodes
        a list of them decided one by one was minutes of work)."""
        change = self._observed(event)
        if self.waiting_for is not None or change.listing:
            return self._while_listing(change)
        if change.configuration and defer_to_batch:
            self._configuration_cause = cause
            self._configuration_changed = True
            return []
        if change.nodes and not change.configuration:
            if not self._nodes_changed:
                self._nodes_changed, self._nodes_cause = True, cause
            if defer_to_batch and change == Touched(nodes=change.nodes):
                self.layer2.touch(change)
                return []
        outgoing = self.decide_configuration()
        self._cause = cause
        if change.configuration:
            self._configuration_changed = False
            self._reconfigure(reconcile=True)
        for key in sorted(change.services - self._holding_and_shown(change)):
            self._reconcile(key)
        self.layer2.touch(change)
        self.bgp.touch(change)
        self._set_configuration()
        self._place()
        self._cause = None
        return outgoing + self._drain()

    def _holding_and_shown(self, change: Touched) -> set[core.ServiceKey]:
        """The Services ``change`` shows only more of (the status writer's own write, observed again) that hold
        addresses: deciding them again would keep what they hold and append nothing (the allocator reads a
        status's addresses only for a Service holding none), so they are not (50 000 in a cold start, twice)."""
        return {key for key in change.shows_more if self.allocator.holds(key)}

    def _while_listing(self, change: Touched) -> list[Outgoing]:
        """An observation while the world is incomplete, or a list mark: folded; decided only once the
        world is complete, and then whole (re-adopted and placed, as on taking over)."""
        self.layer2.touch(change)
        self.bgp.touch(change)
        reason = self._incomplete()
        if reason is not None or self.waiting_for is None:
            self.waiting_for = reason
            return []
        self.adopt()
        return self.start_placing()

    def _incomplete(self) -> str | None:
        ledger = self.ledger
        return incomplete(self.world, decided_before=bool(ledger.allocations or ledger.in_force.objects))

    def _shown_first(self, key: core.ServiceKey) -> tuple[bool, str]:
        """Services whose status shows addresses first (they keep them), then by key."""
        service = self.world.services.get(key)
        return (service is None or not service.ingress_ips, key)

    def decide_configuration(self) -> list[Outgoing]:
        """Decide the configuration and Node changes deferred by ``observe`` (nothing if there are none)."""
        if self.waiting_for is not None:
            return []
        nodes_changed, self._nodes_changed = self._nodes_changed, False
        if nodes_changed and not self._configuration_changed and self._node_verdict_changed():
            self._configuration_changed = True  # judged again: the nodes advertisements select changed
            self._configuration_cause = self._nodes_cause
        if not self._configuration_changed:
            if not nodes_changed:
                return []
            self._cause = self._nodes_cause
            self._place()
            self._cause = None
            return self._drain()
        self._configuration_changed = False
        self._cause = self._configuration_cause
        self._reconfigure(reconcile=True)
        self._set_configuration()
        self._place()
        self._cause = None
        return self._drain()

    def set_live_nodes(self, live: frozenset[str], answering: Mapping[str, Answering] | None = None
                       ) -> list[Outgoing]:
        """The nodes whose announcers are live now (and, if given, what they answer on:
        ``services.ipam.dataplane_rule``); placements they change (none before activation, nor while the world
        is incomplete)."""
        self.layer2.set_live(live, answering)
        if self.waiting_for is not None:
            return []
        self._place()
        return self._drain()

    def report_usage(self) -> list[Outgoing]:
        """Pool usage where it changed: once per batch of observations, not per event (deferred
        configuration changes are decided first)."""
        outgoing = self.decide_configuration()
        if self.waiting_for is None:
            self._report_usage()
        return outgoing + self._drain()

    def observe_many(self, observations: Iterable[tuple[Event, EventId | None]]) -> list[Outgoing]:
        """Observe a batch, then report usage."""
        outgoing = [out for event, cause in observations for out in self.observe(event, cause=cause)]
        return outgoing + self.report_usage()

    # --- the decisions ----------------------------------------------------------------------

    def _reconcile(self, key: core.ServiceKey) -> None:
        service = self.world.services.get(key)
        if service is None:
            self._let_go(key, ReleaseReason.SERVICE_DELETED, "")
            return
        uid = service.ref.uid
        parsed = self._parse(key, service)
        if isinstance(parsed, core.NotManaged):
            reason = (
                ReleaseReason.NOT_LOAD_BALANCER
                if parsed.reason is core.NotManagedReason.NOT_LOAD_BALANCER
                else ReleaseReason.CLASS_CHANGED
            )
            self._let_go(key, reason, uid, parsed.message)
            return
        if isinstance(parsed, core.Refused):
            self._release(self.allocator.release(key, ReleaseReason.REFUSED), uid, parsed.message)
            self._fail(parsed, service)
            return
        decision = self.allocator.allocate(parsed)
        if isinstance(decision, core.Refused):
            self._release(decision.released, uid)
            self._fail(decision, service)
            return
        if decision.replaced is not None:
            replaced = decision.replaced
            self._release(
                core.Released(
                    service=key,
                    ips=replaced.ips,
                    pool=replaced.pool,
                    reason=ReleaseReason.REPLACED,
                    message=replaced.message,
                ),
                uid,
            )
        self._allocated(decision, uid)

    def _parse(self, key: core.ServiceKey, service: ServiceObserved) -> core.ParsedService:
        if self._parsed is not None and key in self._parsed:
            return self._parsed[key]
        parsed = self._parse_with(service, self.world.namespace_labels(service.ref.namespace))
        if self._parsed is not None:
            self._parsed[key] = parsed
        return parsed

    def _parse_with(self, service: ServiceObserved, labels: dict[str, str]) -> core.ParsedService:
        return core.parse_service(raw_service(service, labels), load_balancer_class=self.load_balancer_class)

    def _allocated(self, decision: core.Allocated, uid: str) -> None:
        ips = events.allocated_ips(decision)
        recorded = self.ledger.allocation_of(decision.service)
        if recorded is not None and events.same_allocation(recorded, decision, uid, ips):
            return
        self._emit_allocation(events.allocated(decision, uid, ips))

    def _release(self, released: core.Released | None, uid: str, message: str = "") -> None:
        if released is None or self.ledger.allocation_of(released.service) is None:
            return  # nothing released, or the ledger already has it released
        self._emit_allocation(events.released(released, uid, message))

    def _let_go(self, key: core.ServiceKey, reason: ReleaseReason, uid: str, message: str = "") -> None:
        """The Service is not metalbus's any more (deleted, no LoadBalancer, another class): what it
        holds is released; a failure recorded for it is withdrawn by a release of nothing, so that
        no reader keeps speaking for it (the watcher leaves its status to whoever owns it now)."""
        released = self.allocator.release(key, reason)
        if released is None and key in self.ledger.failures:
            withdrawn = core.Released(service=key, ips=(), pool=None, reason=reason)
            self._emit_allocation(events.released(withdrawn, uid, message))
            return
        self._release(released, uid, message)

    def _fail(self, refused: core.Refused, service: ServiceObserved) -> None:
        event = events.failed(refused, service.ref.uid)
        if self.ledger.failures.get(refused.service) != event:
            self._emit_allocation(event)

    def _readopt(self, *, skip: Collection[core.ServiceKey] = ()) -> list[core.ServiceKey]:
        """Re-adopt every allocation of the ledger (but those in ``skip``, adopted already); return the
        Services that could not keep theirs."""
        doomed: list[core.ServiceKey] = []
        for key in sorted(self.ledger.allocations.keys() - skip):
            recorded = self.ledger.allocations[key]
            service = self.world.services.get(key)
            if service is None:
                doomed.append(key)
                continue
            parsed = self._parse(key, service)
            if not isinstance(parsed, core.ServiceRequest):
                doomed.append(key)
                continue
            ips = [ip for ip in (parse_ip(text) for text in recorded.ips) if ip is not None]
            if isinstance(self.allocator.assign(parsed, ips), core.Refused):
                doomed.append(key)
        # Those that cannot keep their addresses are released now and decided after all adoptions.
        for key in doomed:
            recorded = self.ledger.allocations[key]
            service = self.world.services.get(key)
            released = core.Released(
                service=key,
                ips=tuple(ip for ip in (parse_ip(t) for t in recorded.ips) if ip is not None),
                pool=core.PoolName(recorded.pool),
                reason=ReleaseReason.SERVICE_DELETED if service is None else ReleaseReason.REPLACED,
                message="" if service is None else "no longer allowed after restart; re-deciding",
            )
            self._release(released, recorded.service.uid)
        return doomed

    # --- configuration ----------------------------------------------------------------------

    def _recorded_configuration(self) -> Configuration:
        """The configuration in force according to the ledger (the last valid one)."""
        raws = self.ledger.in_force.objects
        if not raws:
            return EMPTY_CONFIGURATION
        try:
            objects = tuple(parse_config_object(raw) for raw in raws)
        except InvalidConfigObject:
            return EMPTY_CONFIGURATION
        return Configuration(objects, self.ledger.in_force.generation)

    def _evaluate_configuration(self, *, in_force: Configuration) -> tuple[Configuration, list[ConfigProblem]]:
        """The configuration to install: the observed one if it is valid, else ``in_force``; and its problems."""
        objects, problems = self._parse_observed_configuration()
        if not problems:
            candidate = Configuration(tuple(objects), _digest(self.world.config.values()))
            try:
                validate_pools(candidate.pools)
            except core.InvalidPools as error:
                problems.append(events.unusable_pools(error))
            else:
                return candidate, problems
        return in_force, problems

    def _reconfigure(self, *, reconcile: bool) -> None:
        """Evaluate the observed configuration; install it if valid, else keep the one in force."""
        candidate, problems = self._evaluate_configuration(in_force=self.configuration)
        if problems:
            self._report_configuration(valid=False, problems=tuple(problems))
        applied = core.PoolsApplied()
        if candidate != self._installed:  # (equal pools re-installed would only re-commit every holding)
            applied = self.allocator.set_pools(candidate.pools)
            self._installed = candidate
        self.configuration = candidate
        if not problems:
            self._report_configuration(valid=True, problems=())
        for released in applied.released:
            self._release(released, self._uid(released.service))
        for moved in applied.moved:
            recorded = self.ledger.allocation_of(moved.service)
            if recorded is not None:
                self._emit_allocation(events.moved(recorded, moved))
        if reconcile:
            for key in sorted(self.world.services.keys() | self.allocator.services()):
                self._reconcile(key)

    def _parse_observed_configuration(self) -> tuple[list[ConfigObject], list[ConfigProblem]]:
        objects: list[ConfigObject] = []
        problems: list[ConfigProblem] = []
        for key in sorted(self.world.config):
            observed = self.world.config[key]
            try:
                objects.append(parse_config_object(observed.raw))
            except InvalidConfigObject as error:
                problems.append(events.unparsable_object(observed, error))
        report = validate_configuration(objects, nodes=self._node_labels())
        problems += [events.invalid_configuration(p) for p in report.problems]
        self._judged = (objects, local_pref_conflicts(objects, nodes=self._node_labels()))
        return objects, problems

    def _node_labels(self) -> dict[str, dict[str, str]]:
        return {name: node.labels for name, node in self.world.nodes.items()}

    def _node_verdict_changed(self) -> bool:
        """Whether the part of the verdict that depends on the nodes (MetalLB's localPref rule) differs
        now; cheap unless BGP advertisements give different local preferences."""
        objects, before = self._judged
        return local_pref_conflicts(objects, nodes=self._node_labels()) != before

    def _report_configuration(self, *, valid: bool, problems: tuple[ConfigProblem, ...]) -> None:
        """Record the verdict; a valid configuration not recorded yet first gets its objects written
        as bounded parts, into the slot not in force (see ``schemas/events/in_force.py``)."""
        recorded = self.ledger.configuration
        digest = _digest(self.world.config.values()) if valid else self.configuration.digest
        slot = recorded.in_force_slot if recorded is not None else None
        count = recorded.in_force_parts if recorded is not None else 0
        listed = bounded_problems(problems)
        if recorded is not None and (recorded.valid, recorded.problems, recorded.problems_total,
                                     recorded.in_force_generation) == (valid, listed, len(problems), digest):
            return
        if valid and (recorded is None or digest != self.ledger.in_force.generation):
            raws = [self.world.config[k].raw for k in sorted(self.world.config)]
            slot = slot.other if slot is not None else InForceSlot.A
            parts = split_in_force(raws, generation=digest, slot=slot) if raws else ()
            for part in parts:
                self._emit(ipam_config_part_subject(part.slot.value, part.index), part)
            count = len(parts)
        event = events.configuration_evaluated(
            valid=valid, listed=listed, total=len(problems), generation=digest, slot=slot, parts=count
        )
        self._emit(IPAM_CONFIG_SUBJECT, event)

    # --- usage, plumbing --------------------------------------------------------------------

    def _report_usage(self) -> None:
        for usage in self.allocator.usages():
            event = events.usage_reported(usage)
            if self.ledger.usage.get(usage.pool) != event:
                self._emit(ipam_pool_subject(usage.pool), event)

    def _uid(self, key: core.ServiceKey) -> str:
        service = self.world.services.get(key)
        return service.ref.uid if service is not None else ""

    def _set_configuration(self) -> None:
        self.layer2.set_configuration(self.configuration.objects)
        self.bgp.set_configuration(self.configuration.objects)

    def _place(self) -> None:
        """L2 placements, then BGP decisions, where they differ from the ledger."""
        for subject, event in self.layer2.settle(self.world, self.ledger):
            self._emit(subject, event)
        for subject, event in self.bgp.settle(self.world, self.ledger):
            self._emit(subject, event)

    def _emit_allocation(self, event: events.AllocationEvent) -> None:
        self._emit(ipam_allocation_subject(event.service.namespace, event.service.name), event)

    def _emit(self, subject: str, event: Event) -> None:
        sequence = self.ledger.last_sequence + 1
        apply(self.ledger, event, sequence)
        self.layer2.recorded(event)
        self.bgp.recorded(event)
        self._pending.append(Outgoing(subject, event, sequence, self._cause))

    def _drain(self) -> list[Outgoing]:
        pending, self._pending = self._pending, []
        return pending


def _digest(objects: Iterable[Any]) -> str:
    """A stable digest of configuration objects (by kind, namespace, name and resourceVersion)."""
    keys = sorted((o.kind, o.ref.namespace, o.ref.name, o.ref.resource_version) for o in objects)
    return hashlib.sha256(json.dumps(keys).encode()).hexdigest()[:16]
