"""What the per-IP deciders (L2 placement, BGP decisions) keep between two settles. Pure: no I/O.

``Holdings``: which Services hold which IPs, both ways, as the ledger's allocations say, updated for the
Services an allocation touched, to find the IPs a change concerns and the Services behind an IP.
``Bookkeeping``: what changed since the last settle (Services touched, the configuration in force).
"""

from __future__ import annotations

from collections.abc import KeysView

from schemas.events import AllocationFailed, Event, IPAllocated, IPReleased
from schemas.metallb import ConfigObject
from services.common.compact import add_member, discard_member
from services.ipam.core import ServiceKey, service_key
from services.ipam.ledger import Ledger
from services.ipam.world import Touched


class Holdings:
    def __init__(self) -> None:
        self._ips_of: dict[ServiceKey, tuple[str, ...]] = {}
        #: Each IP's holders, a small set kept as a tuple (``add_member``): nearly every IP has one.
        self._holders: dict[str, tuple[ServiceKey, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self._ips_of)

    def services(self) -> KeysView[ServiceKey]:
        return self._ips_of.keys()

    def ips_of(self, key: ServiceKey) -> tuple[str, ...]:
        return self._ips_of.get(key, ())

    def holders(self, ip: str) -> tuple[ServiceKey, ...]:
        """The Services holding ``ip``, each once (in no particular order)."""
        return self._holders.get(ip, ())

    def held(self, ip: str) -> bool:
        return ip in self._holders

    def refresh(self, key: ServiceKey, ledger: Ledger) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Take ``key``'s IPs from the ledger's allocation now; the IPs it held before and holds now."""
        allocation = ledger.allocations.get(key)
        held = self._ips_of.get(key)
        if allocation is not None and allocation.ips == held:
            return held, held  # the same IPs (taking over looks at every Service): nothing to move
        old = self._ips_of.pop(key, ())
        for ip in old:
            discard_member(self._holders, ip, key)
        if allocation is None:
            return old, ()
        self._ips_of[key] = allocation.ips
        for ip in allocation.ips:
            add_member(self._holders, ip, key)
        return old, allocation.ips


def reallocated(event: Event) -> ServiceKey | None:
    """The Service whose IPs an allocation decision folded into the ledger may have changed (None: the
    event is no allocation decision)."""
    if isinstance(event, IPAllocated | IPReleased | AllocationFailed):
        return service_key(event.service.namespace, event.service.name)
    return None


class Bookkeeping:
    """What changed since the last settle: the Services whose IPs, Service or endpoints changed, and whether
    everything must be looked at again (taking over, or a configuration change that matters)."""

    def __init__(self) -> None:
        self.active = False
        self._objects: tuple[ConfigObject, ...] | None = None
        self._holdings = Holdings()
        self._dirty_services: set[ServiceKey] = set()
        self._everything = False
        #: A standby warmed this (its ``warm``): what it found is known and what changed since is tracked.
        self._warm = False

    def activate(self, objects: tuple[ConfigObject, ...]) -> None:
        """Take over: look at everything; after ``warm``, only at what changed since (everything if the
        configuration that matters here differs from the one warmed with)."""
        self.active = True
        self.set_configuration(objects)
        if not self._warm:
            self._everything = True

    def set_configuration(self, objects: tuple[ConfigObject, ...]) -> None:
        if objects is self._objects:
            return
        self._objects = objects
        if self._configure(objects):
            self._everything = True

    def _configure(self, objects: tuple[ConfigObject, ...]) -> bool:
        """Take the part of ``objects`` that matters here; whether it differs from before."""
        raise NotImplementedError

    def touch(self, change: Touched) -> None:
        self._dirty_services |= change.placed_services

    def recorded(self, event: Event) -> None:
        """A decision was folded into the ledger: if an allocation, its Service's IPs may have changed."""
        if (key := reallocated(event)) is not None:
            self._dirty_services.add(key)
