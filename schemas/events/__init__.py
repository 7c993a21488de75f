"""Every event that crosses the bus, and the envelope that carries it.

``Envelope`` is the unit on the wire: header fields plus one payload, told apart by its ``type``.
"""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field

from schemas.events.announcements import (
    AnnouncementMode,
    AnnouncementReported,
    AnnouncerHeartbeat,
    BGPSessionChanged,
    BGPSessionState,
    BusConnection,
    DataPlaneReported,
    RollCall,
)
from schemas.events.base import EnvelopeHeader, Event, EventId
from schemas.events.decisions import (
    AllocationFailed,
    BGPAdvertisementDecided,
    BGPAdvertisementWithdrawn,
    BGPRoute,
    ConfigProblem,
    ConfigurationEvaluated,
    ConfigurationPart,
    FamilyUsage,
    InForceSlot,
    IPAllocated,
    IPReleased,
    L2PlacementCleared,
    L2PlacementDecided,
    PoolUsageReported,
    ServiceId,
)
from schemas.events.observed import (
    CONFIG_KINDS,
    DECISION_KINDS,
    BGPPeerPasswordObserved,
    ConfigObjectObserved,
    EndpointsObserved,
    KindListed,
    KubeProxyObserved,
    NamespaceObserved,
    NodeAddress,
    NodeEndpoints,
    NodeObserved,
    ObjectDeleted,
    ObjectKind,
    ObjectRef,
    SecretObserved,
    ServiceObserved,
    ServicePort,
)
from schemas.events.reasons import (
    AllocationFailureReason,
    BGPWithdrawReason,
    ConfigProblemReason,
    ReleaseReason,
)

AnyEvent = Annotated[
    Union[  # noqa: UP007 - a discriminated union needs the Union form here
        ServiceObserved,
        EndpointsObserved,
        NodeObserved,
        NamespaceObserved,
        ConfigObjectObserved,
        SecretObserved,
        BGPPeerPasswordObserved,
        KubeProxyObserved,
        ObjectDeleted,
        KindListed,
        IPAllocated,
        IPReleased,
        AllocationFailed,
        L2PlacementDecided,
        L2PlacementCleared,
        BGPAdvertisementDecided,
        BGPAdvertisementWithdrawn,
        ConfigurationEvaluated,
        ConfigurationPart,
        PoolUsageReported,
        AnnouncementReported,
        BGPSessionChanged,
        AnnouncerHeartbeat,
        DataPlaneReported,
        RollCall,
    ],
    Field(discriminator="type"),
]


#: Every concrete event type, in the order JSON Schema files are generated.
EVENT_TYPES: tuple[type[Event], ...] = get_args(get_args(AnyEvent)[0])


class Envelope(EnvelopeHeader):
    """One event on the wire: header plus payload."""

    event: AnyEvent


__all__ = [
    "CONFIG_KINDS",
    "DECISION_KINDS",
    "EVENT_TYPES",
    "AllocationFailed",
    "AllocationFailureReason",
    "AnnouncementMode",
    "AnnouncementReported",
    "AnnouncerHeartbeat",
    "AnyEvent",
    "BGPAdvertisementDecided",
    "BGPAdvertisementWithdrawn",
    "BGPPeerPasswordObserved",
    "BGPRoute",
    "BGPSessionChanged",
    "BGPSessionState",
    "BGPWithdrawReason",
    "BusConnection",
    "ConfigObjectObserved",
    "ConfigProblem",
    "ConfigProblemReason",
    "ConfigurationEvaluated",
    "ConfigurationPart",
    "DataPlaneReported",
    "EndpointsObserved",
    "Envelope",
    "EnvelopeHeader",
    "Event",
    "EventId",
    "FamilyUsage",
    "IPAllocated",
    "IPReleased",
    "InForceSlot",
    "KindListed",
    "KubeProxyObserved",
    "L2PlacementCleared",
    "L2PlacementDecided",
    "NamespaceObserved",
    "NodeAddress",
    "NodeEndpoints",
    "NodeObserved",
    "ObjectDeleted",
    "ObjectKind",
    "ObjectRef",
    "PoolUsageReported",
    "ReleaseReason",
    "RollCall",
    "SecretObserved",
    "ServiceId",
    "ServiceObserved",
    "ServicePort",
]
