"""What a service keeps for good, made compact: one shared object per value that repeats.

ipam keeps every observed Service, its endpoints, every Node and its newest decisions in memory, and the
watcher every node's announcement reports, as the pydantic models they were decoded into. Much of what
those models hold repeats from one to the next:
the same short strings (``LoadBalancer``, ``TCP``, a namespace, a node's name, an address family), the
same ports and endpoint entries, and, in every model, the set of the fields that were given, which is
the same set for nearly every model of a class. ``Compactor`` turns each repeated value into one shared
object: short strings interned, small tuples and value models (ports, endpoint entries) shared, each
model's set of given fields shared. An observed Service then costs 1.3 KB instead of 2.8 KB.

Every model compacted is frozen and every value is replaced by an equal one, so nothing a reader can see
changes (equality, hashing, ``model_dump``, ``exclude_unset``). An index whose entries are small sets keeps
each as a tuple (``add_member``, ``discard_member``). Pure: no I/O.
"""

from __future__ import annotations

import sys
from typing import NoReturn, TypeVar

from pydantic import BaseModel

from schemas.events import NodeEndpoints, ServicePort

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
K = TypeVar("K")

#: Small value models that repeat across objects: shared whole.
SHARED_MODELS: tuple[type[BaseModel], ...] = (ServicePort, NodeEndpoints)
#: Strings up to this long are interned (names, kinds, families, uids, placement reasons naming a node; not
#: messages).
INTERN_UP_TO = 128
#: Distinct shared values (and, apart, value models) kept at most (about a megabyte each): values first seen
#: once the table is full are left as they are, so values that never repeat (a Service's own addresses)
#: cannot grow it for ever.
SHARED_LIMIT = 20_000


_fields_of: dict[type[BaseModel], type] = {}
_ABSENT = object()


def _key_sharing(model_type: type[BaseModel]) -> object:
    """A fresh object whose attributes become a model's fields: the dictionary an instance of a plain class
    keeps its attributes in shares its keys with every other instance of that class (one key table per
    class), where the one pydantic gives each model holds its own (a Service's 14 fields: 296 bytes instead
    of 464). Its ``__dict__`` is a dictionary like any other, so nothing a reader does changes."""
    fields_type = _fields_of.get(model_type)
    if fields_type is None:
        fields_type = _fields_of[model_type] = type(f"{model_type.__name__}Fields", (), {"__module__": __name__})
    return fields_type()


def interned(value: T) -> T:
    """The one shared string equal to ``value`` when it is a short plain string (a name, uid, version or
    address), else ``value`` itself: what a process keeps of many objects read apart (an API response, a
    message) then holds one copy of each, not one per place it was read from."""
    if isinstance(value, str) and type(value) is str and len(value) <= INTERN_UP_TO:  # a plain one: not an enum member
        return sys.intern(value)  # type: ignore[return-value]
    return value


class _SharedEmpty(dict[object, object]):
    """The one empty dictionary every compacted model holds for an empty field (most Services' annotations and
    labels: 64 bytes each, twice per Service). Shared, so it refuses to change."""

    def _refused(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("the shared empty dictionary of compacted models does not change")

    __setitem__ = __delitem__ = __ior__ = _refused
    update = setdefault = pop = popitem = clear = _refused


SHARED_EMPTY: dict[object, object] = _SharedEmpty()


class Compactor:
    def __init__(self, *, limit: int = SHARED_LIMIT) -> None:
        self._limit = limit
        #: Values and value models, each table at most ``limit`` long: once one is full, what is first seen
        #: is kept as it is. Apart, so that values that never repeat (a Service's addresses) cannot take the
        #: room of the value models that do (a node's endpoint entries).
        self._values: dict[object, object] = {}
        self._models: dict[object, object] = {}
        #: Sets of given fields, one per distinct set: as many as the schema has shapes of models, so never
        #: limited (when they shared the values' table, a full table left every later model a set of its own:
        #: over 250 000 of them at 50 000 Services).
        self._fields_sets: dict[frozenset[str], set[str]] = {}

    def __call__(self, model: M, *, like: M | None = None) -> M:
        """Compact ``model`` in place (it stays the same object) and return it. ``like``: a compacted model of
        the same kind that ``model`` follows (its previous value): a field equal to ``like``'s takes ``like``'s
        value, shared, not compacted again (a Service whose status alone changed shares every other field)."""
        self._compact_fields(model, like)
        return model

    def compacted(self, value: T) -> T:
        """``value`` (a string, or a tuple or dictionary of them), its short strings interned and its tuples
        shared where they repeat."""
        return self._value(value)  # type: ignore[return-value]

    def shared(self, value: T) -> T:
        """The shared object equal to ``value`` (hashable, immutable): ``value`` itself the first time."""
        return self._share(self._values, value)  # type: ignore[return-value]

    def _compact_fields(self, model: BaseModel, like: BaseModel | None = None) -> None:
        fields = _key_sharing(type(model))
        before = like.__dict__ if like is not None and type(like) is type(model) else {}
        for name, value in model.__dict__.items():
            previous = before.get(name, _ABSENT)
            setattr(fields, name, previous if previous is not _ABSENT and previous == value else self._value(value))
        object.__setattr__(model, "__dict__", fields.__dict__)
        given = model.__pydantic_fields_set__
        # frozen models never change their set of given fields: one set per distinct set is enough
        object.__setattr__(model, "__pydantic_fields_set__", self._fields_sets.setdefault(frozenset(given), given))

    def _value(self, value: object) -> object:
        if isinstance(value, str):  # an enum member is one object already: only plain strings are interned
            return interned(value)
        if isinstance(value, tuple):
            # (the tuples kept hold no bools, which equal 0 and 1)
            return self._share(self._values, tuple(self._value(item) for item in value))
        if isinstance(value, dict):
            return {self._value(key): self._value(item) for key, item in value.items()} if value else SHARED_EMPTY
        if isinstance(value, SHARED_MODELS):
            self._compact_fields(value)
            return self._share(self._models, value)
        if isinstance(value, BaseModel):
            self._compact_fields(value)
        return value

    def _share(self, table: dict[object, object], value: object) -> object:
        """The shared object equal to ``value`` in ``table`` (``value`` itself the first time, while there is
        room)."""
        try:
            shared = table.get(value)
        except TypeError:  # unhashable: kept as it is
            return value
        if shared is not None:
            return shared
        if len(table) < self._limit:
            table[value] = value
        return value


# --- small sets kept as tuples ---------------------------------------------------------------------------
# An index whose entries nearly always have one member (an address's holders, a Service's slices) keeps
# each as a tuple: a set of one costs 216 bytes, a tuple 48.


def add_member(index: dict[K, tuple[T, ...]], key: K, member: T) -> None:
    """Put ``member`` among ``index[key]`` (once)."""
    members = index.get(key, ())
    if member not in members:
        index[key] = (*members, member)


def discard_member(index: dict[K, tuple[T, ...]], key: K, member: T) -> None:
    """Take ``member`` out of ``index[key]``; the key goes with its last member."""
    rest = tuple(other for other in index.get(key, ()) if other != member)
    if rest:
        index[key] = rest
    else:
        index.pop(key, None)
