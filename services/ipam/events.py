"""The ipam's decision events, each built here from what the allocator or the validator answered. Pure.

The decider decides *whether* an event is due (it differs from the ledger); this module says *what*
that event holds. L2 placement events are built by ``layer2.py``, beside the placement bookkeeping.
"""

from __future__ import annotations

from schemas import metallb
from schemas.events import (
    AllocationFailed,
    ConfigObjectObserved,
    ConfigProblem,
    ConfigProblemReason,
    ConfigurationEvaluated,
    FamilyUsage,
    InForceSlot,
    IPAllocated,
    IPReleased,
    PoolUsageReported,
    ServiceId,
)
from services.ipam import core

#: The events of a Service's allocation subject (``ipam.allocation.<ns>.<name>``).
AllocationEvent = IPAllocated | IPReleased | AllocationFailed


def service_id(key: core.ServiceKey, uid: str = "") -> ServiceId:
    namespace, _, name = key.partition("/")
    return ServiceId(namespace=namespace, name=name, uid=uid)


# --- allocations --------------------------------------------------------------------------------

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


def allocated_ips(decision: core.Allocated) -> tuple[str, ...]:
    return tuple(str(ip) for ip in decision.ips)


def same_allocation(recorded: IPAllocated, decision: core.Allocated, uid: str, ips: tuple[str, ...]) -> bool:
    """Whether ``recorded`` already says what :func:`allocated` would (checked before any event is
    built: re-adopting 10 000 Services on a takeover compares 10 000 times)."""
    namespace, _, name = decision.service.partition("/")
    service = recorded.service
    return (
        recorded.ips == ips
        and recorded.pool == decision.pool
        and recorded.sharing_key == decision.sharing_key
        and (service.namespace, service.name, service.uid) == (namespace, name, uid)
    )


def allocated(decision: core.Allocated, uid: str, ips: tuple[str, ...]) -> IPAllocated:
    """The allocation ``decision`` of the Service ``uid``, holding ``ips`` (:func:`allocated_ips`)."""
    return IPAllocated(
        service=service_id(decision.service, uid),
        ips=ips,
        pool=decision.pool,
        sharing_key=decision.sharing_key,
        reason=allocation_text(decision),
        deprecated_annotations=decision.deprecated_annotations,
    )


def moved(recorded: IPAllocated, change: core.Moved) -> IPAllocated:
    """A recorded allocation whose addresses a pool change moved to another pool."""
    return recorded.model_copy(
        update={"pool": change.new_pool, "reason": f"pool changed from {change.old_pool} to {change.new_pool}"}
    )


def released(decision: core.Released, uid: str = "", message: str = "") -> IPReleased:
    """The release; ``message`` explains it when the allocator gave no message of its own."""
    return IPReleased(
        service=service_id(decision.service, uid),
        ips=tuple(str(ip) for ip in decision.ips),
        reason=decision.reason,
        message=decision.message or message,
    )


def failed(refused: core.Refused, uid: str) -> AllocationFailed:
    return AllocationFailed(service=service_id(refused.service, uid), reason=refused.reason, message=refused.message)


def usage_reported(usage: core.PoolUsage) -> PoolUsageReported:
    return PoolUsageReported(
        pool=usage.pool,
        ipv4=FamilyUsage(assigned=usage.assigned_v4, available=usage.available_v4),
        ipv6=FamilyUsage(assigned=usage.assigned_v6, available=usage.available_v6),
    )


# --- configuration ------------------------------------------------------------------------------


def unparsable_object(observed: ConfigObjectObserved, error: metallb.InvalidConfigObject) -> ConfigProblem:
    return ConfigProblem(
        kind=observed.kind,
        namespace=observed.ref.namespace,
        name=observed.ref.name,
        field=error.field,
        reason=ConfigProblemReason.INVALID_OBJECT,
        message=str(error),
    )


def invalid_configuration(problem: metallb.ConfigProblem) -> ConfigProblem:
    return ConfigProblem(
        kind=problem.kind,
        namespace=problem.namespace or "",
        name=problem.name,
        field=problem.field,
        reason=problem.code,
        message=str(problem),
    )


def unusable_pools(error: core.InvalidPools) -> ConfigProblem:
    return ConfigProblem(kind="IPAddressPool", reason=ConfigProblemReason.INVALID_POOLS, message=str(error))


def configuration_evaluated(
    *,
    valid: bool,
    listed: tuple[ConfigProblem, ...],
    total: int,
    generation: str,
    slot: InForceSlot | None,
    parts: int,
) -> ConfigurationEvaluated:
    """The verdict on the observed configuration: the problems ``listed`` (bounded: see
    ``schemas/events/in_force.py``) of ``total``, and the configuration in force (its digest, and
    where its ``parts`` are, if any)."""
    return ConfigurationEvaluated(
        valid=valid,
        problems=listed,
        problems_total=total,
        in_force_generation=generation,
        in_force_slot=slot if parts else None,
        in_force_parts=parts,
    )
