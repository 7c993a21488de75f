"""How old each of this node's announcement reports is, so that none grows older than ``ANNOUNCE`` keeps it.

Reports are published on change. ``ANNOUNCE`` keeps messages for 30 days, so an IP announced unchanged for a
month would have no report left, and a watcher that becomes leader would find nothing for it. Each report is
published again once it is ``REFRESH_AFTER`` old (a week): the newest report of every IP a node announces is
always in the stream, and a node that is gone for good leaves none behind after a month. Pure: times in.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

#: A report unchanged this long is published again (seconds): well inside ``ANNOUNCE``'s 30 days.
REFRESH_AFTER = 7 * 86400.0

Key = TypeVar("Key", bound=Hashable)


class ReportAges(Generic[Key]):
    """When each report was last published; the oldest first, in a few steps however many there are."""

    def __init__(self, refresh_after: float = REFRESH_AFTER) -> None:
        self.refresh_after = refresh_after
        self._at: dict[Key, float] = {}
        self._order: collections.deque[tuple[float, Key]] = collections.deque()  # oldest first; some superseded

    def published(self, key: Key, now: float) -> None:
        self._at[key] = now
        self._order.append((now, key))

    def withdrawn(self, key: Key) -> None:
        self._at.pop(key, None)

    def due(self, now: float) -> set[Key]:
        """The reports published ``refresh_after`` ago or earlier and not since: named again at every call until
        published again (``published``) or withdrawn."""
        order, at = self._order, self._at
        while order and at.get(order[0][1]) != order[0][0]:
            order.popleft()  # published again since, or withdrawn
        cutoff = now - self.refresh_after
        return {key for when, key in itertools.takewhile(lambda entry: entry[0] <= cutoff, order)
                if at.get(key) == when}
