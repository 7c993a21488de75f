"""A standby's allocator, kept adopted to the ledger as the standby follows, so that taking over does not
re-adopt every allocation from scratch.

``follow`` assigns, in an allocator holding the pools a configuration gives, the addresses each ledger
allocation records, and remembers from which ledger entry, which observed Service and which namespace
labels it did; an entry that no longer matches (a new decision, a changed Service or namespace) is
released and adopted again at the next call. It looks only at the Services it is told changed (``changed``)
and at those it could not adopt last time, except the first time: a call costs what changed since the last,
not the 50 000 Services of a big cluster. Taking over, the decider takes the allocator as it is when
the configuration it would install is the one this was built for, re-adopts only what is not adopted
here, and parses no Service adopted here again. An adoption is *quiet* when deciding its Service again
would keep its addresses as they are and record nothing (``Allocator.kept`` and the ledger entry agree);
for a Service that shares no address that holds whatever else changes, so taking over does not decide it
again. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from schemas.events import IPAllocated, ServiceObserved
from services.ipam import core
from services.ipam.core.requests import parse_ip
from services.ipam.events import allocated_ips, same_allocation
from services.ipam.ledger import Ledger
from services.ipam.world import World

#: How a Service is read into an allocator request (the decider's own parsing).
Parse = Callable[[ServiceObserved, dict[str, str]], core.ParsedService]


@dataclass(frozen=True, slots=True)
class Adopted:
    """What one adoption was made from, and the request it was made with."""

    recorded: IPAllocated
    service: ServiceObserved
    labels: dict[str, str]
    request: core.ServiceRequest
    #: Deciding the Service again would change nothing and record nothing (see the module's docstring).
    quiet: bool


class WarmAllocator:
    def __init__(self, *, built_for: object, pools: Sequence[core.PoolSpec]) -> None:
        #: The configuration the pools come from (the decider compares it with the one it would install).
        self.built_for = built_for
        self.allocator = core.Allocator()
        self.allocator.set_pools(pools)
        self.adopted: dict[core.ServiceKey, Adopted] = {}
        #: Services whose allocation, observation or namespace labels changed since the last ``follow``
        #: (None: not followed yet, every one is looked at)
        self._changed: set[core.ServiceKey] | None = None
        #: allocations not adopted at the last ``follow`` (no Service observed, no request made of it, or its
        #: addresses held by another): tried again at every call
        self._unadopted: set[core.ServiceKey] = set()

    def changed(self, keys: Iterable[core.ServiceKey]) -> None:
        """These Services' allocations, observations or namespace labels changed: looked at again."""
        if self._changed is not None:
            self._changed.update(keys)

    def shows_more(self, key: core.ServiceKey, service: ServiceObserved) -> None:
        """The Service's newest observation ``service`` shows only more than the one it was adopted from (the
        status writer's own write): what was adopted holds, and is compared with ``service`` from now on."""
        adopted = self.adopted.get(key)
        if adopted is None:
            self.changed((key,))
        else:
            self.adopted[key] = replace(adopted, service=service)

    def follow(self, ledger: Ledger, world: World, parse: Parse) -> None:
        """Bring the allocator to what the ledger records now, for the Services observed now."""
        changed, self._changed = self._changed, set()
        if changed is None:
            suspects: Iterable[core.ServiceKey] = list(self.adopted)
            candidates = set(ledger.allocations.keys())
        else:
            suspects = [key for key in changed if key in self.adopted]
            candidates = (changed | self._unadopted) & ledger.allocations.keys()
        for key in suspects:
            if not self._still(key, self.adopted[key], ledger, world):
                self.allocator.release(key)
                del self.adopted[key]
        self._unadopted = set()
        for key in sorted(candidates - self.adopted.keys()):
            if not self._adopt(key, ledger, world, parse):
                self._unadopted.add(key)

    def _adopt(self, key: core.ServiceKey, ledger: Ledger, world: World, parse: Parse) -> bool:
        recorded = ledger.allocations[key]
        service = world.services.get(key)
        if service is None:
            return False  # released on taking over
        labels = world.namespace_labels(service.ref.namespace)
        request = parse(service, labels)
        if not isinstance(request, core.ServiceRequest):
            return False
        ips = [ip for ip in (parse_ip(text) for text in recorded.ips) if ip is not None]
        if not isinstance(self.allocator.assign(request, ips), core.Allocated):
            return False
        self.adopted[key] = Adopted(recorded, service, labels, request, self._quiet(request, recorded, service))
        return True

    def quiet(self) -> set[core.ServiceKey]:
        """The Services whose adoption is quiet."""
        return {key for key, adopted in self.adopted.items() if adopted.quiet}

    def _quiet(self, request: core.ServiceRequest, recorded: IPAllocated, service: ServiceObserved) -> bool:
        if request.share.sharing is not None:
            return False  # another Service may come to share (or stop sharing) its address
        decision = self.allocator.kept(request)
        return decision is not None and same_allocation(recorded, decision, service.ref.uid, allocated_ips(decision))

    @staticmethod
    def _still(key: core.ServiceKey, adopted: Adopted, ledger: Ledger, world: World) -> bool:
        return (
            ledger.allocations.get(key) is adopted.recorded
            and world.services.get(key) is adopted.service
            and world.namespace_labels(adopted.service.ref.namespace) == adopted.labels
        )
