"""Decisions made by the active ipam replica (stream ``IPAM``, full history kept for audit)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events.base import Event


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


class ReleaseReason(StrEnum):
    SERVICE_DELETED = "ServiceDeleted"
    NOT_LOAD_BALANCER = "NotLoadBalancer"
    CLASS_CHANGED = "LoadBalancerClassChanged"
    NOT_COVERED_BY_POOL = "NotCoveredByPool"
    REPLACED = "Replaced"
    """The Service's request or the configuration no longer allows the IPs; it gets new ones."""
    REFUSED = "Refused"
    """The Service's new request was refused; it holds nothing now."""


class IPReleased(Event):
    type: Literal["IPReleased"] = "IPReleased"
    service: ServiceId
    ips: tuple[str, ...]
    reason: ReleaseReason
    message: str = ""


class AllocationFailed(Event):
    """The Service gets no IP; ``reason`` is a machine code, ``message`` says why for a human."""

    type: Literal["AllocationFailed"] = "AllocationFailed"
    service: ServiceId
    reason: str = Field(min_length=1, description="machine reason code, e.g. 'NoAvailableIP'")
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


class ConfigProblem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    namespace: str = ""
    name: str = ""
    field: str = ""
    reason: str = Field(description="machine reason code")
    message: str


class ConfigurationEvaluated(Event):
    """Result of validating the whole metallb.io configuration; invalid keeps the last valid one."""

    type: Literal["ConfigurationEvaluated"] = "ConfigurationEvaluated"
    valid: bool
    problems: tuple[ConfigProblem, ...] = ()
    in_force_generation: str = Field(
        default="", description="digest of the configuration now in force (the last valid one)"
    )
    in_force: tuple[dict[str, Any], ...] = Field(
        default=(), description="the metallb.io objects of the configuration in force, as written"
    )


class FamilyUsage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    assigned: int = Field(ge=0)
    available: int = Field(ge=0, description="free addresses; exact even for a /64")


class PoolUsageReported(Event):
    type: Literal["PoolUsageReported"] = "PoolUsageReported"
    pool: str
    ipv4: FamilyUsage
    ipv6: FamilyUsage
