"""Which announcers are live: the pure rule (times are passed in; no I/O, no clock).

A node is live from a heartbeat on. It is dead:
- at once when the NATS server reports closed the connection its newest heartbeat named (a crashed
  announcer's connection closes with its process; a cut or frozen one's when the server's pings go
  unanswered), unless the server closed it because the server itself is shutting down (the announcer
  reconnects to another server and says so in its next heartbeat);
- at once on a ``leaving`` heartbeat (a later heartbeat of the same announcer instance does not bring it
  back; a new instance does);
- ``backstop`` seconds after its last heartbeat, whatever its connection does (a heartbeat that named no
  connection, a closed connection whose report was lost, ...).

What a node says only touches that node: the key of a connection maps to the nodes whose newest heartbeat
named it, so a node naming another's connection dies with that connection, and the other node is untouched
until its own does. A heartbeat naming a connection already reported closed is ignored (the report and a
heartbeat sent just before the close may cross).

The ipam's own troubles must not look like node deaths: a majority of the live nodes falling silent at
once (two or more) is believed only after it lasts ``mass_grace`` more; the shell refreshes every node's
window when it could not listen.
"""

from __future__ import annotations

from schemas.events import BusConnection

#: A heartbeat that names no connection (version 1, or an announcer that does not know it yet).
NO_CONNECTION = BusConnection()


class Liveness:
    def __init__(self, backstop: float, *, closed_memory: float = 60.0) -> None:
        self.backstop = backstop
        self._closed_memory = closed_memory
        self._seen: dict[str, float] = {}
        self._left: dict[str, str] = {}
        self._heard: dict[str, float] = {}  # last heartbeat of every node ever heard, dead or alive
        self._suspect_since: float | None = None
        self._named: dict[str, BusConnection] = {}  # the connection each node's newest heartbeat named
        self._holders: dict[BusConnection, set[str]] = {}  # ... and back: the nodes that named each
        self._closed: dict[BusConnection, float] = {}  # connections reported closed, and when
        self._revived: set[str] = set()
        self._closed_dead: set[str] = set()  # dead by the server's word (their connection closed), not by time

    @property
    def live(self) -> frozenset[str]:
        return frozenset(self._seen)

    @property
    def mass_grace(self) -> float:
        return 2 * self.backstop

    def heard(self, node: str, *, instance: str, leaving: bool, connection: BusConnection, now: float) -> bool:
        """Fold one heartbeat in; whether the set of live nodes changed."""
        if leaving:
            self._left[node] = instance
            self._forget_connection(node)
            return self._seen.pop(node, None) is not None
        if self._left.get(node) == instance or connection in self._closed:
            return False  # a late heartbeat of an announcer that said goodbye, or of a closed connection
        self._left.pop(node, None)
        self._revived.discard(node)
        self._closed_dead.discard(node)
        self._name_connection(node, connection)
        known = node in self._seen
        self._seen[node] = self._heard[node] = now
        return not known

    def closed(self, connection: BusConnection, *, server_shutting_down: bool, now: float) -> list[str]:
        """The server reports ``connection`` closed: the live nodes whose newest heartbeat named it are dead."""
        if server_shutting_down or connection == NO_CONNECTION:
            return []
        self._closed[connection] = now
        holders = self._holders.pop(connection, set())
        dead = sorted(node for node in holders if node in self._seen)
        for node in holders:
            self._named.pop(node, None)
            self._seen.pop(node, None)
        self._closed_dead.update(dead)
        return dead

    def expire(self, now: float) -> list[str]:
        """Nodes silent for ``backstop`` or more: they are dead now. A majority falling silent at once
        (two or more) is more likely our own trouble (a starved process, a slow link to the server)
        than theirs: it is believed only once it has lasted ``mass_grace`` more."""
        self._forget_old_closures(now)
        dead = sorted(node for node, seen in self._seen.items() if now - seen >= self.backstop)
        if len(dead) >= 2 and 2 * len(dead) > len(self._seen):
            if self._suspect_since is None:
                self._suspect_since = now
            if now - self._suspect_since < self.mass_grace:
                return []
        self._suspect_since = None
        for node in dead:
            del self._seen[node]
            self._forget_connection(node)
        return dead

    def next_deadline(self) -> float | None:
        """When the next node's backstop runs out (no earlier: heartbeats only push deadlines later)."""
        if not self._seen:
            return None
        deadline = min(self._seen.values()) + self.backstop
        if self._suspect_since is not None:
            deadline = max(deadline, self._suspect_since + self.mass_grace)
        return deadline

    def refresh(self, now: float) -> None:
        """We could not listen for a while: give every live node a fresh window."""
        for node in self._seen:
            self._seen[node] = now

    def recently_dead(self, *, since: float) -> list[str]:
        """Nodes heard since ``since`` that are dead now by time alone: not those that said they were leaving,
        nor those whose connection the server reported closed (its word, which no delay of ours can fake)."""
        known = self._seen.keys() | self._left.keys() | self._closed_dead
        return sorted(node for node, heard in self._heard.items() if heard >= since and node not in known)

    def revive(self, now: float, *, since: float) -> None:
        """Give a fresh window to every node heard since ``since`` that did not say it was leaving and whose
        connection the server did not report closed (its silence may have been ours); :meth:`settle` then
        drops those that did not speak meanwhile."""
        for node, heard in self._heard.items():
            if heard >= since and node not in self._left and node not in self._closed_dead:
                if node not in self._seen:
                    self._revived.add(node)
                self._seen[node] = max(self._seen.get(node, now), now)

    def settle(self) -> list[str]:
        """The revived nodes that have not spoken since :meth:`revive`: dead after all."""
        dead = sorted(node for node in self._revived if node in self._seen)
        for node in dead:
            del self._seen[node]
        self._revived.clear()
        return dead

    def _name_connection(self, node: str, connection: BusConnection) -> None:
        if self._named.get(node) == connection:
            return
        self._forget_connection(node)
        if connection != NO_CONNECTION:
            self._named[node] = connection
            self._holders.setdefault(connection, set()).add(node)

    def _forget_connection(self, node: str) -> None:
        connection = self._named.pop(node, None)
        if connection is not None:
            holders = self._holders.get(connection)
            if holders is not None:
                holders.discard(node)
                if not holders:
                    del self._holders[connection]

    def _forget_old_closures(self, now: float) -> None:
        old = [connection for connection, at in self._closed.items() if now - at >= self._closed_memory]
        for connection in old:
            del self._closed[connection]
