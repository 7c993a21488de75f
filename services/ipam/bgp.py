"""The decider's BGP bookkeeping: allocations + world + configuration → BGP decisions per IP. Pure: no I/O.

The rules live in ``bgp_routes``; this module keeps what they need and redoes only what a change touches,
with the discipline of the L2 placement (``layer2``): a Service or its endpoints changing re-decides the IPs
that Service holds; an allocation recorded in the ledger re-decides the IPs it held and holds; a configuration
change that matters to BGP (advertisements, pools' labels, community aliases) re-decides every IP. Nodes do
not enter the decision (the announcers apply nodeSelectors and usability to themselves), so a node change
re-decides nothing. Events are emitted only where the decision differs from the ledger, so an endpoint change
that changes no decision appends nothing.
"""

from __future__ import annotations

from schemas.events import (
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    Event,
)
from schemas.metallb import ConfigObject
from schemas.metallb.rules import serving_nodes, traffic_policy
from services.common.subjects import bgp_decision_subject
from services.ipam.bgp_routes import EMPTY_BGP_CONFIG, BGPConfig, Holder, decide
from services.ipam.core import ServiceKey
from services.ipam.holdings import Bookkeeping
from services.ipam.ledger import Ledger
from services.ipam.world import World


class BGPDecisions(Bookkeeping):
    def __init__(self) -> None:
        super().__init__()
        self.config = EMPTY_BGP_CONFIG

    def _configure(self, objects: tuple[ConfigObject, ...]) -> bool:
        config = BGPConfig(objects)
        if config == self.config:  # an L2Advertisement, a pool's range, a re-delivery: nothing to redo here
            return False
        self.config = config
        return True

    # --- deciding ---------------------------------------------------------------------------------

    def settle(self, world: World, ledger: Ledger) -> list[tuple[str, Event]]:
        """The BGP decisions that bring the ledger to what the rules want now."""
        if not self.active:
            return []
        if not (self.config.advertisements or ledger.bgp):
            # Nothing is advertised over BGP (L2 only) and nothing was: nothing to decide. Whatever ends
            # this (BGPAdvertisements, a decision in the ledger) recomputes everything.
            self._dirty_services.clear()
            self._everything = True
            return []
        check: set[str] = set()
        if self._everything:
            self._everything = False
            self._dirty_services |= self._holdings.services() | ledger.allocations.keys()
            check |= ledger.bgp.keys()
        for key in self._dirty_services:
            old, new = self._holdings.refresh(key, ledger)
            check.update(old, new)
        self._dirty_services.clear()
        return [out for ip in sorted(check) if (out := self._difference(ip, world, ledger)) is not None]

    def _holder(self, key: ServiceKey, world: World, ledger: Ledger) -> Holder:
        allocation = ledger.allocations[key]
        service = world.services.get(key)
        endpoints = world.endpoints.get(key)
        return Holder(
            service=allocation.service,
            pool=allocation.pool,
            labels=None if service is None else service.labels,
            policy=traffic_policy(None if service is None else service.external_traffic_policy),
            serving=serving_nodes(endpoints.nodes) if endpoints is not None else frozenset(),
        )

    def _difference(self, ip: str, world: World, ledger: Ledger) -> tuple[str, Event] | None:
        holders = [self._holder(key, world, ledger) for key in sorted(self._holdings.holders(ip))]
        decision = decide(ip, holders, self.config)
        recorded = ledger.bgp.get(ip)
        if isinstance(decision, BGPAdvertisementDecided):
            return None if decision == recorded else (bgp_decision_subject(ip), decision)
        if recorded is None:
            return None
        return bgp_decision_subject(ip), BGPAdvertisementWithdrawn(ip=ip, reason=decision)
