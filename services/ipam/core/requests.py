"""Turn the raw fields of a Service into a `ServiceRequest`, a refusal, or "not ours".

MetalLB's `controller/service.go` semantics: the `metallb.io/` annotation wins over its deprecated
`metallb.universe.tf/` twin; `metallb.io/loadBalancerIPs` and `spec.loadBalancerIP` together are a
conflict; the annotation holds a comma-separated list of at most one address per family; an
unparsable address refuses the request. Use of a deprecated annotation is flagged in the result.
Every field a tenant writes is measured against its bound (``limits.py``) before any of it is parsed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

from schemas.events import AllocationFailureReason
from schemas.metallb.addresses import IPAddress, IPFamily
from services.ipam.core.decisions import Refused
from services.ipam.core.limits import (
    MAX_POOL_NAME_LENGTH,
    MAX_SHARING_KEY_LENGTH,
    Breach,
    Exceeded,
    quoted,
    requested_ips_breach,
    too_long,
)
from services.ipam.core.service import (
    IPFamilyPolicy,
    PoolName,
    Port,
    ServiceKey,
    ServiceRequest,
    TrafficPolicy,
    families_of,
    read_only,
    service_key,
)

PREFIX = "metallb.io/"
DEPRECATED_PREFIX = "metallb.universe.tf/"
LOAD_BALANCER_IPS = "loadBalancerIPs"
ADDRESS_POOL = "address-pool"
ALLOW_SHARED_IP = "allow-shared-ip"


class NotManagedReason(Enum):
    NOT_LOAD_BALANCER = "not_load_balancer"
    OTHER_CLASS = "other_load_balancer_class"


@dataclass(frozen=True, slots=True)
class NotManaged:
    """The Service is not ours to serve: whatever it holds is to be released."""

    service: ServiceKey
    reason: NotManagedReason
    message: str


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class RawService:
    """The Service fields the allocator depends on, as Kubernetes spells them."""

    namespace: str
    name: str
    type: str = "LoadBalancer"
    load_balancer_class: str | None = None
    annotations: Mapping[str, str] = field(default_factory=_empty)
    labels: Mapping[str, str] = field(default_factory=_empty)
    namespace_labels: Mapping[str, str] = field(default_factory=_empty)
    load_balancer_ip: str | None = None
    ports: tuple[tuple[str, int], ...] = ()
    external_traffic_policy: str | None = None
    selector: Mapping[str, str] = field(default_factory=_empty)
    ip_family_policy: str | None = None
    ip_families: tuple[str, ...] = ()
    cluster_ips: tuple[str, ...] = ()
    status_ips: tuple[str, ...] = ()


ParsedService = ServiceRequest | Refused | NotManaged


def annotation(annotations: Mapping[str, str], name: str, deprecated: list[str]) -> str | None:
    """The value of `metallb.io/<name>`, else of `metallb.universe.tf/<name>` (noted in ``deprecated``)."""
    if PREFIX + name in annotations:
        return annotations[PREFIX + name]
    if DEPRECATED_PREFIX + name in annotations:
        deprecated.append(DEPRECATED_PREFIX + name)
        return annotations[DEPRECATED_PREFIX + name]
    return None


def parse_ip(text: str) -> IPAddress | None:
    """Parse an address as Go's `net.ParseIP` would; IPv4-mapped IPv6 counts as IPv4. None if invalid."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return None
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


_FAMILIES_BY_NAME = {family.value: family for family in IPFamily}


def _families(raw: RawService) -> tuple[IPFamily, ...] | None:
    fams = tuple(_FAMILIES_BY_NAME[f] for f in raw.ip_families if f in _FAMILIES_BY_NAME)
    if not fams:
        ips = tuple(ip for ip in (parse_ip(t) for t in raw.cluster_ips if t and t != "None") if ip is not None)
        found = families_of(ips) if ips else None
        fams = found or ()
    if not fams or len(set(fams)) != len(fams) or len(fams) > 2:
        return None
    return fams


def _policy(text: str | None) -> IPFamilyPolicy:
    for policy in IPFamilyPolicy:
        if policy.value == text:
            return policy
    return IPFamilyPolicy.SINGLE_STACK


def _status_ips(texts: Iterable[str]) -> tuple[IPAddress, ...]:
    return tuple(ip for ip in (parse_ip(t) for t in texts if t) if ip is not None)


def _breach(ips_text: str | None, spec_ip: str | None, pool: str | None, sharing: str | None) -> Breach | None:
    """The first request field over its bound (measured, not parsed), if any."""
    found: list[Breach | None] = []
    if ips_text:
        found.append(requested_ips_breach(f"the {LOAD_BALANCER_IPS} annotation", ips_text))
    if spec_ip:
        found.append(requested_ips_breach("spec.loadBalancerIP", spec_ip))
    if pool:
        found.append(too_long(f"the {ADDRESS_POOL} annotation", pool, MAX_POOL_NAME_LENGTH))
    if sharing:
        found.append(too_long(f"the {ALLOW_SHARED_IP} annotation", sharing, MAX_SHARING_KEY_LENGTH))
    return next((breach for breach in found if breach is not None), None)


def parse_service(raw: RawService, *, load_balancer_class: str | None = None) -> ParsedService:
    """Interpret one Service. ``load_balancer_class`` is the class we serve (None: only Services
    without a class, MetalLB's default)."""
    key = service_key(raw.namespace, raw.name)
    if raw.type != "LoadBalancer":
        return NotManaged(key, NotManagedReason.NOT_LOAD_BALANCER, f"type {raw.type} is not LoadBalancer")
    if raw.load_balancer_class != load_balancer_class:
        wanted = load_balancer_class or "no class"
        return NotManaged(
            key, NotManagedReason.OTHER_CLASS, f"loadBalancerClass {raw.load_balancer_class} is not {wanted}"
        )
    deprecated: list[str] = []
    ips_text = annotation(raw.annotations, LOAD_BALANCER_IPS, deprecated)
    pool = annotation(raw.annotations, ADDRESS_POOL, deprecated)
    sharing = annotation(raw.annotations, ALLOW_SHARED_IP, deprecated)
    flagged = tuple(deprecated)

    def refused(reason: AllocationFailureReason, message: str) -> Refused:
        return Refused(service=key, reason=reason, message=message, deprecated_annotations=flagged)

    breach = _breach(ips_text, raw.load_balancer_ip, pool, sharing)
    if breach is not None:
        reason = (
            AllocationFailureReason.TOO_MANY_REQUESTED_IPS
            if breach.exceeded is Exceeded.TOO_MANY_ENTRIES
            else AllocationFailureReason.REQUEST_TOO_LARGE
        )
        return refused(reason, breach.message)

    families = _families(raw)
    if families is None:
        return refused(
            AllocationFailureReason.NO_IP_FAMILY, "the Service has no clusterIPs / ipFamilies to take a family from"
        )
    policy = _policy(raw.ip_family_policy)
    if policy is IPFamilyPolicy.SINGLE_STACK:
        families = families[:1]

    requested: tuple[IPAddress, ...] = ()
    spec_ip = raw.load_balancer_ip or ""
    if ips_text and spec_ip:
        return refused(
            AllocationFailureReason.CONFLICTING_REQUEST,
            f"both the {LOAD_BALANCER_IPS} annotation ({quoted(ips_text)}) and spec.loadBalancerIP "
            f"({quoted(spec_ip)}) are set",
        )
    if ips_text or spec_ip:
        source = f"{LOAD_BALANCER_IPS} annotation" if ips_text else "spec.loadBalancerIP"
        texts = ips_text.split(",") if ips_text else [spec_ip]
        parsed = [parse_ip(t) for t in texts]
        bad = [t.strip() for t, ip in zip(texts, parsed, strict=True) if ip is None]
        if bad:
            return refused(
                AllocationFailureReason.INVALID_REQUESTED_IP, f"invalid address {quoted(bad[0])} in {source}"
            )
        requested = tuple(ip for ip in parsed if ip is not None)
        if families_of(requested) is None:
            return refused(
                AllocationFailureReason.TOO_MANY_REQUESTED_IPS,
                f"{source} asks for {', '.join(map(str, requested))}: at most one address per family",
            )

    ports = tuple(Port(proto or "TCP", int(port)) for proto, port in raw.ports)
    etp = TrafficPolicy.LOCAL if raw.external_traffic_policy == TrafficPolicy.LOCAL.value else TrafficPolicy.CLUSTER
    return ServiceRequest(
        key=key,
        namespace=raw.namespace,
        families=families,
        family_policy=policy,
        ports=ports,
        sharing_key=sharing or None,
        traffic_policy=etp,
        selector=raw.selector,
        labels=read_only(raw.labels),
        namespace_labels=read_only(raw.namespace_labels),
        requested_ips=requested,
        requested_pool=PoolName(pool) if pool else None,
        status_ips=_status_ips(raw.status_ips),
        deprecated_annotations=flagged,
    )
