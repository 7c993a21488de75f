"""At start: which known objects Kubernetes does not show yet, found with one list per kind.

Services and the per-node status objects can number in the thousands; listing them once (in pages)
costs a handful of requests where a read per object would cost thousands. Status objects metalbus
made that no announcement explains any more are returned too, so the writer deletes them.
"""

from __future__ import annotations

from services.watcher.status.converge import shows
from services.watcher.status.desired import (
    LABEL_MANAGED_BY,
    MANAGED_BY,
    AnnouncementStatusTarget,
    ObjectKey,
    ServiceTarget,
    StatusState,
    TargetKind,
    target,
)
from services.watcher.status.objects import (
    SERVICE_BGP_STATUSES,
    SERVICE_L2_STATUSES,
    SERVICES,
    Obj,
    ObjectApi,
    meta,
)
from services.watcher.status.shown import ShownServices

#: up to this many known Services, each is read on its own rather than listing all Services
READ_EACH_UP_TO = 200


def _index(items: list[Obj], kind: TargetKind) -> dict[ObjectKey, Obj]:
    return {ObjectKey(kind, meta(obj).get("namespace", ""), meta(obj).get("name", "")): obj for obj in items}


async def initial_sync(api: ObjectApi, state: StatusState, *, shown: ShownServices | None = None,
                       existing: set[ObjectKey] | None = None) -> list[ObjectKey]:
    """The keys to write: known objects shown wrongly or not at all, and stray status objects. ``shown``:
    told every Service listed, so that writing one needs no read first; ``existing``: given the announcement
    statuses listed, so that only the others are made without a read first."""
    namespace = state.namespace
    keys = state.object_keys()  # made and sorted once: ~5 µs a Service (0.1 s at 20 000), three times before
    services = sum(1 for key in keys if key.kind is TargetKind.SERVICE)
    listed: dict[ObjectKey, Obj] = {}
    if services > READ_EACH_UP_TO:
        items = await api.list(SERVICES, None)
        if shown is not None:
            for item in items:
                shown.record(item)
        listed = _index(items, TargetKind.SERVICE)
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    listed |= _index(await api.list(SERVICE_L2_STATUSES, namespace, label_selector=selector),
                     TargetKind.L2_STATUS)
    listed |= _index(await api.list(SERVICE_BGP_STATUSES, namespace, label_selector=selector),
                     TargetKind.BGP_STATUS)
    if existing is not None:
        existing.update(key for key in listed if key.kind is not TargetKind.SERVICE)
    out: list[ObjectKey] = []
    for key in keys:
        desired = target(state, key)
        obj = listed.get(key)
        if isinstance(desired, ServiceTarget) and services <= READ_EACH_UP_TO:
            pass  # few: each is read when written, cheaper than listing every Service of the cluster
        elif isinstance(desired, ServiceTarget):
            if obj is None:
                continue  # the Service is gone: nothing to show the allocation on
            if shows(desired, obj):
                continue
        elif isinstance(desired, AnnouncementStatusTarget) and obj is not None and shows(desired, obj):
            continue
        out.append(key)
    known = set(keys)
    out += sorted(key for key in listed if key.kind is not TargetKind.SERVICE and key not in known)
    return out
