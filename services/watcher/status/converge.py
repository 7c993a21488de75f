"""Make one Kubernetes object show one desired state: read, compare, write only what differs.

A Service is not read when the writer has seen it already (listed at start, told by the observe side,
or answered to its own last write: ``shown.py``). An announcement status not known to exist (listed at start,
read or made since) is made first, and read only when the API server says it is there already: a cold start
makes tens of thousands of them, and a read that answers 404 before each would be a third of its requests.

Every write carries the ``resourceVersion`` it was computed from, so a concurrent change answers 409;
the object is then read again and the comparison redone (bounded, with a growing pause). A missing
object (404) ends the work quietly: there is nothing to show the state on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from services.common.errors import Conflict, NotFound
from services.watcher.annotations import DEPRECATED_POOL_ANNOTATION, POOL_ANNOTATION
from services.watcher.status import metrics
from services.watcher.status.configstate import ConfigStateTarget
from services.watcher.status.desired import (
    LABEL_MANAGED_BY,
    LABEL_NODE,
    LABEL_SERVICE_NAME,
    LABEL_SERVICE_NAMESPACE,
    MANAGED_BY,
    Absent,
    AnnouncementStatusTarget,
    Claim,
    ObjectKey,
    PoolTarget,
    ServiceTarget,
    Target,
    TargetKind,
    target_kind,
)
from services.watcher.status.objects import (
    CONFIGURATION_STATES,
    IP_ADDRESS_POOLS,
    SERVICE_BGP_STATUSES,
    SERVICE_L2_STATUSES,
    SERVICES,
    Obj,
    ObjectApi,
    Resource,
    meta,
    resource_version,
)
from services.watcher.status.shown import ShownServices

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


class Outcome(StrEnum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"
    GONE = "gone"


class Converger:
    def __init__(self, api: ObjectApi, *, namespace: str, max_conflicts: int = 6, conflict_pause: float = 0.02,
                 clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.api = api
        self.namespace = namespace
        self._max_conflicts = max_conflicts
        self._pause = conflict_pause
        self._clock = clock
        #: whether the API server keeps ``status.loadBalancer.ingress[].ipMode`` (learnt from answers)
        self.ip_mode = True
        #: what each Service shows as last seen: a write computed from it needs no read first (``shown.py``)
        self.shown = ShownServices()
        #: the announcement statuses known to exist: the others are made before they are read
        self.existing: set[ObjectKey] = set()

    async def converge(self, target: Target) -> Outcome:
        """Write ``target``; retries conflicts, raises a
        :class:`~services.common.errors.MetalbusError` for anything else."""
        kind = target_kind(target).value
        for attempt in range(self._max_conflicts):
            try:
                return await self._once(target, kind)
            except Conflict:
                metrics.CONFLICTS.labels(kind).inc()
                if attempt + 1 == self._max_conflicts:
                    raise
                await asyncio.sleep(self._pause * 2**attempt)  # let the other writer finish
            except NotFound:
                return Outcome.GONE
        raise AssertionError("unreachable")

    async def _once(self, target: Target, kind: str) -> Outcome:
        if isinstance(target, ServiceTarget):
            return await self._service(target)
        if isinstance(target, PoolTarget):
            return await self._pool(target)
        if isinstance(target, AnnouncementStatusTarget):
            return await self._announcement(target)
        if isinstance(target, ConfigStateTarget):
            return await self._config_state(target)
        return await self._absent(target)

    async def _patch(self, resource: Resource, namespace: str, name: str, body: Obj, *,
                     status: bool) -> Obj:
        metrics.WRITES.labels(resource.kind, "patch_status" if status else "patch").inc()
        return await self.api.patch(resource, namespace, name, body, status=status)

    # --- Service ------------------------------------------------------------------------------

    async def _service(self, target: ServiceTarget) -> Outcome:
        try:
            return await self._service_from(target, await self._shown_service(target))
        except (Conflict, NotFound):
            self.shown.forget(target.namespace, target.name)  # read again before the next try
            raise

    async def _shown_service(self, target: ServiceTarget) -> Obj:
        """The Service as last seen (no request) when it is the one ``target`` is for; else read."""
        known = self.shown.get(target.namespace, target.name)
        if known is not None and (not target.uid or known.uid == target.uid):
            return known.as_object(target.namespace, target.name)
        metrics.READS.labels(SERVICES.kind).inc()
        obj = await self.api.get(SERVICES, target.namespace, target.name)
        self.shown.record(obj)
        return obj

    async def _service_from(self, target: ServiceTarget, obj: Obj) -> Outcome:
        if target.uid and meta(obj).get("uid") not in (None, "", target.uid):
            return Outcome.GONE  # the Service was deleted and made again: the decision was for the old one
        written = False
        ingress, annotations = service_changes(target, obj, ip_mode=self.ip_mode)
        if ingress is not None:
            # A Service's status write keeps the metadata it carries (its status strategy resets only spec):
            # the annotation goes with the status, one request and one change to watch. A server that kept
            # only the status has the annotation written by a second patch below.
            written_meta: Obj = {"resourceVersion": resource_version(obj)}
            if annotations:
                written_meta["annotations"] = annotations
            body = {"metadata": written_meta, "status": {"loadBalancer": {"ingress": ingress or None}}}
            obj = await self._patch(SERVICES, target.namespace, target.name, body, status=True)
            self.shown.record(obj)
            written = True
            shown = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if self.ip_mode and ingress and shown and all("ipMode" not in entry for entry in shown):
                self.ip_mode = False
                log.info("the API server keeps no ingress ipMode (Kubernetes < 1.30): not asking for it")
            annotations = service_changes(target, obj, ip_mode=self.ip_mode)[1]
        if annotations:
            body = {"metadata": {"resourceVersion": resource_version(obj), "annotations": annotations}}
            self.shown.record(await self._patch(SERVICES, target.namespace, target.name, body, status=False))
            written = True
        return Outcome.WRITTEN if written else Outcome.UNCHANGED

    # --- IPAddressPool status -----------------------------------------------------------------

    async def _pool(self, target: PoolTarget) -> Outcome:
        obj = await self.api.get(IP_ADDRESS_POOLS, self.namespace, target.name)
        if pool_shows(target, obj):
            return Outcome.UNCHANGED
        body = {"metadata": {"resourceVersion": resource_version(obj)}, "status": pool_status(target)}
        await self._patch(IP_ADDRESS_POOLS, self.namespace, target.name, body, status=True)
        return Outcome.WRITTEN

    # --- ServiceL2Status / ServiceBGPStatus ---------------------------------------------------

    async def _announcement(self, target: AnnouncementStatusTarget) -> Outcome:
        key = target.key
        resource = SERVICE_L2_STATUSES if key.kind is TargetKind.L2_STATUS else SERVICE_BGP_STATUSES
        try:
            outcome = await self._ensure_with_status(resource, key.namespace, key.name, announcement_labels(target),
                                                     announcement_status(target), known=key in self.existing)
        except NotFound:
            self.existing.discard(key)
            raise
        self.existing.add(key)
        return outcome

    async def _ensure_with_status(self, resource: Resource, namespace: str, name: str,
                                  labels: dict[str, str], status: Obj,
                                  same: Callable[[Obj], bool] | None = None, known: bool = True) -> Outcome:
        """Create the object if missing, then make its labels and status match. ``known`` False: the object is
        most likely missing, so it is made first and read only if it turns out to be there."""
        written = False
        obj: Obj | None = None
        if not known:
            with contextlib.suppress(Conflict):  # there already: read below
                obj = await self._create(resource, namespace, name, labels)
                written = True
        if obj is None:
            try:
                obj = await self.api.get(resource, namespace, name)
            except NotFound:
                obj = await self._create(resource, namespace, name, labels)
                written = True
        current_labels = meta(obj).get("labels") or {}
        if any(current_labels.get(key) != value for key, value in labels.items()):
            body: Obj = {"metadata": {"resourceVersion": resource_version(obj), "labels": labels}}
            obj = await self._patch(resource, namespace, name, body, status=False)
            written = True
        current = obj.get("status") or {}
        if not (same(current) if same else current == status):
            body = {"metadata": {"resourceVersion": resource_version(obj)},
                    "status": {**{key: None for key in current if key not in status}, **status}}
            await self._patch(resource, namespace, name, body, status=True)
            written = True
        return Outcome.WRITTEN if written else Outcome.UNCHANGED

    async def _create(self, resource: Resource, namespace: str, name: str, labels: dict[str, str]) -> Obj:
        """Make the object (its status is written by a patch of its own); :class:`Conflict` if it exists."""
        metrics.WRITES.labels(resource.kind, "create").inc()
        body = {"apiVersion": resource.api_version, "kind": resource.kind,
                "metadata": {"name": name, "namespace": namespace, "labels": labels}}
        return await self.api.create(resource, namespace, body)

    async def _absent(self, target: Absent) -> Outcome:
        resource = {TargetKind.L2_STATUS: SERVICE_L2_STATUSES,
                    TargetKind.BGP_STATUS: SERVICE_BGP_STATUSES}.get(target.key.kind)
        if resource is None:
            return Outcome.UNCHANGED
        metrics.WRITES.labels(resource.kind, "delete").inc()
        self.existing.discard(target.key)
        try:
            await self.api.delete(resource, target.key.namespace, target.key.name)
        except NotFound:
            return Outcome.UNCHANGED
        return Outcome.WRITTEN

    # --- ConfigurationState -------------------------------------------------------------------

    async def _config_state(self, target: ConfigStateTarget) -> Outcome:
        namespace = self.namespace
        labels = {"metallb.io/component-type": "controller", LABEL_MANAGED_BY: MANAGED_BY}
        try:
            obj = await self.api.get(CONFIGURATION_STATES, namespace, target.name)
        except NotFound:
            obj = {}
        status = config_status(target, obj.get("status") or {}, now=self._clock())
        return await self._ensure_with_status(
            CONFIGURATION_STATES, namespace, target.name, labels, status,
            same=lambda current: _without_times(current) == _without_times(status))


def pool_status(target: PoolTarget) -> dict[str, int]:
    return {"assignedIPv4": target.assigned_ipv4, "assignedIPv6": target.assigned_ipv6,
            "availableIPv4": target.available_ipv4, "availableIPv6": target.available_ipv6}


def pool_shows(target: PoolTarget, obj: Obj) -> bool:
    """Whether the pool ``obj`` shows the counts of ``target``."""
    wanted = pool_status(target)
    return {key: (obj.get("status") or {}).get(key) for key in wanted} == wanted


def config_status(target: ConfigStateTarget, current: Obj, *, now: datetime) -> Obj:
    """The ConfigurationState status to write: conditions merged by type (others kept), transition
    times kept while a condition's status does not change."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    by_type: dict[str, Obj] = {c.get("type", ""): c for c in current.get("conditions") or []}
    for condition in target.conditions:
        before = by_type.get(condition.type) or {}
        same_status = before.get("status") == condition.status.value
        by_type[condition.type] = {
            "type": condition.type, "status": condition.status.value, "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": before.get("lastTransitionTime", stamp) if same_status else stamp,
        }
    status: Obj = {key: value for key, value in current.items() if key not in ("conditions",)}
    status["conditions"] = [by_type[key] for key in sorted(by_type)]
    if target.result is not None:
        status["result"] = target.result.value
        if target.error_summary:
            status["errorSummary"] = target.error_summary
        else:
            status.pop("errorSummary", None)
    return status


def _without_times(status: Obj) -> Obj:
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
    return {**status, "conditions": conditions}


def service_changes(target: ServiceTarget, obj: Obj, *, ip_mode: bool = True
                    ) -> tuple[list[Obj] | None, dict[str, str | None]]:
    """What the Service lacks: the ingress list to write (None: already right) and annotation changes.

    ``ip_mode`` False: the API server drops ``ipMode`` (Kubernetes before 1.30), so it is not asked for."""
    current = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    wanted: list[Obj] = [{"ip": ip, "ipMode": "VIP"} if ip_mode else {"ip": ip} for ip in target.ips]
    if target.claim is Claim.HANDED_OVER:
        wanted = [entry for entry in current if entry.get("ip") not in target.strip]
    annotations = meta(obj).get("annotations") or {}
    changes: dict[str, str | None] = {}
    if target.pool is not None and annotations.get(POOL_ANNOTATION) != target.pool:
        changes[POOL_ANNOTATION] = target.pool
    if target.pool is None and POOL_ANNOTATION in annotations:
        changes[POOL_ANNOTATION] = None
    if DEPRECATED_POOL_ANNOTATION in annotations:
        changes[DEPRECATED_POOL_ANNOTATION] = None
    return (wanted if wanted != current else None), changes


def announcement_labels(target: AnnouncementStatusTarget) -> dict[str, str]:
    return {LABEL_NODE: target.node, LABEL_SERVICE_NAME: target.service_name,
            LABEL_SERVICE_NAMESPACE: target.service_namespace, LABEL_MANAGED_BY: MANAGED_BY}


def announcement_status(target: AnnouncementStatusTarget) -> Obj:
    status: Obj = {"node": target.node, "serviceName": target.service_name,
                   "serviceNamespace": target.service_namespace}
    if target.interfaces:
        status["interfaces"] = [{"name": name} for name in target.interfaces]
    if target.peers:
        status["peers"] = list(target.peers)
    return status


def shows(target: ServiceTarget | AnnouncementStatusTarget, obj: Obj, *, ip_mode: bool = True) -> bool:
    """Whether ``obj`` (as listed) already shows ``target`` (``ip_mode``: see :func:`service_changes`)."""
    if isinstance(target, ServiceTarget):
        ingress, annotations = service_changes(target, obj, ip_mode=ip_mode)
        return ingress is None and not annotations
    labels = meta(obj).get("labels") or {}
    return (all(labels.get(k) == v for k, v in announcement_labels(target).items())
            and (obj.get("status") or {}) == announcement_status(target))
