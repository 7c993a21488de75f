"""The watcher's list marks on ``K8S`` (``KindListed``): how complete the stream is, said by the one who fills it.

- A reflector marks its kind complete once a list is in the stream (every object published, every subject the
  list lacks tombstoned), with the list's resourceVersion; a mark complete already stays as it is.
- Before the reflectors of a term list, every kind the stream holds no mark of is marked begun (not complete):
  a new stream, a purged one, a restored one or one lost with every NATS store. ipam decides nothing while a
  kind it decides from is not marked complete, so nothing is released, allocated or recorded on a world that
  only lacks what the lists have not brought back yet.
- While observing, the marks are looked at every ``CHECK_EVERY`` seconds: a kind whose mark went (the stream
  was purged or lost under a running watcher) is marked begun again and its reflector lists again.

Only kinds kept on ``K8S`` are marked (not the ``SECRETS`` kinds, which ipam does not read).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from schemas.events import KindListed, ObjectKind
from services.common.aio import cancellable
from services.common.bus import Bus
from services.common.subjects import SECRET_KINDS, StreamName, k8s_listed_subject

log = logging.getLogger(__name__)

#: How often the marks are looked at while observing (seconds): how long a purge under a running watcher can
#: go unnoticed. One direct get per kind each time.
CHECK_EVERY = 10.0


def marked(kind: ObjectKind) -> bool:
    """Whether lists of ``kind`` are marked (it is kept on ``K8S``)."""
    return kind not in SECRET_KINDS


async def mark_complete(bus: Bus, kind: ObjectKind, *, resource_version: str, objects: int) -> None:
    """Mark the list of ``kind`` complete, unless the stream says so already (a relist that found everything in
    place publishes nothing)."""
    await cancellable(_mark_complete(bus, kind, resource_version=resource_version, objects=objects))


async def _mark_complete(bus: Bus, kind: ObjectKind, *, resource_version: str, objects: int) -> None:
    subject = k8s_listed_subject(kind)
    held = await bus.last_value(StreamName.K8S, subject)
    if held is not None and isinstance(held.event, KindListed) and held.event.complete:
        return
    await bus.publish(subject, KindListed(kind=kind, complete=True, resource_version=resource_version,
                                          objects=objects))


async def unmarked(bus: Bus, kinds: Iterable[ObjectKind]) -> list[ObjectKind]:
    """The kinds among ``kinds`` whose mark the stream does not hold."""
    return [kind for kind in kinds if await bus.last_value(StreamName.K8S, k8s_listed_subject(kind)) is None]


async def mark_begun(bus: Bus, kinds: Iterable[ObjectKind], *, why: str) -> list[ObjectKind]:
    """Mark begun every kind of ``kinds`` the stream holds no mark of; those kinds."""
    return await cancellable(_mark_begun(bus, list(kinds), why=why))


async def _mark_begun(bus: Bus, kinds: list[ObjectKind], *, why: str) -> list[ObjectKind]:
    lost = await unmarked(bus, [kind for kind in kinds if marked(kind)])
    for kind in lost:
        await bus.publish(k8s_listed_subject(kind), KindListed(kind=kind, complete=False))
    if lost:
        log.warning("lists marked begun why=%s kinds=%s", why, ",".join(kind.value for kind in lost))
    return lost


async def watch_marks(bus: Bus, kinds: list[ObjectKind], relist: Callable[[ObjectKind], None], *,
                      every: float | None = None) -> None:
    """Every ``every`` seconds (``CHECK_EVERY``), mark begun the kinds whose marks went, and have them listed
    again (``relist``). A kind whose first list of the term is under way has a begun mark: it is not lost."""
    while True:
        await asyncio.sleep(CHECK_EVERY if every is None else every)  # a period, not a wait for something
        for kind in await mark_begun(bus, kinds, why="the stream lost them"):
            relist(kind)
