"""Patch bodies: JSON merge patch (RFC 7386), strategic merge treated as merge, JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
import enum
from typing import Any

Obj = dict[str, Any]


class PatchError(ValueError):
    """A patch that cannot be applied (the server answers 422 or 400)."""


class PatchType(enum.Enum):
    JSON = "application/json-patch+json"
    MERGE = "application/merge-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"
    APPLY = "application/apply-patch+yaml"

    @classmethod
    def from_content_type(cls, content_type: str) -> PatchType:
        base = content_type.split(";")[0].strip().lower()
        for member in cls:
            if member.value == base:
                return member
        raise PatchError(f"the body of the request was in an unknown format: {base}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            continue  # strategic-merge directives: not modelled
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _walk(doc: Any, pointer: str) -> tuple[Any, str]:
    """Container and last token of a JSON pointer."""
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    tokens = [_unescape(t) for t in pointer[1:].split("/")]
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, pointer)
    return node, tokens[-1]


def _child(node: Any, token: str, pointer: str) -> Any:
    try:
        if isinstance(node, list):
            return node[int(token)]
        return node[token]
    except (KeyError, IndexError, ValueError, TypeError):
        raise PatchError(f"path {pointer!r} does not exist") from None


def _get(doc: Any, pointer: str) -> Any:
    if pointer == "":
        return doc
    parent, last = _walk(doc, pointer)
    return _child(parent, last, pointer)


def _remove(doc: Any, pointer: str) -> Any:
    parent, last = _walk(doc, pointer)
    value = _child(parent, last, pointer)
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
    return value


def _add(doc: Any, pointer: str, value: Any) -> None:
    parent, last = _walk(doc, pointer)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
            return
        index = int(last)
        if not 0 <= index <= len(parent):
            raise PatchError(f"index out of range in {pointer!r}")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"path {pointer!r} does not name a container")


def json_patch(target: Obj, operations: Any) -> Obj:
    """RFC 6902 on a copy of ``target``."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        path = op["path"]
        match op["op"]:
            case "add":
                _add(doc, path, copy.deepcopy(op.get("value")))
            case "remove":
                _remove(doc, path)
            case "replace":
                _remove(doc, path)
                _add(doc, path, copy.deepcopy(op.get("value")))
            case "move":
                _add(doc, path, _remove(doc, op["from"]))
            case "copy":
                _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
            case "test":
                if _get(doc, path) != op.get("value"):
                    raise PatchError(f"test operation failed at {path!r}")
            case other:
                raise PatchError(f"unknown JSON patch operation {other!r}")
    if not isinstance(doc, dict):
        raise PatchError("a patch must leave an object")
    return doc


def apply_patch(target: Obj, patch_type: PatchType, body: Any) -> Obj:
    if patch_type is PatchType.JSON:
        return json_patch(target, body)
    if not isinstance(body, dict):
        raise PatchError("a merge patch must be an object")
    result = merge_patch(target, body)
    assert isinstance(result, dict)
    return result
