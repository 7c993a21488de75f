"""List and watch calls of the blocking ``kubernetes`` client, kept off the event loop.

A list runs in a worker thread (:func:`services.watcher.kube.call`); a watch is a long-lived
response, so each one gets a thread of its own that hands every line to the event loop and stops
when :meth:`WatchStream.close` shuts its connection down.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.watch.watch import iter_resp_lines
from urllib3 import HTTPResponse

from services.watcher.kube import call
from services.watcher.observe.translate import RawObject

log = logging.getLogger(__name__)

#: A list function of the client (``list_service_for_all_namespaces``, a bound custom-object list, ...).
ListCall = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its objects, as raw JSON, and the list's resourceVersion (the first page's)."""

    items: list[RawObject]
    resource_version: str


async def list_pages(function: ListCall, *, page: int = 500, request_timeout: float = 60.0
                     ) -> AsyncGenerator[Page, None]:
    """Every object, a page at a time, each page parsed off the loop: the caller folds a page and lets it go
    before the next is asked for, so a list of 50 000 objects is never all held at once."""
    token: str | None = None
    version = ""
    while True:
        kwargs: dict[str, Any] = {"limit": page, "_preload_content": False, "_request_timeout": request_timeout}
        if token:
            kwargs["_continue"] = token
        response = await call(function, **kwargs)
        body = await asyncio.to_thread(_json_body, response)
        metadata = body.get("metadata") or {}
        version = version or str(metadata.get("resourceVersion") or "")
        token = metadata.get("continue") or None
        items = [item for item in body.get("items") or () if isinstance(item, dict)]
        del body
        yield Page(items, version)
        del items
        if not token:
            return


def _json_body(response: HTTPResponse) -> dict[str, Any]:
    try:
        body = json.loads(response.data)
    finally:
        response.release_conn()
    if not isinstance(body, dict):
        raise ValueError("list answer is not a JSON object")
    for item in body.get("items") or ():
        metadata = item.get("metadata") if isinstance(item, dict) else None
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)  # bookkeeping nothing reads, often most of an object's size
    # A page is tens of thousands of objects: out of the cyclic collector's reach, or a full collection
    # (a walk over the whole heap, holding the GIL, the loop's thread waiting) may come while it is folded.
    # Reference counting still frees them once the page is folded.
    gc.freeze()
    return body


@dataclass(frozen=True, slots=True)
class Line:
    stream: int
    text: str


@dataclass(frozen=True, slots=True)
class Ended:
    """The watch stream ``stream`` ended: cleanly (``error`` None) or with an error."""

    stream: int
    error: BaseException | None


class WatchStream:
    """One watch request in its own thread; lines and the end go to ``deliver`` on the loop."""

    def __init__(
        self,
        function: ListCall,
        *,
        number: int,
        resource_version: str,
        deliver: Callable[[Line | Ended], None],
        timeout_seconds: int = 300,
        connect_timeout: float = 10.0,
    ) -> None:
        self.number = number
        self._function = function
        self._resource_version = resource_version
        self._deliver = deliver
        self._timeout_seconds = timeout_seconds
        self._connect_timeout = connect_timeout
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._response: HTTPResponse | None = None
        self._closed = False
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, name=f"watch-{number}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _send(self, item: Line | Ended) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self._loop.call_soon_threadsafe(self._deliver, item)

    def _run(self) -> None:
        error: BaseException | None = None
        response: HTTPResponse | None = None
        try:
            response = self._function(
                watch=True,
                allow_watch_bookmarks=True,
                resource_version=self._resource_version,
                timeout_seconds=self._timeout_seconds,
                _preload_content=False,
                _request_timeout=(self._connect_timeout, self._timeout_seconds + 30),
            )
            with self._lock:
                self._response = response
                closed = self._closed
            if not closed:
                for text in iter_resp_lines(response):
                    if text:
                        self._send(Line(self.number, text))
        except BaseException as failure:  # every failure is reported to the loop, never raised here
            error = failure
        finally:
            with self._lock:
                closed = self._closed
                self._response = None
            if response is not None:
                response.close()  # a watch connection never goes back to the pool
            if not closed:
                self._send(Ended(self.number, error))
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self._finished.done():
            self._finished.set_result(None)

    async def close(self, wait: float = 5.0) -> None:
        """Cut the connection and wait for the thread to notice (bounded: it is a daemon thread)."""
        with self._lock:
            self._closed = True
            if self._response is not None:  # still reading: cut the connection under the thread
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    self._response.shutdown()
        if self._thread.is_alive():
            try:
                await asyncio.wait_for(asyncio.shield(self._finished), wait)
            except TimeoutError:
                log.warning("watch thread did not stop in time stream=%d", self.number)
