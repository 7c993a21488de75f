"""Decisions made by the active ipam replica (stream ``IPAM``, full history kept for audit)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events.base import Event
from schemas.events.reasons import (
    AllocationFailureReason,
    BGPWithdrawReason,
    ConfigProblemReason,
    ReleaseReason,
)
from schemas.metallb.common import LabelSelector


class ServiceId(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    name: str
    uid: str = ""


class IPAllocated(Event):
    """A Service holds these IPs (also emitted when an allocation is re-adopted or re-pointed)."""

    type: Literal["IPAllocated"] = "IPAllocated"
    service: ServiceId
    ips: tuple[str, ...] = Field(min_length=1, max_length=2)
    pool: str
    sharing_key: str | None = None
    reason: str = Field(description="why this allocation, in plain words")
    deprecated_annotations: tuple[str, ...] = Field(
        default=(), description="deprecated annotations the Service used (metallb.universe.tf/*)"
    )


class IPReleased(Event):
    type: Literal["IPReleased"] = "IPReleased"
    service: ServiceId
    ips: tuple[str, ...]
    reason: ReleaseReason
    message: str = ""


#: How version 1 of ``AllocationFailed`` spelled its reasons (the allocator's snake_case codes).
_V1_ALLOCATION_FAILURE_REASONS: dict[str, AllocationFailureReason] = {
    "no_pools": AllocationFailureReason.NO_POOLS,
    "no_ip_family": AllocationFailureReason.NO_IP_FAMILY,
    "invalid_requested_ip": AllocationFailureReason.INVALID_REQUESTED_IP,
    "conflicting_request": AllocationFailureReason.CONFLICTING_REQUEST,
    "too_many_requested_ips": AllocationFailureReason.TOO_MANY_REQUESTED_IPS,
    "request_too_large": AllocationFailureReason.REQUEST_TOO_LARGE,
    "requested_family_mismatch": AllocationFailureReason.REQUESTED_FAMILY_MISMATCH,
    "requested_ip_not_in_pool": AllocationFailureReason.REQUESTED_IP_NOT_IN_POOL,
    "requested_ip_unusable": AllocationFailureReason.REQUESTED_IP_UNUSABLE,
    "requested_ip_wrong_pool": AllocationFailureReason.REQUESTED_IP_WRONG_POOL,
    "ip_not_shared": AllocationFailureReason.IP_NOT_SHARED,
    "ip_sharing_key_mismatch": AllocationFailureReason.IP_SHARING_KEY_MISMATCH,
    "ip_backend_mismatch": AllocationFailureReason.IP_BACKEND_MISMATCH,
    "ip_port_conflict": AllocationFailureReason.IP_PORT_CONFLICT,
    "unknown_pool": AllocationFailureReason.UNKNOWN_POOL,
    "pool_not_allowed": AllocationFailureReason.POOL_NOT_ALLOWED,
    "pool_exhausted": AllocationFailureReason.POOL_EXHAUSTED,
    "no_eligible_pool": AllocationFailureReason.NO_ELIGIBLE_POOL,
    "no_available_ip": AllocationFailureReason.NO_AVAILABLE_IP,
}


def _allocation_failed_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 2 spells reasons in CamelCase; a reason version 1 never wrote is left for validation."""
    reason = payload.get("reason")
    if not isinstance(reason, str) or reason not in _V1_ALLOCATION_FAILURE_REASONS:
        return payload
    return {**payload, "reason": _V1_ALLOCATION_FAILURE_REASONS[reason].value}


class AllocationFailed(Event):
    """The Service gets no IP; ``reason`` is a machine code, ``message`` says why for a human."""

    version = 2
    upcasters = {1: _allocation_failed_v1_to_v2}

    type: Literal["AllocationFailed"] = "AllocationFailed"
    service: ServiceId
    reason: AllocationFailureReason = Field(description="machine reason code, e.g. 'NoAvailableIP'")
    message: str = Field(min_length=1)


class L2PlacementDecided(Event):
    """``node`` answers for ``ip`` on the wire. The epoch is the message's stream sequence."""

    type: Literal["L2PlacementDecided"] = "L2PlacementDecided"
    ip: str
    node: str
    services: tuple[ServiceId, ...] = Field(description="the Services sharing this IP")
    interfaces: tuple[str, ...] = Field(default=(), description="from the L2Advertisements; empty: all")
    reason: str = ""


class L2PlacementCleared(Event):
    """No node announces ``ip`` any more (no eligible node, or the IP was released)."""

    type: Literal["L2PlacementCleared"] = "L2PlacementCleared"
    ip: str
    reason: str = ""


class BGPRoute(BaseModel):
    """One BGPAdvertisement's contribution to one IP: the prefix it sends, with its attributes, to which
    peers and from which nodes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    advertisement: str = Field(description="the BGPAdvertisement's name")
    prefix: str = Field(description="the IP masked to aggregationLength(V6), e.g. '10.1.0.0/24'")
    communities: tuple[int, ...] = Field(
        description="standard communities (aliases resolved) as 32-bit integers, sorted, unique"
    )
    large_communities: tuple[tuple[int, int, int], ...] = Field(description="sorted, unique")
    local_pref: int = Field(default=0, ge=0, description="LOCAL_PREF; 0: unset")
    peers: tuple[str, ...] = Field(default=(), description="BGPPeer names it goes to; empty: every peer of the node")
    node_selectors: tuple[LabelSelector, ...] = Field(
        default=(), description="the advertisement's nodeSelectors as configured; empty: every node"
    )


class BGPAdvertisementDecided(Event):
    """What is advertised over BGP for ``ip``, and from where (subject ``ipam.bgp.<ip>``).

    ``nodes`` None: externalTrafficPolicy Cluster, every usable node a route's ``node_selectors`` admit
    advertises it; a tuple: Local, only these nodes (those with a local serving endpoint)."""

    type: Literal["BGPAdvertisementDecided"] = "BGPAdvertisementDecided"
    ip: str
    services: tuple[ServiceId, ...] = Field(description="the Services behind the IP, sorted")
    routes: tuple[BGPRoute, ...] = Field(min_length=1, description="sorted by (advertisement, prefix)")
    nodes: tuple[str, ...] | None = Field(
        description="None: every usable node the routes admit (Cluster); else only these, sorted (Local)"
    )


class BGPAdvertisementWithdrawn(Event):
    """Nothing is advertised over BGP for ``ip`` any more (subject ``ipam.bgp.<ip>``)."""

    type: Literal["BGPAdvertisementWithdrawn"] = "BGPAdvertisementWithdrawn"
    ip: str
    reason: BGPWithdrawReason


class ConfigProblem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    namespace: str = ""
    name: str = ""
    field: str = ""
    reason: ConfigProblemReason = Field(description="machine reason code, e.g. 'OverlappingAddresses'")
    message: str


class InForceSlot(StrEnum):
    """Where the parts of a configuration in force are written. A new configuration goes to the slot
    not in force, so parts cut short by a crash never overwrite the ones in force."""

    A = "a"
    B = "b"

    @property
    def other(self) -> InForceSlot:
        return InForceSlot.B if self is InForceSlot.A else InForceSlot.A


class ConfigurationPart(Event):
    """Some of the raw metallb.io objects of a configuration, written before the ConfigurationEvaluated
    that puts it in force; a part stays well below the server's max_payload, whatever the configuration."""

    type: Literal["ConfigurationPart"] = "ConfigurationPart"
    generation: str = Field(min_length=1, description="digest of the configuration the part belongs to")
    slot: InForceSlot
    index: int = Field(ge=0)
    parts: int = Field(ge=1, description="how many parts the configuration has")
    objects: tuple[dict[str, Any], ...] = Field(description="metallb.io objects, as written")


class ConfigurationEvaluated(Event):
    """Result of validating the whole metallb.io configuration; invalid keeps the last valid one.

    The objects in force are in the ``in_force_parts`` ConfigurationParts of ``in_force_generation`` in
    ``in_force_slot`` (``in_force`` is read only from records written before parts existed)."""

    type: Literal["ConfigurationEvaluated"] = "ConfigurationEvaluated"
    valid: bool
    problems: tuple[ConfigProblem, ...] = Field(default=(), description="the first problems found (bounded)")
    problems_total: int = Field(default=0, ge=0, description="how many problems were found in all")
    in_force_generation: str = Field(
        default="", description="digest of the configuration now in force (the last valid one)"
    )
    in_force_slot: InForceSlot | None = Field(default=None, description="where its parts are; None: no parts")
    in_force_parts: int = Field(default=0, ge=0, description="how many ConfigurationParts hold its objects")
    in_force: tuple[dict[str, Any], ...] = Field(
        default=(), description="legacy: the objects in force carried whole (records before parts)"
    )

    @property
    def unlisted_problems(self) -> str:
        """A line saying how many problems ``problems`` leaves out ("" when none)."""
        left_out = self.problems_total - len(self.problems)
        return f"... and {left_out} more problems" if left_out > 0 else ""


class FamilyUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    assigned: int = Field(ge=0)
    available: int = Field(ge=0, description="free addresses; exact even for a /64")


class PoolUsageReported(Event):
    type: Literal["PoolUsageReported"] = "PoolUsageReported"
    pool: str
    ipv4: FamilyUsage
    ipv6: FamilyUsage
