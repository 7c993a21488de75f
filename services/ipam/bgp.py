"""The decider's BGP bookkeeping: allocations + world + configuration → BGP decisions per IP. Pure: no I/O.

The rules live in ``bgp_routes``; this module keeps what they need and redoes only what a change touches,
with the discipline of the L2 placement (``layer2``): a Service or its endpoints changing re-decides the IPs
that Service holds; an allocation recorded in the ledger re-decides the IPs it held and holds; a configuration
change that matters to BGP (advertisements, pools' labels, community aliases) re-decides every IP. Nodes do
not enter the decision (the announcers apply nodeSelectors and usability to themselves), so a node change
re-decides nothing. Events are emitted only where the decision differs from the ledger, so an endpoint change
that changes no decision appends nothing.

Taking over compares every IP with the ledger, so the comparison is cheap: what the rules want for an IP
(``Wanted``: Services, advertisements, nodes) is compared field by field with the recorded event, an event is
built only for an IP whose decision changed, and the configuration remembers which advertisements select a
pool and a Service's labels (see ``bgp_routes``).
"""

from __future__ import annotations

from schemas.events import BGPAdvertisementDecided, BGPAdvertisementWithdrawn, BGPWithdrawReason, Event
from schemas.metallb import ConfigObject
from schemas.metallb.rules import serving_nodes, traffic_policy
from services.common.subjects import bgp_decision_subject
from services.ipam.bgp_routes import EMPTY_BGP_CONFIG, BGPConfig, Holder, decision, says, wanted
from services.ipam.core import ServiceKey
from services.ipam.holdings import Bookkeeping
from services.ipam.ledger import Ledger
from services.ipam.world import Touched, World


class BGPDecisions(Bookkeeping):
    def __init__(self) -> None:
        super().__init__()
        self.config = EMPTY_BGP_CONFIG
        #: Nothing compared with the ledger yet: the first settle (or ``warm``) looks at every IP.
        self._everything = True
        #: IPs to compare again whatever their Services do: those ``warm`` found differing from the ledger, and
        #: those whose recorded decision another replica changed since.
        self._unsettled: set[str] = set()

    def _configure(self, objects: tuple[ConfigObject, ...]) -> bool:
        config = BGPConfig(objects)
        if config == self.config:  # an L2Advertisement, a pool's range, a re-delivery: nothing to redo here
            return False
        self.config = config
        return True

    # --- following (a standby) ----------------------------------------------------------------------

    def touch(self, change: Touched) -> None:
        if not self._everything:  # else every Service is looked at anyway
            super().touch(change)

    def recorded(self, event: Event) -> None:
        if not self._everything:
            super().recorded(event)

    def followed(self, event: Event) -> None:
        """A decision another replica appended was folded into the ledger (a standby following the stream)."""
        if isinstance(event, BGPAdvertisementDecided | BGPAdvertisementWithdrawn):
            if not self._everything:
                self._unsettled.add(event.ip)
        else:
            self.recorded(event)

    def warm(self, world: World, ledger: Ledger, objects: tuple[ConfigObject, ...]) -> None:
        """A standby's hook (off the loop, as often as it likes): compare what the rules want, with the
        configuration in force ``objects``, with the ledger for what changed since the last call (every IP the
        first time), deciding nothing. The IPs that differ are remembered; taking over then compares only those
        and what changed afterwards (``touch``, ``followed``), not every IP."""
        self.set_configuration(objects)
        self._unsettled = {ip for ip in self._to_check(ledger) if self._difference(ip, world, ledger) is not None}
        self._warm = True

    # --- deciding ---------------------------------------------------------------------------------

    def settle(self, world: World, ledger: Ledger) -> list[tuple[str, Event]]:
        """The BGP decisions that bring the ledger to what the rules want now."""
        if not self.active:
            return []
        return [out for ip in self._to_check(ledger) if (out := self._difference(ip, world, ledger)) is not None]

    def _to_check(self, ledger: Ledger) -> list[str]:
        """The IPs whose decision may differ from the ledger's since the last settle, in order; each Service
        changed since has its IPs taken from the ledger again."""
        if not (self.config.advertisements or ledger.bgp):
            # Nothing is advertised over BGP (L2 only) and nothing was: nothing to decide. Whatever ends
            # this (BGPAdvertisements, a decision in the ledger) recomputes everything.
            self._dirty_services.clear()
            self._unsettled.clear()
            self._everything = True
            return []
        check, self._unsettled = self._unsettled, set()
        if self._everything:
            self._everything = False
            self._dirty_services |= self._holdings.services() | ledger.allocations.keys()
            check |= ledger.bgp.keys()
        for key in self._dirty_services:
            old, new = self._holdings.refresh(key, ledger)
            check.update(old, new)
        self._dirty_services.clear()
        return sorted(check)

    def _holder(self, key: ServiceKey, world: World, ledger: Ledger) -> Holder:
        allocation = ledger.allocations[key]
        service = world.services.get(key)
        endpoints = world.endpoints.get(key)
        return Holder(  # positional: a takeover makes one per IP, and keywords cost a named tuple twice as much
            allocation.service,
            allocation.pool,
            None if service is None else service.labels,
            traffic_policy(None if service is None else service.external_traffic_policy),
            serving_nodes(endpoints.nodes) if endpoints is not None else frozenset(),
        )

    def _difference(self, ip: str, world: World, ledger: Ledger) -> tuple[str, Event] | None:
        keys = self._holdings.holders(ip)
        ordered = keys if len(keys) < 2 else sorted(keys)
        want = wanted([self._holder(key, world, ledger) for key in ordered], self.config)
        recorded = ledger.bgp.get(ip)
        if isinstance(want, BGPWithdrawReason):
            if recorded is None:
                return None
            return bgp_decision_subject(ip), BGPAdvertisementWithdrawn(ip=ip, reason=want)
        if recorded is not None and says(recorded, ip, want, self.config):
            return None
        return bgp_decision_subject(ip), decision(ip, want, self.config)
