"""Observed state: what the watcher saw in Kubernetes (stream ``K8S``, one subject per object).

Each object kind has an ``*Observed`` event with the fields the deciders need, and every kind shares
one deletion tombstone, :class:`ObjectDeleted`. The last value per subject is the current world.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events.base import Event


class ObjectKind(StrEnum):
    """Kinds the watcher observes; the value is the subject token used on the ``K8S`` stream."""

    SERVICE = "service"
    ENDPOINTS = "endpoints"
    NODE = "node"
    NAMESPACE = "namespace"
    SECRET = "secret"
    KUBE_PROXY = "kubeproxy"
    IP_ADDRESS_POOL = "ipaddresspool"
    L2_ADVERTISEMENT = "l2advertisement"
    BGP_ADVERTISEMENT = "bgpadvertisement"
    BGP_PEER = "bgppeer"
    #: The inline ``spec.password`` of a BGPPeer, kept apart from the BGPPeer (on ``SECRETS``).
    BGP_PEER_PASSWORD = "bgppeerpassword"
    BFD_PROFILE = "bfdprofile"
    COMMUNITY = "community"


#: The metallb.io configuration kinds, by their Kubernetes ``kind`` name.
CONFIG_KINDS: dict[str, ObjectKind] = {
    "IPAddressPool": ObjectKind.IP_ADDRESS_POOL,
    "L2Advertisement": ObjectKind.L2_ADVERTISEMENT,
    "BGPAdvertisement": ObjectKind.BGP_ADVERTISEMENT,
    "BGPPeer": ObjectKind.BGP_PEER,
    "BFDProfile": ObjectKind.BFD_PROFILE,
    "Community": ObjectKind.COMMUNITY,
}


class ObjectRef(BaseModel):
    """Identity of an observed Kubernetes object."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = Field(default="", description="empty for cluster-scoped objects")
    name: str = Field(min_length=1)
    uid: str = Field(min_length=1)
    resource_version: str = Field(min_length=1)


class ServicePort(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    port: int = Field(ge=1, le=65535)


class ServiceObserved(Event):
    """A Service as it is now (created or changed)."""

    type: Literal["ServiceObserved"] = "ServiceObserved"
    ref: ObjectRef
    service_type: str = Field(description="spec.type, e.g. 'LoadBalancer'")
    load_balancer_class: str | None = None
    load_balancer_ip: str | None = Field(default=None, description="spec.loadBalancerIP (deprecated)")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="the metallb.io/ and metallb.universe.tf/ annotations only"
    )
    labels: dict[str, str] = Field(default_factory=dict)
    ports: tuple[ServicePort, ...] = ()
    ip_families: tuple[Literal["IPv4", "IPv6"], ...] = ()
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None
    cluster_ips: tuple[str, ...] = ()
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    selector: dict[str, str] = Field(default_factory=dict)
    ingress_ips: tuple[str, ...] = Field(
        default=(), description="IPs in status.loadBalancer.ingress (kept when migrating from MetalLB)"
    )


class NodeEndpoints(BaseModel):
    """Endpoints of one Service on one node, folded from its EndpointSlices."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    node: str
    ready: int = Field(ge=0, description="endpoints with conditions.ready")
    serving: int = Field(ge=0, description="endpoints with conditions.serving (ready or terminating)")


class EndpointsObserved(Event):
    """All EndpointSlices of one Service, folded per node."""

    type: Literal["EndpointsObserved"] = "EndpointsObserved"
    namespace: str
    service: str
    nodes: tuple[NodeEndpoints, ...] = ()


class NodeAddress(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    address: str


class NodeObserved(Event):
    type: Literal["NodeObserved"] = "NodeObserved"
    ref: ObjectRef
    labels: dict[str, str] = Field(default_factory=dict)
    network_unavailable: bool = False
    addresses: tuple[NodeAddress, ...] = ()


class NamespaceObserved(Event):
    type: Literal["NamespaceObserved"] = "NamespaceObserved"
    ref: ObjectRef
    labels: dict[str, str] = Field(default_factory=dict)


class ConfigObjectObserved(Event):
    """A metallb.io configuration object exactly as written; ipam parses and validates it."""

    type: Literal["ConfigObjectObserved"] = "ConfigObjectObserved"
    ref: ObjectRef
    kind: str = Field(description="Kubernetes kind, e.g. 'IPAddressPool'")
    api_version: str = Field(description="e.g. 'metallb.io/v1beta1'")
    raw: dict[str, Any] = Field(description="the whole object as the API returned it")


class SecretObserved(Event):
    """A Secret that a BGPPeer references (no other Secret is ever observed), on ``SECRETS`` only."""

    type: Literal["SecretObserved"] = "SecretObserved"
    ref: ObjectRef
    secret_type: str = ""
    data: dict[str, str] = Field(
        default_factory=dict, description="decoded string data: the 'password' key only, no other key is published"
    )


class BGPPeerPasswordObserved(Event):
    """The inline ``spec.password`` of a BGPPeer, on ``SECRETS`` only: the BGPPeer published on ``K8S`` has
    its password taken out and says only that it had one (``metalbusInlinePassword``)."""

    type: Literal["BGPPeerPasswordObserved"] = "BGPPeerPasswordObserved"
    ref: ObjectRef = Field(description="the BGPPeer's")
    password: str = Field(min_length=1)


class KubeProxyObserved(Event):
    """kube-system/kube-proxy ConfigMap, reduced to what L2 mode depends on."""

    type: Literal["KubeProxyObserved"] = "KubeProxyObserved"
    ref: ObjectRef
    mode: str = Field(default="", description="'iptables', 'ipvs', 'nftables' or '' (default)")
    strict_arp: bool = False


class ObjectDeleted(Event):
    """Tombstone: the object is gone. Replaces the object's last value on its subject."""

    type: Literal["ObjectDeleted"] = "ObjectDeleted"
    kind: ObjectKind
    namespace: str = ""
    name: str
    uid: str = ""


#: The kinds ipam decides from. Once the ``K8S`` stream carries any list mark (``KindListed``), ipam decides
#: only while every one of these is marked complete.
DECISION_KINDS: frozenset[ObjectKind] = frozenset(
    {ObjectKind.SERVICE, ObjectKind.ENDPOINTS, ObjectKind.NODE, ObjectKind.NAMESPACE, *CONFIG_KINDS.values()}
)


class KindListed(Event):
    """The watcher's mark on ``K8S`` (its subject ``k8s.listed.<kind>`` keeps the newest). ``complete``: the
    stream holds the whole list of ``kind`` as of ``resource_version`` — every listed object published, every
    subject the list lacks tombstoned. Not ``complete``: the stream lost what it held of the kind (a new
    stream, a purge, a restore) and a list has begun; nothing may be decided from the kind until the mark
    says complete again."""

    type: Literal["KindListed"] = "KindListed"
    kind: ObjectKind
    complete: bool
    resource_version: str = ""
    objects: int = Field(default=0, ge=0, description="objects in the list (0 when not complete)")
