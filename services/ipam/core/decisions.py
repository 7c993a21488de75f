"""What the allocator answers: decisions are values, reasons are enums plus a human message."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from schemas.events import AllocationFailureReason, ReleaseReason
from schemas.metallb.addresses import IPAddress
from services.ipam.core.service import PoolName, ServiceKey, ServiceRequest


class AllocationReason(Enum):
    """How a Service came to hold its addresses."""

    UNCHANGED = "unchanged"
    """It already held them and still may."""
    ADOPTED = "adopted"
    """Re-adopted as given (`assign`: replay, or a status written by MetalLB)."""
    ADOPTED_FROM_STATUS = "adopted_from_status"
    """`allocate` found them in the Service's status and kept them."""
    ADDITIONAL_FAMILY = "additional_family"
    """PreferDualStack: a second-family address was added from the same pool."""
    REQUESTED_IPS = "requested_ips"
    REQUESTED_POOL = "requested_pool"
    AUTO_ASSIGNED = "auto_assigned"


class ReplaceCause(Enum):
    """Why `allocate` dropped a Service's previous addresses (MetalLB's `clearAssignment` reasons)."""

    FAMILY_CHANGED = "family_changed"
    NO_LONGER_ALLOWED = "no_longer_allowed"
    DIFFERENT_POOL_REQUESTED = "different_pool_requested"
    DIFFERENT_IP_REQUESTED = "different_ip_requested"


@dataclass(frozen=True, slots=True, kw_only=True)
class Replaced:
    """The addresses a Service held before this decision, and why they were given up."""

    ips: tuple[IPAddress, ...]
    pool: PoolName | None
    cause: ReplaceCause
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Allocated:
    service: ServiceKey
    ips: tuple[IPAddress, ...]
    pool: PoolName
    sharing_key: str | None
    reason: AllocationReason
    message: str = ""
    replaced: Replaced | None = None
    deprecated_annotations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Released:
    service: ServiceKey
    ips: tuple[IPAddress, ...]
    pool: PoolName | None
    reason: ReleaseReason
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    service: ServiceKey
    reason: AllocationFailureReason
    message: str
    released: Released | None = None
    """The addresses the Service lost with this refusal (MetalLB clears state before retrying)."""
    deprecated_annotations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Moved:
    """A pool change re-pointed an allocation: same addresses, another pool."""

    service: ServiceKey
    ips: tuple[IPAddress, ...]
    old_pool: PoolName
    new_pool: PoolName


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolsApplied:
    """The outcome of `set_pools`: allocations dropped (to re-allocate) and allocations re-pointed."""

    released: tuple[Released, ...] = ()
    moved: tuple[Moved, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolUsage:
    """Addresses of a pool in use (a shared address counts once) and still free, per family."""

    pool: PoolName
    assigned_v4: int
    available_v4: int
    assigned_v6: int
    available_v6: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Holding:
    """What a Service holds now, with the request it was last decided for (a snapshot row)."""

    request: ServiceRequest
    ips: tuple[IPAddress, ...]
    pool: PoolName


Decision = Allocated | Refused
