"""The configuration in force on the ``IPAM`` stream, in messages of bounded size. Pure.

A configuration of thousands of metallb.io objects does not fit one message (NATS ``max_payload`` is
1 MB by default), so the ipam writes its objects as :class:`ConfigurationPart` messages of at most
``MAX_PART_BYTES`` each, then the :class:`ConfigurationEvaluated` that names them (generation, slot,
number of parts). Parts of a new configuration go to the slot not in force: a batch cut short (a crash,
a lost lease) leaves the parts in force untouched, so the last valid configuration survives any restart.

Readers fold both kinds of message through :class:`InForceParts`; in stream order every part comes
before the evaluation that puts it in force. The problems an evaluation lists are bounded too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events.decisions import ConfigProblem, ConfigurationEvaluated, ConfigurationPart, InForceSlot

#: Bytes of objects per part: far below the 1 MB default ``max_payload``, few parts for a large set.
MAX_PART_BYTES = 256 * 1024
#: Problems an evaluation lists (it counts them all).
MAX_LISTED_PROBLEMS = 100
#: Characters of a problem's message (and of its field path) that are kept.
MAX_PROBLEM_TEXT = 512

RawObject = Mapping[str, Any]


def object_size(obj: RawObject) -> int:
    """An upper bound of the bytes ``obj`` takes in a message (JSON, non-ASCII escaped)."""
    return len(json.dumps(obj, separators=(",", ":"), default=str))


def split_in_force(
    objects: Sequence[RawObject], *, generation: str, slot: InForceSlot, max_bytes: int = MAX_PART_BYTES
) -> tuple[ConfigurationPart, ...]:
    """``objects`` in parts of at most ``max_bytes`` each (an object larger than that goes alone)."""
    groups: list[list[RawObject]] = []
    size = 0
    for obj in objects:
        cost = object_size(obj) + 1
        if not groups or size + cost > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(obj)
        size += cost
    return tuple(
        ConfigurationPart(
            generation=generation, slot=slot, index=index, parts=len(groups), objects=tuple(dict(o) for o in group)
        )
        for index, group in enumerate(groups)
    )


def _cut(text: str, limit: int = MAX_PROBLEM_TEXT) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def bounded_problems(problems: Sequence[ConfigProblem]) -> tuple[ConfigProblem, ...]:
    """The first ``MAX_LISTED_PROBLEMS`` problems, each with its texts cut to ``MAX_PROBLEM_TEXT``."""
    return tuple(
        p.model_copy(update={"message": _cut(p.message), "field": _cut(p.field), "name": _cut(p.name)})
        for p in problems[:MAX_LISTED_PROBLEMS]
    )


@dataclass(slots=True)
class InForceParts:
    """Parts folded in, and the raw objects of the configuration the last evaluation put in force."""

    parts: dict[tuple[InForceSlot, int], ConfigurationPart] = field(default_factory=dict)
    #: The objects in force; None until an evaluation named a configuration whose parts are all here.
    objects: tuple[dict[str, Any], ...] | None = None
    #: The digest of the configuration ``objects`` make up.
    generation: str = ""

    def add(self, part: ConfigurationPart) -> None:
        self.parts[(part.slot, part.index)] = part

    def settle(self, evaluated: ConfigurationEvaluated) -> tuple[dict[str, Any], ...] | None:
        """Take the configuration ``evaluated`` names as in force, and forget every other part.
        None (and ``objects`` unchanged) when one of its parts is missing."""
        if evaluated.in_force_slot is None or evaluated.in_force_parts == 0:
            self.parts.clear()
            self.objects = tuple(evaluated.in_force)  # no configuration, or a record from before parts
            self.generation = evaluated.in_force_generation
            return self.objects
        slot, count = evaluated.in_force_slot, evaluated.in_force_parts
        found = [self.parts.get((slot, index)) for index in range(count)]
        if any(p is None or p.generation != evaluated.in_force_generation or p.parts != count for p in found):
            return None
        self.parts = {(slot, index): part for index, part in enumerate(found) if part is not None}
        self.objects = tuple(obj for part in self.parts.values() for obj in part.objects)
        self.generation = evaluated.in_force_generation
        return self.objects
