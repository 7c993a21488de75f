"""Label and field selectors, parsed from their query-string form and matched against objects."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


class SelectorError(ValueError):
    """A selector that does not parse (the server answers 400 BadRequest)."""


class Op(enum.Enum):
    EQ = "="
    NE = "!="
    IN = "in"
    NOTIN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case Op.EQ | Op.IN:
                return present and value in self.values
            case Op.NE | Op.NOTIN:
                return not present or value not in self.values
            case Op.EXISTS:
                return present
            case Op.NOT_EXISTS:
                return not present


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, values: dict[str, str]) -> bool:
        return all(r.matches(values) for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\((.*)\)$")
_CMP = re.compile(rf"^({_KEY})\s*(==|!=|=)\s*(\S*)$")
_KEY_ONLY = re.compile(rf"^(!?)\s*({_KEY})$")


def _split_terms(text: str) -> Iterable[str]:
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            yield text[start:i].strip()
            start = i + 1
    yield text[start:].strip()


def _check_value(value: str, text: str) -> str:
    if not re.fullmatch(_VALUE, value):
        raise SelectorError(f"invalid value {value!r} in selector {text!r}")
    return value


def parse_label_selector(text: str | None) -> Selector:
    """Parse ``a=b,c!=d,e in (f,g),h notin (i),j,!k``."""
    if not text or not text.strip():
        return Selector()
    requirements = []
    for term in _split_terms(text):
        if m := _SET.match(term):
            values = frozenset(_check_value(v.strip(), text) for v in m.group(4).split(","))
            requirements.append(Requirement(m.group(1), Op(m.group(3)), values))
        elif m := _CMP.match(term):
            op = Op.NE if m.group(3) == "!=" else Op.EQ
            requirements.append(Requirement(m.group(1), op, frozenset({_check_value(m.group(4), text)})))
        elif m := _KEY_ONLY.match(term):
            requirements.append(Requirement(m.group(2), Op.NOT_EXISTS if m.group(1) else Op.EXISTS))
        else:
            raise SelectorError(f"unable to parse requirement {term!r} in selector {text!r}")
    return Selector(tuple(requirements))


def parse_field_selector(text: str | None, allowed: frozenset[str]) -> Selector:
    """Parse ``metadata.name=x,metadata.namespace!=y``; only keys in ``allowed`` are accepted."""
    if not text or not text.strip():
        return Selector()
    requirements = []
    for term in _split_terms(text):
        key, op, value = _split_field_term(term, text)
        if key not in allowed:
            raise SelectorError(f"field label not supported: {key}")
        requirements.append(Requirement(key, op, frozenset({value})))
    return Selector(tuple(requirements))


def _split_field_term(term: str, text: str) -> tuple[str, Op, str]:
    for token, op in (("!=", Op.NE), ("==", Op.EQ), ("=", Op.EQ)):
        key, sep, value = term.partition(token)
        if sep:
            return key.strip(), op, value.strip()
    raise SelectorError(f"invalid field selector {text!r}: {term!r} is not key=value")


def field_values(obj: Obj, keys: Iterable[str]) -> dict[str, str]:
    """The values a field selector compares, rendered as the API server renders them (strings)."""
    out: dict[str, str] = {}
    for key in keys:
        node: Any = obj
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, bool):
            out[key] = "true" if node else "false"
        elif isinstance(node, dict):
            out[key] = str(node.get("component", "")) if key == "source" else ""
        else:
            out[key] = "" if node is None else str(node)
    return out


@dataclass(frozen=True)
class Filter:
    """What one list or watch selects: namespace, labels, fields."""

    namespace: str | None = None
    labels: Selector = Selector()
    fields: Selector = Selector()

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.labels and not self.labels.matches(meta.get("labels") or {}):
            return False
        keys = [r.key for r in self.fields.requirements]
        return not self.fields or self.fields.matches(field_values(obj, keys))
