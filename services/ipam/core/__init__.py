"""The pure decision core of the ipam service: MetalLB-compatible address allocation.

No I/O, no clock, no randomness: the same inputs give the same decisions on every replica and on
replay. The shell feeds it `PoolSpec`s and `ServiceRequest`s (see `requests.parse_service`) and
publishes the decisions it returns.
"""

from schemas.metallb.addresses import IPAddress
from services.ipam.core.allocator import Allocator
from services.ipam.core.decisions import (
    Allocated,
    AllocationReason,
    Decision,
    Holding,
    Moved,
    PoolsApplied,
    PoolUsage,
    Refused,
    Released,
    ReplaceCause,
    Replaced,
)
from services.ipam.core.pools import InvalidPools, LabelMatcher, MatchLabels, PoolSpec, ServiceAllocation
from services.ipam.core.requests import NotManaged, NotManagedReason, ParsedService, RawService, parse_service
from services.ipam.core.service import (
    IPFamilyPolicy,
    PoolName,
    Port,
    ServiceKey,
    ServiceRequest,
    TrafficPolicy,
    service_key,
)

__all__ = [
    "Allocated",
    "AllocationReason",
    "Allocator",
    "Decision",
    "Holding",
    "IPAddress",
    "IPFamilyPolicy",
    "InvalidPools",
    "LabelMatcher",
    "MatchLabels",
    "Moved",
    "NotManaged",
    "NotManagedReason",
    "ParsedService",
    "PoolName",
    "PoolSpec",
    "PoolUsage",
    "PoolsApplied",
    "Port",
    "RawService",
    "Refused",
    "Released",
    "ReplaceCause",
    "Replaced",
    "ServiceAllocation",
    "ServiceKey",
    "ServiceRequest",
    "TrafficPolicy",
    "parse_service",
    "service_key",
]
