"""Translations between the bus's models and the allocator core's inputs and outputs. Pure."""

from __future__ import annotations

from schemas.events import IPAllocated, IPReleased, ServiceId, ServiceObserved
from schemas.metallb import IPAddressPool
from services.ipam import core


def raw_service(service: ServiceObserved, namespace_labels: dict[str, str]) -> core.RawService:
    return core.RawService(
        namespace=service.ref.namespace,
        name=service.ref.name,
        type=service.service_type,
        load_balancer_class=service.load_balancer_class,
        annotations=service.annotations,
        labels=service.labels,
        namespace_labels=namespace_labels,
        load_balancer_ip=service.load_balancer_ip,
        ports=tuple((port.protocol, port.port) for port in service.ports),
        external_traffic_policy=service.external_traffic_policy,
        selector=service.selector,
        ip_family_policy=service.ip_family_policy,
        ip_families=service.ip_families,
        cluster_ips=service.cluster_ips,
        status_ips=service.ingress_ips,
    )


def pool_spec(pool: IPAddressPool) -> core.PoolSpec:
    allocation = pool.spec.service_allocation
    return core.PoolSpec(
        name=core.PoolName(pool.metadata.name),
        ranges=pool.ranges(),
        auto_assign=pool.spec.auto_assign,
        avoid_buggy_ips=pool.spec.avoid_buggy_ips,
        allocation=None
        if allocation is None
        else core.ServiceAllocation(
            priority=allocation.priority or None,
            namespaces=frozenset(allocation.namespaces),
            namespace_selectors=allocation.namespace_selectors,
            service_selectors=allocation.service_selectors,
        ),
    )


def service_id(key: core.ServiceKey, uid: str = "") -> ServiceId:
    namespace, _, name = key.partition("/")
    return ServiceId(namespace=namespace, name=name, uid=uid)


def released_event(released: core.Released, uid: str = "") -> IPReleased:
    return IPReleased(
        service=service_id(released.service, uid),
        ips=tuple(str(ip) for ip in released.ips),
        reason=released.reason,
        message=released.message,
    )


def same_allocation(recorded: IPAllocated, decision: core.Allocated, uid: str, ips: tuple[str, ...]) -> bool:
    """Whether the ledger already holds ``decision`` (checked before any event is built: re-adopting
    10 000 Services on a takeover compares 10 000 times)."""
    namespace, _, name = decision.service.partition("/")
    service = recorded.service
    return (
        recorded.ips == ips
        and recorded.pool == decision.pool
        and recorded.sharing_key == decision.sharing_key
        and (service.namespace, service.name, service.uid) == (namespace, name, uid)
    )


_ALLOCATION_TEXT = {
    core.AllocationReason.UNCHANGED: "unchanged",
    core.AllocationReason.ADOPTED: "re-adopted the recorded allocation",
    core.AllocationReason.ADOPTED_FROM_STATUS: "kept the address the Service's status already showed",
    core.AllocationReason.ADDITIONAL_FAMILY: "added an address of the second family",
    core.AllocationReason.REQUESTED_IPS: "the requested address",
    core.AllocationReason.REQUESTED_POOL: "lowest free address of the requested pool",
    core.AllocationReason.AUTO_ASSIGNED: "lowest free address of the first eligible pool",
}


def allocation_text(decision: core.Allocated) -> str:
    text = _ALLOCATION_TEXT[decision.reason]
    if decision.message:
        text = f"{text}: {decision.message}"
    if decision.deprecated_annotations:
        text += f" (deprecated annotations: {', '.join(decision.deprecated_annotations)})"
    return text
