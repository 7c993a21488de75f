"""``WatchRecorder``: run the official client's ``Watch().stream(...)`` in a thread and queue what it yields.

Tests read events with a deadline (``next``/``take``) instead of sleeping. The stream's end — normal or by
exception — is queued too, as a ``StreamEnded``.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kubernetes import watch


@dataclass(frozen=True)
class StreamEnded:
    error: BaseException | None


class WatchRecorder:
    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        # The stream goes through a wrapper (see _call), so name the event type from the real function.
        self.watch = watch.Watch(return_type=watch.Watch().get_return_type(func) or None)
        self._func, self._args, self._kwargs = func, args, kwargs
        self._queue: queue.Queue[dict[str, Any] | StreamEnded] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="watch-recorder", daemon=True)
        self.ended: StreamEnded | None = None
        self._lock = threading.Lock()
        self._stopping = False

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        """The API call, with a stop that arrives before its response also ending the stream."""
        response = self._func(*args, **kwargs)
        with self._lock:
            if self._stopping:
                sock = getattr(getattr(response, "connection", None), "sock", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        return response

    def _run(self) -> None:
        try:
            for event in self.watch.stream(self._call, *self._args, **self._kwargs):
                self._queue.put(event)
        except BaseException as exc:  # recorded for the test to inspect
            self._queue.put(StreamEnded(exc))
        else:
            self._queue.put(StreamEnded(None))

    def start(self) -> WatchRecorder:
        self._thread.start()
        return self

    def next(self, timeout: float = 5.0) -> dict[str, Any] | StreamEnded:
        """The next event, or ``StreamEnded``; AssertionError when nothing arrives within ``timeout``."""
        if self.ended is not None:
            return self.ended
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no watch event within {timeout}s") from None
        if isinstance(item, StreamEnded):
            self.ended = item
        return item

    def next_event(self, timeout: float = 5.0, *, skip_bookmarks: bool = True) -> dict[str, Any]:
        """The next event (BOOKMARKs skipped unless asked); AssertionError when the stream ended instead."""
        while True:
            item = self.next(timeout)
            if isinstance(item, StreamEnded):
                raise AssertionError(f"watch stream ended: {item.error!r}")
            if not (skip_bookmarks and item["type"] == "BOOKMARK"):
                return item

    def take(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        return [self.next_event(timeout) for _ in range(count)]

    def wait_ended(self, timeout: float = 5.0) -> StreamEnded:
        while True:
            item = self.next(timeout)
            if isinstance(item, StreamEnded):
                return item

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self.watch.stop()
        self._thread.join(timeout=10)

    def __enter__(self) -> WatchRecorder:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
