"""The object store: objects, one global resourceVersion, a bounded change history, injected faults.

Every public method takes the one lock (``Store.cond``); watches wait on that condition.
"""

from __future__ import annotations

import base64
import bisect
import collections
import copy
import enum
import heapq
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.kubeapi import errors, objects
from tests.kubeapi.errors import ApiError
from tests.kubeapi.patching import PatchError, PatchType, apply_patch
from tests.kubeapi.resources import Resource, ResourceTable
from tests.kubeapi.selectors import Filter

Obj = dict[str, Any]
ObjectKey = tuple[str, str, str]
"""(storage, namespace or "", name)"""
Place = tuple[str, str]
"""Where an object is within its storage: (namespace, name); the order lists and continue tokens follow."""

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class Change:
    """One committed write. ``obj`` is the object after it (for DELETED: the final object)."""

    rv: int
    type: EventType
    key: ObjectKey
    obj: Obj
    prev: Obj | None


@dataclass(frozen=True)
class Request:
    """One API request as served: ``resource`` is the storage name ("services", "ipaddresspools.metallb.io")."""

    verb: str
    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None
    code: int


@dataclass
class Fault:
    verb: str
    storage: str
    subresource: str | None
    error: ApiError
    remaining: int


def _rv_of(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))


def _parse_rv(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"invalid resource version: {text!r}") from None
    if value < 0:
        raise ApiError(400, f"invalid resource version: {text!r}")
    return value


class Store:
    def __init__(self, table: ResourceTable, *, history_limit: int = 10_000, require_namespaces: bool = False) -> None:
        self.table = table
        self.cond = threading.Condition(threading.RLock())
        self.history_limit = history_limit
        self.require_namespaces = require_namespaces
        self.closed = False
        self._rv = 0
        self._floor = 0
        self._trimmed = 0
        self.watches: set[Any] = set()
        """Open watch sessions (each has a ``cursor``: the resourceVersion it has delivered up to)."""
        self._objects: dict[ObjectKey, Obj] = {}
        #: the same objects by storage, and each storage's places in order (made again after an add or delete):
        #: a page of a list is found by bisection, not by sorting every object (50 000 Services: 100 pages)
        self._stored: dict[str, dict[Place, Obj]] = collections.defaultdict(dict)
        self._ordered: dict[str, list[Place]] = {}
        self._history: list[Change] = []
        self._faults: list[Fault] = []
        self._requests: collections.deque[Request] = collections.deque(maxlen=100_000)

    # ------------------------------------------------------------------ state
    @property
    def rv(self) -> int:
        with self.cond:
            return self._rv

    @property
    def floor(self) -> int:
        """The oldest resourceVersion a watch can still start from."""
        with self.cond:
            return self._floor

    def reaches(self, rv: int) -> bool:
        """Whether the kept history still holds every change after ``rv`` (for watches already open)."""
        with self.cond:
            return rv >= self._trimmed

    def changes_after(self, rv: int, *, open_watch: bool = False) -> list[Change]:
        """Changes with resourceVersion > rv; raises 410 Expired when history no longer reaches rv.

        A new request may not start before the compaction floor; an open watch may read on as long as the
        kept history reaches its cursor.
        """
        with self.cond:
            oldest = self._trimmed if open_watch else self._floor
            if rv < oldest:
                raise errors.expired(rv, oldest)
            lo, hi = 0, len(self._history)
            while lo < hi:
                mid = (lo + hi) // 2
                if self._history[mid].rv <= rv:
                    lo = mid + 1
                else:
                    hi = mid
            return self._history[lo:]

    def history(
        self, storage: str | None = None, namespace: str | None = None, name: str | None = None
    ) -> list[Change]:
        with self.cond:
            return [
                c
                for c in self._history
                if (storage is None or c.key[0] == storage)
                and (namespace is None or c.key[1] == namespace)
                and (name is None or c.key[2] == name)
            ]

    def compact(self) -> int:
        """Forget all history: watching or listing at any older resourceVersion now gives 410.

        Watches already open keep the changes they have not yet delivered, as a real API server's watch
        cache does: compaction expires new requests, not live streams.
        """
        with self.cond:
            cursors = [w.cursor for w in self.watches if w.cursor is not None]
            self._trimmed = min([*cursors, self._rv])
            self._history = [c for c in self._history if c.rv > self._trimmed]
            self._floor = self._rv
            return self._rv

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # ------------------------------------------------------------------ faults
    def fail_next(
        self, verb: str, resource: Resource, subresource: str | None, error: ApiError, times: int = 1
    ) -> None:
        with self.cond:
            self._faults.append(Fault(verb, resource.storage, subresource, error, times))

    def take_fault(self, verb: str, resource: Resource, subresource: str | None) -> ApiError | None:
        with self.cond:
            for fault in self._faults:
                if (fault.verb, fault.storage, fault.subresource) == (verb, resource.storage, subresource):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault.error
            return None

    # ------------------------------------------------------------------ request log
    def record(self, request: Request) -> None:
        with self.cond:
            self._requests.append(request)
            self.cond.notify_all()

    def requests(self) -> list[Request]:
        with self.cond:
            return list(self._requests)

    # ------------------------------------------------------------------ helpers
    def present(self, res: Resource, obj: Obj) -> Obj:
        out = copy.deepcopy(obj)
        out["apiVersion"] = res.api_version
        out["kind"] = res.kind
        return out

    def _key(self, res: Resource, namespace: str | None, name: str) -> ObjectKey:
        return (res.storage, (namespace or "") if res.namespaced else "", name)

    def _existing(self, res: Resource, namespace: str | None, name: str) -> Obj:
        obj = self._objects.get(self._key(res, namespace, name))
        if obj is None:
            raise errors.not_found(res.plural, res.group, name)
        return obj

    def _commit(self, key: ObjectKey, kind: EventType, obj: Obj, prev: Obj | None) -> Obj:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        stored, place = self._stored[key[0]], (key[1], key[2])
        if kind is EventType.DELETED:
            self._objects.pop(key, None)
            if stored.pop(place, None) is not None:
                self._ordered.pop(key[0], None)
        else:
            self._objects[key] = obj
            if stored.setdefault(place, obj) is obj:
                self._ordered.pop(key[0], None)
            stored[place] = obj
        self._history.append(Change(self._rv, kind, key, obj, prev))
        if len(self._history) > self.history_limit:
            dropped = len(self._history) - self.history_limit
            self._trimmed = self._history[dropped - 1].rv
            self._floor = max(self._floor, self._trimmed)
            del self._history[:dropped]
        self.cond.notify_all()
        return obj

    def _namespace_exists(self, namespace: str) -> bool:
        return ("namespaces", "", namespace) in self._objects

    def _generate_name(self, res: Resource, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
            if self._key(res, namespace, name) not in self._objects:
                return name

    def _new_object(self, res: Resource, namespace: str | None, body: Obj, *, keep_status: bool) -> Obj:
        obj = copy.deepcopy(body)
        if obj.get("kind") not in (None, res.kind):
            raise ApiError(400, f"the kind of the object ({obj.get('kind')}) does not match {res.kind}")
        meta = obj.setdefault("metadata", {})
        if res.namespaced:
            ns = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") not in (None, "", ns):
                raise ApiError(
                    400,
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = ns
            if self.require_namespaces and not self._namespace_exists(ns):
                raise errors.not_found("namespaces", "", ns)
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "metadata.name: Required value: name or generateName is required")
            meta["name"] = self._generate_name(res, meta.get("namespace"), meta["generateName"])
        key = self._key(res, meta.get("namespace"), meta["name"])
        if key in self._objects:
            raise errors.already_exists(res.plural, res.group, meta["name"])
        objects.initialise(res, obj, keep_status=keep_status)
        return obj

    def _commit_update(self, key: ObjectKey, old: Obj, result: Obj) -> Obj:
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if result == old:
            return old  # a no-op write changes nothing, as on a real API server
        if objects.spec_part(result) != objects.spec_part(old):
            result["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
        meta = result["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._commit(key, EventType.DELETED, result, old)
        return self._commit(key, EventType.MODIFIED, result, old)

    # ------------------------------------------------------------------ verbs
    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        with self.cond:
            return self.present(res, self._existing(res, namespace, name))

    def create(self, res: Resource, namespace: str | None, body: Obj) -> Obj:
        with self.cond:
            obj = self._new_object(res, namespace, body, keep_status=False)
            key = self._key(res, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            return self.present(res, self._commit(key, EventType.ADDED, obj, None))

    def update(self, res: Resource, namespace: str | None, name: str, body: Obj, subresource: str | None) -> Obj:
        with self.cond:
            old = self._existing(res, namespace, name)
            meta = body.get("metadata") or {}
            if meta.get("name") not in (None, name):
                raise ApiError(
                    400, f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
                )
            sent_rv = str(meta.get("resourceVersion") or "")
            if sent_rv and sent_rv != _rv_of(old):
                raise errors.conflict(res.plural, res.group, name)
            if not sent_rv and res.custom:
                raise ApiError(422, "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
            result = objects.merge_write(res, old, body, subresource)
            key = self._key(res, namespace, name)
            return self.present(res, self._commit_update(key, old, result))

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch_type: PatchType,
        body: Any,
        subresource: str | None,
    ) -> Obj:
        with self.cond:
            key = self._key(res, namespace, name)
            old = self._objects.get(key)
            if old is None:
                if patch_type is PatchType.APPLY and isinstance(body, dict):
                    body = {**body, "metadata": {**body.get("metadata", {}), "name": name}}
                    return self.create(res, namespace, body)
                raise errors.not_found(res.plural, res.group, name)
            try:
                patched = apply_patch(self.present(res, old), patch_type, body)
            except PatchError as exc:
                raise ApiError(422, str(exc)) from None
            meta = patched.get("metadata") or {}
            if str(meta.get("resourceVersion") or _rv_of(old)) != _rv_of(old):
                raise errors.conflict(res.plural, res.group, name)
            if meta.get("name") != name:
                raise ApiError(422, "metadata.name: Invalid value: the name cannot be changed by a patch")
            result = objects.merge_write(res, old, patched, subresource)
            return self.present(res, self._commit_update(key, old, result))

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
    ) -> tuple[Obj, bool]:
        """Delete; returns the final object and whether it is gone (False while finalizers hold it)."""
        with self.cond:
            key = self._key(res, namespace, name)
            old = self._existing(res, namespace, name)
            meta = old["metadata"]
            if precondition_uid and precondition_uid != meta.get("uid"):
                why = (
                    f"Precondition failed: UID in precondition: {precondition_uid}, "
                    f"UID in object meta: {meta.get('uid')}"
                )
                raise errors.conflict(res.plural, res.group, name, why)
            if precondition_rv and precondition_rv != meta.get("resourceVersion"):
                why = (
                    f"Precondition failed: ResourceVersion in precondition: {precondition_rv}, "
                    f"ResourceVersion in object meta: {meta.get('resourceVersion')}"
                )
                raise errors.conflict(res.plural, res.group, name, why)
            if meta.get("finalizers"):
                if meta.get("deletionTimestamp"):
                    return self.present(res, old), False
                marked = copy.deepcopy(old)
                marked["metadata"]["deletionTimestamp"] = objects.now()
                marked["metadata"]["deletionGracePeriodSeconds"] = 0
                return self.present(res, self._commit(key, EventType.MODIFIED, marked, old)), False
            if res.storage == "namespaces":
                self._delete_namespace_contents(name)
            return self.present(res, self._commit(key, EventType.DELETED, old, old)), True

    def _delete_namespace_contents(self, namespace: str) -> None:
        for key in sorted(k for k in self._objects if k[1] == namespace):
            self._commit(key, EventType.DELETED, self._objects[key], self._objects[key])

    def list(
        self,
        res: Resource,
        flt: Filter,
        *,
        resource_version: str | None = None,
        match: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> tuple[list[Obj], int, str | None]:
        """Items, the list's resourceVersion, and a continue token when ``limit`` cut the list."""
        with self.cond:
            start: Place | None = None
            if continue_token:
                at, start = self._decode_continue(continue_token)
            elif resource_version and match == "Exact":
                at = _parse_rv(resource_version)
            else:
                at = self._rv
                if resource_version and resource_version != "0" and _parse_rv(resource_version) > self._rv:
                    raise ApiError(
                        504, f"Too large resource version: {resource_version}, current: {self._rv}", reason="Timeout"
                    )
            if at > self._rv:
                raise ApiError(504, f"Too large resource version: {at}, current: {self._rv}", reason="Timeout")
            selected: list[Obj] = []
            for obj in self._snapshot(res.storage, at, after=start):
                if flt.matches(obj):
                    selected.append(obj)
                    if limit and len(selected) > limit:
                        break  # one more than the page tells that the list goes on: no need to present the rest
            items = [self.present(res, obj) for obj in selected]
            token = None
            if limit and len(items) > limit:
                items = items[:limit]
                last = items[-1]["metadata"]
                token = self._encode_continue(at, (last.get("namespace", ""), last["name"]))
            return items, at, token

    def _snapshot(self, storage: str, at: int, *, after: Place | None) -> Iterator[Obj]:
        """The objects of one storage as they were at resourceVersion ``at`` (later changes undone), in order of
        place, from just after ``after``."""
        if at < self._floor:
            raise errors.expired(at, self._floor)
        stored = self._stored[storage]
        ordered = self._ordered.get(storage)
        if ordered is None:
            ordered = self._ordered[storage] = sorted(stored)
        then: dict[Place, Obj | None] = {}  # the places changed since ``at``: what each held at ``at``
        if at != self._rv:
            for change in reversed(self.changes_after(at)):
                if change.key[0] == storage:
                    absent = change.type is EventType.ADDED or change.prev is None
                    then[(change.key[1], change.key[2])] = None if absent else change.prev
        gone_since = sorted(place for place, obj in then.items() if obj is not None and place not in stored)
        places = ordered[bisect.bisect_right(ordered, after):] if after is not None else ordered
        for place in heapq.merge(places, gone_since):
            if after is not None and place <= after:
                continue
            obj = then[place] if place in then else stored[place]
            if obj is not None:
                yield obj

    @staticmethod
    def _encode_continue(at: int, last: Place) -> str:
        return base64.urlsafe_b64encode(json.dumps({"rv": at, "after": list(last)}).encode()).decode()

    def _decode_continue(self, token: str) -> tuple[int, Place]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            at, (namespace, name) = int(data["rv"]), data["after"]
            after = (str(namespace), str(name))
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, "continue key is not valid") from None
        if at < self._floor:
            raise ApiError(
                410,
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter.",
                reason="Expired",
            )
        return at, after

    # ------------------------------------------------------------------ direct access (tests)
    def put(self, res: Resource, obj: Obj) -> Obj:
        """Create or replace an object as given (status included), bypassing HTTP semantics."""
        with self.cond:
            meta = obj.get("metadata") or {}
            namespace = (meta.get("namespace") or "default") if res.namespaced else None
            key = self._key(res, namespace, meta.get("name", ""))
            old = self._objects.get(key)
            if old is None:
                new = self._new_object(res, namespace, obj, keep_status=True)
                key = self._key(res, new["metadata"].get("namespace"), new["metadata"]["name"])
                return self.present(res, self._commit(key, EventType.ADDED, new, None))
            result = copy.deepcopy(obj)
            result["apiVersion"], result["kind"] = res.api_version, res.kind
            rmeta = result.setdefault("metadata", {})
            for field in objects.IMMUTABLE_META:
                if field in old["metadata"]:
                    rmeta.setdefault(field, old["metadata"][field])
            if res.defaulter:
                res.defaulter(result)
            return self.present(res, self._commit_update(key, old, result))

    def remove(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        """Delete at once, finalizers or not; None when there was nothing to delete."""
        with self.cond:
            key = self._key(res, namespace, name)
            old = self._objects.get(key)
            if old is None:
                return None
            return self.present(res, self._commit(key, EventType.DELETED, old, old))

    def peek(self, res: Resource, namespace: str | None, name: str) -> Obj | None:
        with self.cond:
            obj = self._objects.get(self._key(res, namespace, name))
            return None if obj is None else self.present(res, obj)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)
