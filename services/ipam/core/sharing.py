"""IP sharing (`metallb.io/allow-shared-ip`): who uses an address, and may another Service join.

MetalLB's rules: an address in use may take another Service only if both carry the same non-empty
sharing key, the same backend key (`Cluster` Services share with each other, `Local` ones only with
an identical selector) and no (protocol, port) of the newcomer is already used on it by another
Service. A Service that is the only user of an address may change its key in place.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

from services.ipam.core.service import Port, ServiceKey, ShareKey


class SharingConflict(Enum):
    """Why an address in use cannot take one more Service."""

    NOT_SHARED = "not_shared"
    """The holder, or the newcomer, does not allow sharing."""
    KEY_MISMATCH = "key_mismatch"
    BACKEND_MISMATCH = "backend_mismatch"
    PORT_CONFLICT = "port_conflict"


class IPUse:
    """The users of one address in use: their ports, and which Service holds each port.

    Most addresses are never shared, so a single user is kept as a (Service, ports) pair and a dictionary is
    made only when a second one comes; which Service holds each port is made only when first read or when a
    second user comes, since until then every port is the one user's (at 50 000 Services, a dictionary
    each for either was 14 MB)."""

    __slots__ = ("_ports", "_users", "key")

    def __init__(self, key: ShareKey) -> None:
        self.key = key
        self._users: tuple[ServiceKey, frozenset[Port]] | dict[ServiceKey, frozenset[Port]] | None = None
        self._ports: dict[Port, ServiceKey] | None = None

    def __len__(self) -> int:
        """How many Services use the address."""
        users = self._users
        return 0 if users is None else 1 if isinstance(users, tuple) else len(users)

    @property
    def users(self) -> Mapping[ServiceKey, frozenset[Port]]:
        """Each user and its ports."""
        users = self._users
        if users is None:
            return {}
        return {users[0]: users[1]} if isinstance(users, tuple) else users

    @property
    def ports(self) -> dict[Port, ServiceKey]:
        if self._ports is None:
            self._ports = {port: service for service, ports in self.users.items() for port in ports}
        return self._ports

    def others(self, service: ServiceKey) -> list[ServiceKey]:
        return sorted(s for s in self.users if s != service)

    def holding_any(self, ports: Iterable[Port], *, besides: ServiceKey) -> list[ServiceKey]:
        """The Services other than ``besides`` holding one of ``ports`` here, sorted. A single user is answered
        from its ports, without making ``ports``: every Service holding an address alone checks it again at
        each decision, and made a dictionary that it then kept."""
        users = self._users
        if self._ports is None and not isinstance(users, dict):  # never shared: every port is the one user's
            if users is None:
                return []
            user, held = users
            return [user] if user != besides and not held.isdisjoint(ports) else []
        taken = self.ports
        return sorted({taken[p] for p in ports if p in taken and taken[p] != besides})

    def add(self, service: ServiceKey, ports: frozenset[Port]) -> None:
        users = self._users
        held = self.ports if users is not None else self._ports  # made now if this is not the only user
        if users is None or (isinstance(users, tuple) and users[0] == service):
            self._users = (service, ports)
        else:
            if isinstance(users, tuple):
                users = self._users = {users[0]: users[1]}
            users[service] = ports
        if held is not None:
            for port in ports:
                held[port] = service

    def remove(self, service: ServiceKey) -> None:
        users = self._users
        if users is None:
            return
        if isinstance(users, tuple):
            if users[0] != service:
                return
            ports = users[1]
            self._users = None
        else:
            ports = users.pop(service, frozenset())
            if len(users) == 1:
                self._users = next(iter(users.items()))
        if self._ports is not None:
            for port in ports:
                if self._ports.get(port) == service:
                    del self._ports[port]


def key_conflict(existing: ShareKey, new: ShareKey) -> SharingConflict | None:
    if not existing.sharing or not new.sharing:
        return SharingConflict.NOT_SHARED
    if existing.sharing != new.sharing:
        return SharingConflict.KEY_MISMATCH
    if existing.backend != new.backend:
        return SharingConflict.BACKEND_MISMATCH
    return None


def check_sharing(
    use: IPUse | None, service: ServiceKey, key: ShareKey, ports: Iterable[Port]
) -> tuple[SharingConflict, list[ServiceKey]] | None:
    """None if ``service`` may hold the address, else the conflict and the Services in the way."""
    if use is None:
        return None
    conflict = key_conflict(use.key, key)
    if conflict is not None:
        others = use.others(service)
        if others:
            return conflict, others
    clashing = use.holding_any(ports, besides=service)
    if clashing:
        return SharingConflict.PORT_CONFLICT, clashing
    return None


@dataclass(slots=True)
class KeyedAddresses:
    """The addresses of one range held under one sharing key, sorted, with a per-port count so an
    address set that is full for a port is skipped without a scan."""

    values: list[int] = field(default_factory=list)
    port_count: dict[Port, int] = field(default_factory=dict)

    def add(self, value: int, ports: Iterable[Port]) -> None:
        bisect.insort(self.values, value)
        self.add_ports(ports)

    def add_ports(self, ports: Iterable[Port]) -> None:
        for p in ports:
            self.port_count[p] = self.port_count.get(p, 0) + 1

    def remove_ports(self, ports: Iterable[Port]) -> None:
        for p in ports:
            left = self.port_count[p] - 1
            if left:
                self.port_count[p] = left
            else:
                del self.port_count[p]

    def remove(self, value: int, ports: Iterable[Port]) -> None:
        pos = bisect.bisect_left(self.values, value)
        if pos < len(self.values) and self.values[pos] == value:
            del self.values[pos]
        self.remove_ports(ports)

    def lowest_joinable(self, ports: frozenset[Port], uses: dict[int, IPUse], below: int | None) -> int | None:
        """The lowest address (below ``below`` when given) on which none of ``ports`` is taken."""
        total = len(self.values)
        if any(self.port_count.get(p, 0) >= total for p in ports):
            return None
        for value in self.values:
            if below is not None and value >= below:
                return None
            taken = uses[value].ports
            if not any(p in taken for p in ports):
                return value
        return None
