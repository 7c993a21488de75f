"""The machine reasons decisions carry: one enum per answer, spelled as MetalLB spells its reasons (CamelCase).

They are part of the contract: the allocator, the configuration check and every reader (the watcher's
Events and ConfigurationState, ``metalbus status`` / ``explain``) use these members, never bare strings.
Values are written on the wire, so a value, once published, is never reused for another meaning; renaming
one is a new schema version with an upcaster (see ``schemas/events/upcasting.py``).
"""

from __future__ import annotations

from enum import StrEnum


class AllocationFailureReason(StrEnum):
    """Why a Service gets no address (``AllocationFailed.reason``; the event's message says it for a human)."""

    NO_POOLS = "NoPools"
    """No address pool is configured."""
    NO_IP_FAMILY = "NoIPFamily"
    """The Service has no clusterIPs / ipFamilies to take a family from."""
    INVALID_REQUESTED_IP = "InvalidRequestedIP"
    """A requested address (annotation or ``spec.loadBalancerIP``) is not an address."""
    CONFLICTING_REQUEST = "ConflictingRequest"
    """Both the addresses annotation and ``spec.loadBalancerIP`` are set."""
    TOO_MANY_REQUESTED_IPS = "TooManyRequestedIPs"
    """More than one requested address per family."""
    REQUEST_TOO_LARGE = "RequestTooLarge"
    """An annotation longer than any valid value (refused unread: see ``services/ipam/core/limits.py``)."""
    REQUESTED_FAMILY_MISMATCH = "RequestedFamilyMismatch"
    """The requested addresses are not of the families the Service needs."""
    REQUESTED_IP_NOT_IN_POOL = "RequestedIPNotInPool"
    REQUESTED_IP_UNUSABLE = "RequestedIPUnusable"
    """A requested address is one never handed out (unspecified, loopback, link-local, ...)."""
    REQUESTED_IP_WRONG_POOL = "RequestedIPWrongPool"
    """The requested addresses are in another pool than the requested one."""
    IP_NOT_SHARED = "IPNotShared"
    IP_SHARING_KEY_MISMATCH = "IPSharingKeyMismatch"
    IP_BACKEND_MISMATCH = "IPBackendMismatch"
    IP_PORT_CONFLICT = "IPPortConflict"
    UNKNOWN_POOL = "UnknownPool"
    POOL_NOT_ALLOWED = "PoolNotAllowed"
    POOL_EXHAUSTED = "PoolExhausted"
    """The requested pool has no free address of the Service's families."""
    NO_ELIGIBLE_POOL = "NoEligiblePool"
    """No auto-assign pool admits the Service."""
    NO_AVAILABLE_IP = "NoAvailableIP"
    """No eligible pool has a free address of the Service's families."""


class ReleaseReason(StrEnum):
    """Why a Service gave up its addresses (``IPReleased.reason``)."""

    SERVICE_DELETED = "ServiceDeleted"
    NOT_LOAD_BALANCER = "NotLoadBalancer"
    CLASS_CHANGED = "LoadBalancerClassChanged"
    NOT_COVERED_BY_POOL = "NotCoveredByPool"
    """A pool change left the addresses outside every pool (or split across pools)."""
    REPLACED = "Replaced"
    """The Service's request or the configuration no longer allows the IPs; it gets new ones."""
    REFUSED = "Refused"
    """The Service's new request was refused; it holds nothing now."""


class ConfigProblemReason(StrEnum):
    """What is wrong with the metallb.io configuration (``ConfigProblem.reason``)."""

    INVALID_OBJECT = "InvalidObject"
    """An object does not parse (the problem names the field)."""
    INVALID_POOLS = "InvalidPools"
    """The pools, each valid, make a set the allocator cannot use."""
    DUPLICATE_NAME = "DuplicateName"
    """Two objects of one kind share a name (in one namespace)."""
    OVERLAPPING_ADDRESSES = "OverlappingAddresses"
    """Two address entries, in one pool or in two, share addresses."""
    UNKNOWN_POOL = "UnknownPool"
    """An advertisement names a pool that does not exist (no longer reported: MetalLB accepts it, and the
    advertisement selects the pools that do exist; kept for the logs that hold it)."""
    UNKNOWN_PEER = "UnknownPeer"
    """A BGP advertisement names a peer that does not exist (no longer reported, as ``UNKNOWN_POOL``)."""
    UNKNOWN_BFD_PROFILE = "UnknownBFDProfile"
    """A peer names a BFD profile that does not exist."""
    UNKNOWN_COMMUNITY_ALIAS = "UnknownCommunityAlias"
    """A BGP advertisement uses a community name no Community object defines."""
    DUPLICATE_COMMUNITY_ALIAS = "DuplicateCommunityAlias"
    """Two Community objects define the same alias."""
    AGGREGATION_TOO_SHORT = "AggregationLengthTooShort"
    """A BGP advertisement aggregates to a prefix shorter than a pool entry's own prefix."""
    CONFLICTING_LOCAL_PREF = "ConflictingLocalPref"
    """Two BGP advertisements give one pool's prefixes different ``localPref``s towards the same peers
    from the same nodes (MetalLB's ``BGPAdvertisementsHaveCompatibleLocalPref``)."""
    BFD_ECHO_WITH_IPV6 = "BFDEchoWithIPv6"
    """A peer with a BFD echo profile is sent a pool with IPv6 addresses (the echo function is IPv4 only;
    MetalLB's rule)."""
    NO_USABLE_ADDRESSES = "NoUsableAddresses"
    """Every address of a pool is unspecified, loopback, link-local, multicast or broadcast."""


class BGPWithdrawReason(StrEnum):
    """Why nothing is advertised over BGP for an IP any more (``BGPAdvertisementWithdrawn.reason``)."""

    NO_SERVING_ENDPOINTS = "NoServingEndpoints"
    """externalTrafficPolicy Local and no node has a serving endpoint of the Services behind the IP."""
    NO_ADVERTISEMENT = "NoAdvertisement"
    """No BGPAdvertisement selects the IP's pool (or the Services it serves)."""
    RELEASED = "Released"
    """The IP was released: no Service holds it any more."""
