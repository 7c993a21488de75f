"""What each Service shows, as last listed, read, written or told by the observe side: the status writer's
memory that spares it a read before each write.

Per Service a compact view: its uid, resourceVersion, ingress and the two pool annotations — nothing else
of the object is kept. A write computed from the view carries its resourceVersion, so a Service changed
since answers 409: the view is forgotten and the Service read again (``converge.py``), nothing is lost.

Kept for LoadBalancer Services and for Services that show an ingress (one that stopped being a
LoadBalancer still has its addresses cleared); other Services are not remembered. Views of one term of
leadership only: a new status writer starts empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.common.compact import add_member, discard_member, interned
from services.watcher.annotations import DEPRECATED_POOL_ANNOTATION, POOL_ANNOTATION

Obj = dict[str, Any]
#: one ingress entry as its (key, value) pairs, in the order the API server sent them
Entry = tuple[tuple[str, Any], ...]
_ANNOTATIONS = (POOL_ANNOTATION, DEPRECATED_POOL_ANNOTATION)


@dataclass(frozen=True, slots=True)
class ShownService:
    uid: str
    resource_version: str
    ingress: tuple[Entry, ...]
    pool: str | None
    deprecated_pool: str | None

    def as_object(self, namespace: str, name: str) -> Obj:
        """The view as the few fields of a Service object that the status writer reads."""
        annotations = {key: value for key, value in zip(_ANNOTATIONS, (self.pool, self.deprecated_pool),
                                                          strict=True) if value is not None}
        return {"metadata": {"namespace": namespace, "name": name, "uid": self.uid,
                             "resourceVersion": self.resource_version, "annotations": annotations},
                "status": {"loadBalancer": {"ingress": [dict(entry) for entry in self.ingress]}}}


def view(obj: Obj) -> ShownService | None:
    """The compact view of a Service object; None for one that is worth no memory (see above)."""
    metadata: Obj = obj.get("metadata") or {}
    ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    if not ingress and (obj.get("spec") or {}).get("type") != "LoadBalancer" and "spec" in obj:
        return None
    annotations: Obj = metadata.get("annotations") or {}
    return ShownService(uid=interned(str(metadata.get("uid") or "")),
                        resource_version=interned(str(metadata.get("resourceVersion") or "")),
                        ingress=tuple(_entry(entry) for entry in ingress if isinstance(entry, dict)),
                        pool=interned(annotations.get(POOL_ANNOTATION)),
                        deprecated_pool=interned(annotations.get(DEPRECATED_POOL_ANNOTATION)))


def _entry(entry: Obj) -> Entry:
    """An ingress entry's pairs, their short strings interned (``ip``, ``ipMode``, ``VIP``, the address:
    read from every Service written, they are otherwise a copy each)."""
    return tuple((interned(key), interned(value)) for key, value in entry.items())


def shown_ips(shown: ShownService | None) -> list[str]:
    """The addresses a view shows."""
    if shown is None:
        return []
    return [ip for entry in shown.ingress if isinstance(ip := dict(entry).get("ip"), str) and ip]


def _newer(candidate: str, known: str) -> bool:
    """Whether ``candidate`` is a later resourceVersion than ``known``. They are opaque to clients, but
    every API server (etcd's revision) makes them growing integers; anything else counts as newer."""
    if candidate.isdigit() and known.isdigit():
        return int(candidate) >= int(known)
    return True


class ShownServices:
    """The views by (namespace, name)."""

    def __init__(self) -> None:
        self._views: dict[tuple[str, str], ShownService] = {}
        #: Who shows each address, by the views (an index: the views' ingress IPs; small sets kept as tuples).
        self._showing: dict[str, tuple[tuple[str, str], ...]] = {}

    def __len__(self) -> int:
        return len(self._views)

    def showing(self, ip: str) -> frozenset[tuple[str, str]]:
        """The Services (namespace, name) whose view shows ``ip``."""
        return frozenset(self._showing.get(ip, ()))

    def _put(self, ident: tuple[str, str], shown: ShownService | None) -> None:
        old = self._views.pop(ident, None)
        for ip in shown_ips(old):
            discard_member(self._showing, ip, ident)
        if shown is not None:
            self._views[ident] = shown
            for ip in shown_ips(shown):
                add_member(self._showing, ip, ident)

    def record(self, obj: Obj) -> None:
        """Remember what ``obj`` (a Service as the API server sent it) shows, unless an older version."""
        metadata: Obj = obj.get("metadata") or {}
        ident = (interned(str(metadata.get("namespace") or "")), interned(str(metadata.get("name") or "")))
        shown = view(obj)
        known = self._views.get(ident)
        if shown is None:
            self._put(ident, None)
        elif known is None or _newer(shown.resource_version, known.resource_version):
            self._put(ident, shown)

    def forget(self, namespace: str, name: str) -> None:
        self._put((namespace, name), None)

    def get(self, namespace: str, name: str) -> ShownService | None:
        return self._views.get((namespace, name))
