"""Watch sessions: replay from a resourceVersion, then live changes, bookmarks, timeouts and drops.

A session waits on the store's condition variable; it never polls. Events are gathered under the lock and
handed out after it is released.
"""

from __future__ import annotations

import copy
import enum
import time
from collections.abc import Iterator
from typing import Any

from tests.kubeapi.errors import ApiError
from tests.kubeapi.resources import Resource
from tests.kubeapi.selectors import Filter
from tests.kubeapi.store import Change, EventType, Store

WireEvent = dict[str, Any]


class End(enum.Enum):
    """Why a watch stream ended."""

    TIMEOUT = "timeout"
    CLOSED = "closed"
    """The server is stopping."""
    DROPPED = "dropped"
    """Closed by ``drop_watches(abrupt=False)``: the stream ends cleanly."""
    ABORTED = "aborted"
    """Closed by ``drop_watches(abrupt=True)``: the connection is cut mid-stream."""
    EXPIRED = "expired"
    """A 410 ERROR event was sent."""
    CLIENT_GONE = "client gone"


def translate(change: Change, flt: Filter) -> WireEvent | None:
    """The event a watcher with this filter sees for one change (selector transitions become ADDED/DELETED)."""
    now = change.type is not EventType.DELETED and flt.matches(change.obj)
    before = change.prev is not None and flt.matches(change.prev)
    if change.type is EventType.ADDED:
        kind = "ADDED" if now else None
    elif change.type is EventType.DELETED:
        kind = "DELETED" if before else None
    elif now:
        kind = "MODIFIED" if before else "ADDED"
    else:
        kind = "DELETED" if before else None
    if kind is None:
        return None
    if kind == "DELETED" and change.type is EventType.MODIFIED:
        assert change.prev is not None
        obj = copy.deepcopy(change.prev)
        obj["metadata"]["resourceVersion"] = str(change.rv)
        return {"type": kind, "object": obj}
    return {"type": kind, "object": change.obj}


class WatchSession:
    def __init__(
        self,
        store: Store,
        res: Resource,
        flt: Filter,
        *,
        resource_version: str | None,
        bookmarks: bool,
        bookmark_interval: float,
        timeout: float | None,
        fail_with: ApiError | None = None,
    ) -> None:
        if resource_version not in (None, "", "0") and not str(resource_version).isdigit():
            raise ApiError(400, f"invalid resource version: {resource_version!r}")
        self.store = store
        self.res = res
        self.fail_with = fail_with
        self.flt = flt
        self.resource_version = resource_version
        self.bookmarks = bookmarks
        self.bookmark_interval = bookmark_interval
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.stop: End | None = None
        self.cursor: int | None = None
        self.end: End | None = None

    def _present(self, event: WireEvent) -> WireEvent:
        return {"type": event["type"], "object": self.store.present(self.res, event["object"])}

    def _bookmark(self, rv: int) -> WireEvent:
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": self.res.kind,
                "apiVersion": self.res.api_version,
                "metadata": {"resourceVersion": str(rv)},
            },
        }

    def _start(self) -> tuple[int, list[WireEvent]]:
        """Cursor and initial events: the current state for "" and "0", nothing for a given version."""
        rv_text = self.resource_version
        if rv_text in (None, "", "0"):
            items, at, _ = self.store.list(self.res, self.flt)
            return at, [{"type": "ADDED", "object": obj} for obj in items]
        try:
            cursor = int(rv_text)
        except ValueError:
            raise ApiError(400, f"invalid resource version: {rv_text!r}") from None
        self.store.changes_after(cursor)  # raises 410 when too old
        return cursor, []

    def stream(self) -> Iterator[WireEvent]:
        """Events to send, in order; ``self.end`` tells why the stream stopped."""
        store = self.store
        try:
            with store.cond:
                store.watches.add(self)
                store.cond.notify_all()
                try:
                    if self.fail_with is not None:
                        raise self.fail_with
                    cursor, initial = self._start()
                    self.cursor = cursor
                except ApiError as exc:
                    if exc.code != 410:
                        raise
                    self.end = End.EXPIRED
                    initial = [{"type": "ERROR", "object": exc.status()}]
            yield from initial
            if self.end is End.EXPIRED:
                return
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                batch, end, cursor, bookmark = self._wait(cursor, next_bookmark)
                yield from batch
                if bookmark:
                    next_bookmark = time.monotonic() + self.bookmark_interval
                    yield self._bookmark(cursor)
                if end is not None:
                    self.end = end
                    if end is End.EXPIRED:
                        yield {
                            "type": "ERROR",
                            "object": ApiError(410, self._expired_message(cursor), reason="Expired").status(),
                        }
                    return
        finally:
            with store.cond:
                store.watches.discard(self)
                store.cond.notify_all()

    def _expired_message(self, cursor: int) -> str:
        return f"too old resource version: {cursor} ({self.store.floor})"

    def _wait(self, cursor: int, next_bookmark: float) -> tuple[list[WireEvent], End | None, int, bool]:
        store = self.store
        with store.cond:
            while True:
                if self.stop is not None:
                    return [], self.stop, cursor, False
                if store.closed:
                    return [], End.CLOSED, cursor, False
                if not store.reaches(cursor):
                    return [], End.EXPIRED, cursor, False
                now = time.monotonic()
                if self.deadline is not None and now >= self.deadline:
                    return [], End.TIMEOUT, cursor, False
                changes = store.changes_after(cursor, open_watch=True)
                if changes:
                    cursor = self.cursor = changes[-1].rv
                    events = [e for c in changes if c.key[0] == self.res.storage if (e := translate(c, self.flt))]
                    if events:
                        return [self._present(e) for e in events], None, cursor, False
                if self.bookmarks and now >= next_bookmark:
                    self.cursor = cursor = max(cursor, store.rv)
                    return [], None, cursor, True
                wake = [t for t in (self.deadline, next_bookmark if self.bookmarks else None) if t is not None]
                store.cond.wait(None if not wake else max(0.0, min(wake) - now))
