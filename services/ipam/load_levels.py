"""Nodes by load, for the placer's large candidate sets. Pure: no I/O, no clock.

At 5 000 nodes a search over every node for the least loaded, and a sum over every node for the fair share,
cost milliseconds per placement. ``LoadLevels`` keeps the nodes of one set grouped by the load they hold, each
load's nodes in *ring order* (by ``(hash, name)``), and the sum of their loads, so the placer's questions — the
lowest and highest load, the nodes at a load, the fair share — cost a few steps whatever the set's size.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence

#: A node as the ring orders it: its stable hash, then its name (two names with one hash still order alike).
RingEntry = tuple[int, str]


def ring_successor(ring: Sequence[RingEntry], point: int) -> str:
    """The node at or after ``point`` on ``ring`` (sorted, not empty), wrapping around: the tie-break that
    spreads groups of different hashes over equally loaded nodes, alike on every replica."""
    index = bisect_left(ring, (point, ""))
    return ring[index % len(ring)][1]


class LoadLevels:
    """The nodes of a set by the load they hold (each load's nodes in ring order) and the sum of the loads."""

    __slots__ = ("_by_load", "total")

    def __init__(self) -> None:
        self._by_load: dict[int, list[RingEntry]] = {}
        self.total = 0

    @classmethod
    def of(cls, loads: Iterable[tuple[RingEntry, int]]) -> LoadLevels:
        """The levels of the nodes given with their loads (sorted once, not inserted one by one)."""
        levels = cls()
        for entry, load in loads:
            levels._by_load.setdefault(load, []).append(entry)
            levels.total += load
        for ring in levels._by_load.values():
            ring.sort()
        return levels

    def __bool__(self) -> bool:
        return bool(self._by_load)

    def add(self, entry: RingEntry, load: int) -> None:
        insort(self._by_load.setdefault(load, []), entry)
        self.total += load

    def remove(self, entry: RingEntry, load: int) -> None:
        ring = self._by_load[load]
        del ring[bisect_left(ring, entry)]
        if not ring:
            del self._by_load[load]
        self.total -= load

    def move(self, entry: RingEntry, old: int, new: int) -> None:
        self.remove(entry, old)
        self.add(entry, new)

    def lowest(self) -> int:
        return min(self._by_load)  # loads held are few distinct numbers: a handful of keys

    def highest(self) -> int:
        return max(self._by_load)

    def at(self, load: int) -> Sequence[RingEntry]:
        """The nodes holding ``load``, in ring order (none when no node holds it)."""
        return self._by_load.get(load, ())

    def loads(self) -> list[int]:
        """The loads held, highest first."""
        return sorted(self._by_load, reverse=True)
