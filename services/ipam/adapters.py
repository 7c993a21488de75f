"""Translations of the bus's models into the allocator core's inputs. Pure.

The allocator's answers become events in ``events.py``.
"""

from __future__ import annotations

from schemas.events import ServiceObserved
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
