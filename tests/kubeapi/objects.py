"""What a write leaves: pure rules on object dicts (initial metadata, status subresource, immutable fields)."""

from __future__ import annotations

import copy
import datetime
import uuid
from typing import Any

from tests.kubeapi.resources import Resource

Obj = dict[str, Any]

IMMUTABLE_META = ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp")
"""Metadata a client cannot change by writing the object."""


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_part(obj: Obj) -> Obj:
    """Everything but metadata and status: what ``metadata.generation`` counts changes of."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def initialise(res: Resource, obj: Obj, *, keep_status: bool) -> None:
    """Server-set fields of a new object (named and namespaced already), in place."""
    obj["apiVersion"], obj["kind"] = res.api_version, res.kind
    meta = obj.setdefault("metadata", {})
    meta.setdefault("uid", str(uuid.uuid4()))
    meta.setdefault("creationTimestamp", now())
    meta["generation"] = 1
    for transient in ("resourceVersion", "deletionTimestamp", "managedFields", "selfLink"):
        meta.pop(transient, None)
    if res.status and not keep_status:
        obj.pop("status", None)  # status is written through its subresource only
    if res.storage == "namespaces":
        obj.setdefault("status", {"phase": "Active"})
    if res.defaulter:
        res.defaulter(obj)


def merge_write(res: Resource, old: Obj, new: Obj, subresource: str | None) -> Obj:
    """The object a write of ``new`` over ``old`` leaves.

    A ``/status`` write of a custom resource changes its status only; one of a built-in kind (Service, Node,
    Pod, ...) keeps the old spec and takes status and metadata from the write, as the API server's status
    strategies of those kinds do (they reset only ``spec``). A main write of a kind with a status subresource
    keeps the old status; immutable metadata always stays.
    """
    if subresource == "status" and res.custom:
        result = copy.deepcopy(old)
        _take_status(result, new)
        return result
    if subresource == "status":
        result = copy.deepcopy({k: v for k, v in new.items() if k in ("metadata", "status")} | spec_part(old))
    else:
        result = copy.deepcopy(new)
        if res.status:
            _take_status(result, old)
    result["apiVersion"], result["kind"] = res.api_version, res.kind
    meta = result.setdefault("metadata", {})
    for field in IMMUTABLE_META:
        if field in old["metadata"]:
            meta[field] = old["metadata"][field]
        else:
            meta.pop(field, None)
    meta.pop("managedFields", None)
    if res.defaulter:
        res.defaulter(result)
    return result


def _take_status(result: Obj, source: Obj) -> None:
    """``result``'s status made ``source``'s (absent when ``source`` has none), in place."""
    if "status" in source:
        result["status"] = copy.deepcopy(source["status"])
    else:
        result.pop("status", None)
