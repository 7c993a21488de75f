"""What the allocator needs to know about a Service: its own small frozen input type."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import NamedTuple, NewType

from schemas.metallb.addresses import IPAddress, IPFamily

ServiceKey = NewType("ServiceKey", str)
"""`namespace/name` of a Service."""

PoolName = NewType("PoolName", str)

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _EMPTY


def service_key(namespace: str, name: str) -> ServiceKey:
    """Interned: the world, the ledger, the allocator and the per-IP deciders each key a Service by it, and
    share one string rather than holding a copy each (a few megabytes at 50 000 Services)."""
    return ServiceKey(sys.intern(f"{namespace}/{name}"))


def read_only(mapping: Mapping[str, str]) -> Mapping[str, str]:
    """``mapping`` read-only, not copied: a request is made from the world's dictionaries, which are replaced
    when they change and never changed (a Service's labels, its namespace's: in a real cluster every namespace
    has at least ``kubernetes.io/metadata.name``, and a copy of each per Service was kept by the allocator).
    Every empty one is the same shared object."""
    if not mapping:
        return _EMPTY
    return mapping if isinstance(mapping, MappingProxyType) else MappingProxyType(mapping)


class Port(NamedTuple):
    """One (protocol, port) pair a Service listens on."""

    protocol: str
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}/{self.port}"


#: Ports shared between requests (most Services listen on one of a few sets of ports), at most this many.
PORT_SETS_KEPT = 10_000
_port_sets: dict[tuple[Port, ...], tuple[tuple[Port, ...], frozenset[Port]]] = {}


def _shared_ports(ports: tuple[Port, ...]) -> tuple[tuple[Port, ...], frozenset[Port]]:
    """``ports`` and their set, both shared with every request listening on the same ones while there is room."""
    found = _port_sets.get(ports)
    if found is None:
        found = (ports, frozenset(ports))
        if len(_port_sets) < PORT_SETS_KEPT:
            _port_sets[ports] = found
    return found


class TrafficPolicy(Enum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


class IPFamilyPolicy(Enum):
    SINGLE_STACK = "SingleStack"
    PREFER_DUAL_STACK = "PreferDualStack"
    REQUIRE_DUAL_STACK = "RequireDualStack"


@dataclass(frozen=True, slots=True)
class ShareKey:
    """What decides whether two Services may share an address: sharing key and backend key."""

    sharing: str | None
    backend: str


def backend_key(policy: TrafficPolicy, selector: Mapping[str, str]) -> str:
    """MetalLB's backend key: "" for `Cluster`, the canonical selector (`a=1,b=2`) for `Local`.

    Two Services may share an IP only with equal backend keys. As in MetalLB, a `Local` Service
    with an empty selector has the same key as `Cluster` ones.
    """
    if policy is TrafficPolicy.CLUSTER:
        return ""
    return ",".join(f"{k}={selector[k]}" for k in sorted(selector))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceRequest:
    """A LoadBalancer Service as the allocator sees it.

    ``families`` is the Service's `spec.ipFamilies` (primary first); two entries make it a dual-stack
    Service. ``status_ips`` are the addresses its status already shows (migration from MetalLB).
    ``deprecated_annotations`` names the `metallb.universe.tf/*` annotations it relied on.
    """

    key: ServiceKey
    namespace: str
    families: tuple[IPFamily, ...] = (IPFamily.IPV4,)
    family_policy: IPFamilyPolicy = IPFamilyPolicy.SINGLE_STACK
    ports: tuple[Port, ...] = ()
    sharing_key: str | None = None
    traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    #: Read only for the backend key (``share``), not kept: so a request is never copied with
    #: ``dataclasses.replace``, which would make it again without its selector.
    selector: InitVar[Mapping[str, str] | None] = None
    labels: Mapping[str, str] = field(default_factory=_empty)
    namespace_labels: Mapping[str, str] = field(default_factory=_empty)
    requested_ips: tuple[IPAddress, ...] = ()
    requested_pool: PoolName | None = None
    status_ips: tuple[IPAddress, ...] = ()
    deprecated_annotations: tuple[str, ...] = ()
    #: The sharing key and the backend key (of ``traffic_policy`` and ``selector``).
    share: ShareKey = field(init=False)
    port_set: frozenset[Port] = field(init=False, repr=False, compare=False)

    def __post_init__(self, selector: Mapping[str, str] | None) -> None:
        if not 1 <= len(self.families) <= 2 or len(set(self.families)) != len(self.families):
            raise ValueError(f"{self.key}: families must be one family or two distinct ones")
        backend = backend_key(self.traffic_policy, selector or {})
        object.__setattr__(self, "share", ShareKey(self.sharing_key or None, backend))
        ports, port_set = _shared_ports(self.ports)
        object.__setattr__(self, "ports", ports)
        object.__setattr__(self, "port_set", port_set)

    @property
    def dual_stack(self) -> bool:
        return len(self.families) == 2

    @property
    def backend(self) -> str:
        return self.share.backend


def families_of(ips: tuple[IPAddress, ...]) -> tuple[IPFamily, ...] | None:
    """The families of 1 or 2 addresses of distinct families, else None (MetalLB's `ForAddresses`)."""
    fams = tuple(IPFamily.of(ip) for ip in ips)
    if len(fams) == 1 or (len(fams) == 2 and fams[0] is not fams[1]):
        return fams
    return None
