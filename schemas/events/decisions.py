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
