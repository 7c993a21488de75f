"""Connections from addresses no BGPPeer names: counted, and logged once per source and window.

Pure: the listener says which source it refused and when; :meth:`UnknownSources.refuse` says whether a log line
is due and how many connections from that source it stands for. A source that keeps dialling is logged at its
first attempt, then at most once per ``log_every`` seconds with the count since; memory is bounded by the
number of sources remembered (the least recently refused is forgotten first, and logged afresh if it returns).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from services.announcer.bgp.nlri import IPAddress

LOG_EVERY = 60.0  # seconds between two log lines about one source
SOURCES_REMEMBERED = 1024


@dataclass(slots=True)
class _Source:
    logged_at: float
    unlogged: int = 0  # refused since the last log line


@dataclass(slots=True)
class UnknownSources:
    log_every: float = LOG_EVERY
    remembered: int = SOURCES_REMEMBERED
    total: int = 0  # every connection refused, for the metrics
    _sources: OrderedDict[IPAddress | None, _Source] = field(default_factory=OrderedDict)

    def refuse(self, source: IPAddress | None, now: float) -> int | None:
        """Count one refused connection from ``source`` (``None``: an address the socket could not tell).

        Returns how many connections from it the log line due now stands for, or ``None`` when none is due.
        """
        self.total += 1
        seen = self._sources.get(source)
        if seen is None:
            self._sources[source] = _Source(logged_at=now)
            while len(self._sources) > self.remembered:
                self._sources.popitem(last=False)
            return 1
        self._sources.move_to_end(source)
        seen.unlogged += 1
        if now - seen.logged_at < self.log_every:
            return None
        count, seen.unlogged, seen.logged_at = seen.unlogged, 0, now
        return count
