"""A reflector: list a resource, make the ``K8S`` stream match, then watch and publish every change.

- The list is folded into the projection a page at a time, each page let go once folded (only what is
  published is kept, never the raw list: 50 000 Services' raw objects were ~100 MB), then compared with the
  last value per subject in the stream: only subjects whose identity (uid + resourceVersion; for Services
  and metallb.io objects uid + a digest of what is published; a content hash for folds) differs are
  published, and subjects the stream holds but the list lacks get a tombstone — deletions that happened
  while nobody watched.
- The watch starts from the list's resourceVersion with bookmarks, remembers the last version it
  handled (bookmarks too) and resumes from it after a dropped stream; 410 Gone means relist.
- Any other failure (API errors, bus errors) backs off and relists: the comparison with the stream
  makes that safe, so a change is never lost, and ``Nats-Msg-Id`` ids make it never duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from services.common.aio import in_slices
from services.common.bus import Bus
from services.common.errors import newer_schema_in
from services.watcher.observe import metrics
from services.watcher.observe.marks import mark_complete, marked
from services.watcher.observe.oversized import WarnOversized
from services.watcher.observe.projection import Projection
from services.watcher.observe.publishing import ProjectionPublisher
from services.watcher.observe.stream import Ended, Line, ListCall, Page, WatchStream, list_pages
from services.watcher.observe.translate import Observation

log = logging.getLogger(__name__)

GONE = 410
NOT_FOUND = 404
#: Subjects compared with the stream per step of a relist.
COMPARE_SLICE = 200
#: Subjects compared and then published before the next ones, on a list.
PUBLISH_PART = 2000
#: How long a list's work holds the loop before letting it turn (seconds). A slice's step, a read batch of the
#: stream and the other tasks' callbacks may all run between two timers: kept well under the 100 ms target.
LIST_SLICE = 0.01


@dataclass(frozen=True, slots=True)
class ReflectorSettings:
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    #: Re-list a resource whose API is absent (a CRD not installed) this often.
    absent_retry: float = 30.0
    watch_timeout_seconds: int = 300
    #: After this many watch failures in a row without a single event, relist instead.
    watch_failures_before_relist: int = 5
    #: Objects per list page. A page is parsed in a worker thread, but ``json.loads`` holds the GIL for the
    #: whole page and the loop waits for it: 1 000 Services (~1 MB) take ~15 ms, 5 000 took ~200 ms.
    list_page: int = 1000
    #: Events encoded and sent per step (the loop does not turn while a chunk is encoded: ~25 ms here).
    publish_chunk: int = 250


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One watched resource. ``calls`` are alternative list functions (e.g. BGPPeer v1beta2, then
    v1beta1): the first the API serves is used."""

    name: str
    calls: tuple[ListCall, ...]


class Relist(Exception):
    """The watch cannot go on from its version; list again for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Backoff:
    initial: float
    maximum: float
    current: float = field(default=0.0)

    def next(self) -> float:
        self.current = min(self.maximum, self.current * 2 if self.current else self.initial)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


async def _turn() -> None:
    """Let the loop turn between two pieces of a list's work that would otherwise run in one step: the end of
    a page's last slice, the end of the list, the sort of its subjects and the first slice of the comparison
    came one after the other without a turn, holding the loop 75-140 ms at 50 000 Services."""
    await asyncio.sleep(0)


async def _sliced(steps: Iterable[object]) -> None:
    """``steps`` in slices, and a turn of the loop after the last one (whatever follows is another slice)."""
    await in_slices(steps, slice_seconds=LIST_SLICE)
    await _turn()


class _Poke:
    """Inputs from outside the resource changed (the Secrets BGPPeers reference)."""


class _Lost:
    """The stream lost what it held of the kind (its list mark went): list again."""


class Reflector:
    def __init__(
        self,
        *,
        spec: ResourceSpec,
        projection: Projection,
        bus: Bus,
        settings: ReflectorSettings = ReflectorSettings(),
        wait_for: asyncio.Event | None = None,
        warn: WarnOversized | None = None,
    ) -> None:
        self.spec = spec
        self.projection = projection
        self.bus = bus
        self.settings = settings
        self.synced = asyncio.Event()
        self._wait_for = wait_for
        self._publisher = ProjectionPublisher(
            projection=projection, bus=bus, publish_chunk=settings.publish_chunk, warn=warn
        )
        self._inbox: asyncio.Queue[Line | Ended | _Poke | _Lost] = asyncio.Queue()
        self._stream_number = 0
        self._kind = projection.kind.value

    def poke(self) -> None:
        """Ask for the projection to be refreshed (callable from the loop, any time)."""
        self._inbox.put_nowait(_Poke())

    def relist(self) -> None:
        """The stream lost the kind (``marks.watch_marks``): list it again once the watch is read up to here."""
        self._inbox.put_nowait(_Lost())

    async def run(self) -> None:
        """List, reconcile and watch until cancelled; never returns, never raises."""
        if self._wait_for is not None:
            await self._wait_for.wait()
        backoff = _Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        reason = "initial"
        while True:
            try:
                metrics.RELISTS.labels(self._kind, reason).inc()
                call, version = await self._list_and_reconcile()
                self.synced.set()
                backoff.reset()
                if call is None:
                    reason = "absent"
                    await asyncio.sleep(self.settings.absent_retry)  # the resource may be installed later
                    continue
                await self._watch(call, version)
            except Relist as relist:
                reason = relist.reason
                log.info("relisting resource=%s reason=%s", self.spec.name, reason)
            except Exception as error:  # any failure: back off and relist
                if (stop := newer_schema_in(error)) is not None:
                    raise stop from error  # the stream holds what this build cannot read: stop (supervision)
                reason = "error"
                delay = backoff.next()
                log.warning("reflector failed resource=%s error=%r retry_in_s=%.1f", self.spec.name, error, delay)
                await asyncio.sleep(delay)  # backoff before relisting

    # --- list and reconcile ---------------------------------------------------------------------

    async def _fold_list(self) -> tuple[ListCall | None, str, int]:
        """List into the projection, each page folded as it comes (in slices: the loop turns meanwhile) and
        let go before the next is read; the call that served, the list's version and how many objects."""
        for call in self.spec.calls:
            async with contextlib.aclosing(list_pages(call, page=self.settings.list_page)) as pages:
                try:
                    first = await anext(pages)
                except ApiException as error:
                    if error.status == NOT_FOUND:
                        continue
                    raise
                self.projection.begin_list(first.resource_version)
                listed = await self._fold_page(first)
                version = first.resource_version
                del first
                async for page in pages:
                    listed += await self._fold_page(page)
                    del page  # not held while the next page is read
            await _sliced(self.projection.ending_list())
            return call, version, listed
        log.warning("resource not served, treating it as empty resource=%s", self.spec.name)
        self.projection.begin_list("")
        await _sliced(self.projection.ending_list())
        return None, "", 0

    async def _fold_page(self, page: Page) -> int:
        await _sliced(self.projection.folding(page.items))
        return len(page.items)

    async def _list_and_reconcile(self) -> tuple[ListCall | None, str]:
        async with asyncio.TaskGroup() as group:  # the API and the stream are read side by side
            group.create_task(self._publisher.read_stored())
            # Seconds of work at 50 000 objects: done in slices, the loop turning in between (watches, pings,
            # the status writer and the lease go on meanwhile).
            call, version, listed = await self._fold_list()
        self._drain_pokes()
        stored = len(self._publisher.stored)
        # compared and published a part at a time: the events of a whole first list (50 000 Services) are
        # never all models at once (the projection keeps Services packed: ``PackedObservation``)
        subjects, published = self._publisher.all_subjects(), 0
        # A list's publishes carry ids of their own: after a purge or a new stream, the server still remembers
        # the ids of what was published within its duplicate window and would drop the same ids again.
        listing = f"list-{time.time_ns():x}"
        await _turn()
        for start in range(0, len(subjects), PUBLISH_PART):
            batch: list[Observation] = []
            await _sliced(self._compare(subjects[start : start + PUBLISH_PART], trigger=version or "absent",
                                        into=batch))
            await self._publish(batch, msg_id_suffix=listing)
            published += len(batch)
        if marked(self.projection.kind):
            await mark_complete(self.bus, self.projection.kind, resource_version=version, objects=listed)
        log.info(
            "listed resource=%s objects=%d stored=%d published=%d version=%s",
            self.spec.name, listed, stored, published, version,
        )
        return call, version

    def _drain_pokes(self) -> None:
        """Pokes queued before a list are answered by it; the rest of the inbox is stale."""
        while not self._inbox.empty():
            self._inbox.get_nowait()

    def _compare(self, subjects: Sequence[str], *, trigger: str, into: list[Observation]) -> Iterator[None]:
        """What to publish for ``subjects``, into ``into``, a step per slice of subjects."""
        for start in range(0, len(subjects), COMPARE_SLICE):
            into.extend(self._changes(subjects[start : start + COMPARE_SLICE], trigger=trigger))
            yield

    def _changes(self, subjects: Iterable[str], *, trigger: str) -> list[Observation]:
        return self._publisher.changes(subjects, trigger=trigger)

    async def _publish(self, batch: Sequence[Observation], *, msg_id_suffix: str = "") -> None:
        await self._publisher.publish(batch, msg_id_suffix=msg_id_suffix)

    # --- watch ----------------------------------------------------------------------------------

    def _deliver(self, item: Line | Ended) -> None:
        self._inbox.put_nowait(item)

    async def _watch(self, call: ListCall, version: str) -> None:
        """Watch from ``version`` until a relist is needed (raises :class:`Relist`)."""
        backoff = _Backoff(self.settings.backoff_initial, self.settings.backoff_max)
        failures = 0
        while True:
            self._stream_number += 1
            stream = WatchStream(
                call,
                number=self._stream_number,
                resource_version=version,
                deliver=self._deliver,
                timeout_seconds=self.settings.watch_timeout_seconds,
            )
            stream.start()
            try:
                version, ended, progressed = await self._consume(stream.number, version)
            finally:
                await stream.close()
            if progressed:
                failures = 0
                backoff.reset()
            if ended.error is None:
                metrics.WATCH_RESTARTS.labels(self._kind, "ended").inc()
                continue
            if isinstance(ended.error, ApiException) and ended.error.status == GONE:
                raise Relist("expired")
            failures += 1
            if failures >= self.settings.watch_failures_before_relist:
                raise Relist("error")
            metrics.WATCH_RESTARTS.labels(self._kind, "error").inc()
            delay = backoff.next() if failures > 1 else 0.0
            log.info(
                "watch broke resource=%s error=%r version=%s retry_in_s=%.1f",
                self.spec.name, ended.error, version, delay,
            )
            if delay:
                await asyncio.sleep(delay)  # backoff before watching again

    async def _consume(self, number: int, version: str) -> tuple[str, Ended, bool]:
        """Handle the stream's lines in batches; returns the last version, how it ended and whether
        anything arrived."""
        progressed = False
        while True:
            items = [await self._inbox.get()]
            while not self._inbox.empty() and len(items) < self.settings.publish_chunk:
                items.append(self._inbox.get_nowait())
            batch: list[Observation] = []
            ended: Ended | None = None
            next_version = version
            for item in items:
                if isinstance(item, _Lost):
                    await self._publish(batch)
                    raise Relist("lost")
                if isinstance(item, _Poke):
                    # unique per refresh: the references can go back and forth with no change of the resource
                    refresh = f"{next_version}@{time.time_ns():x}"
                    batch.extend(self._changes(self.projection.refresh(), trigger=refresh))
                elif item.stream != number or ended is not None:
                    continue  # a line of an older stream, or after the end of this one
                elif isinstance(item, Ended):
                    ended = item
                else:
                    progressed = True
                    next_version, changed = self._handle_line(item.text, next_version)
                    batch.extend(self._changes(changed, trigger=next_version))
            await self._publish(batch)
            version = next_version
            if ended is not None:
                return version, ended, progressed

    def _handle_line(self, text: str, version: str) -> tuple[str, list[str]]:
        try:
            event = json.loads(text)
            change, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable watch line resource=%s line=%.200s", self.spec.name, text)
            return version, []
        if change == "ERROR":
            code = obj.get("code") if isinstance(obj, dict) else None
            raise Relist("expired" if code == GONE else "error")
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        new_version = str((metadata or {}).get("resourceVersion") or version)
        if change == "BOOKMARK":
            return new_version, []
        if change not in ("ADDED", "MODIFIED", "DELETED"):
            return new_version, []
        return new_version, self.projection.apply(change, obj)
