"""The status writer: IPAM, ANNOUNCE and kube-proxy events in, Kubernetes status, Events and CRs out.

Start: for each feed, find (or create) its durable consumer, then fold the stream's last value per
subject up to what that consumer has already handled — silently, those Events were told before. One
list per kind finds what Kubernetes does not show yet. Then the durable consumers follow: a handler
folds the event, queues the objects it changed and the Events it calls for, and returns (so it is
acked) without waiting on the API. Workers write, one object at a time, the newest desired state, as fast
as the API server accepts: a window of writes in flight (``pacing.py``) that grows while writes succeed,
and a ``429 Too Many Requests`` pauses the whole writer for its ``Retry-After`` and halves the window.
Requests go over the writer's own aiohttp connections on its loop (``transport.py``); a Service it has
seen is written without a read first (``shown.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from schemas.events import ObjectKind
from services.common.aio import stopped
from services.common.bus import Bus, Received
from services.common.consumer import Consumer, ConsumerSpec, create_durable, durable_ack_floor
from services.common.errors import MetalbusError, TooManyRequests
from services.common.subjects import DURABLES, Component, DurableSpec
from services.common.supervision import Backoff, OnFailure, watch
from services.common.tracing import tracer
from services.watcher.kube import KubeClients
from services.watcher.sightings import Sightings
from services.watcher.status import metrics
from services.watcher.status.configstate import strict_arp_message, strict_arp_missing
from services.watcher.status.converge import Converger, Outcome, pool_shows, shows
from services.watcher.status.desired import (
    EventType,
    KubeEvent,
    ObjectKey,
    PoolTarget,
    Reason,
    ServiceTarget,
    StatusState,
    Target,
    TargetKind,
    apply,
    config_state_key,
    pool_key,
    service_key,
    target,
    target_kind,
)
from services.watcher.status.objects import Obj, ObjectApi, meta
from services.watcher.status.pacing import WriteAnswer, WritePacing
from services.watcher.status.queueing import WorkQueue, WriteGate
from services.watcher.status.recorder import EventRecorder
from services.watcher.status.resync import initial_sync
from services.watcher.status.shown import shown_ips
from services.watcher.status.strictarp import log_strict_arp
from services.watcher.status.transport import transport_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StatusWriterSettings:
    #: objects written at once, at most (each a read and a write); fewer while the API server answers 429
    workers: int = 16
    #: the pause after a 429 that gives no ``Retry-After``, and the longest one honoured (seconds)
    throttled_pause: float = 1.0
    longest_throttled_pause: float = 60.0
    events_per_second: float = 100.0
    event_burst: int = 200
    request_timeout: float = 10.0
    #: a failed write is tried again after this, doubling up to ``max_retry_delay``
    retry_delay: float = 0.5
    max_retry_delay: float = 30.0
    event_component: str = "metalbus"
    instance: str = ""
    #: compare every known object with Kubernetes at start (one list per kind)
    initial_sync: bool = True
    #: reads and writes over the writer's own aiohttp session on its loop (``transport.py``), about an eighth
    #: of the CPU of the official client's; False: the official client in threads (lists always are)
    own_transport: bool = True


#: The durable consumers that feed the status writer (defined with every other durable).
FEEDS = tuple(durable for durable in DURABLES if durable.owner is Component.WATCHER)
#: How soon a Service held back for another that still shows its new address is looked at again (seconds).
GIVER_WAIT = 0.05
#: The per-node announcement statuses: one object per node and Service announced, three requests to make one.
ANNOUNCEMENT_STATUSES = frozenset({TargetKind.L2_STATUS, TargetKind.BGP_STATUS})


def _written_first(key: ObjectKey) -> bool:
    """Services, pools and the configuration state are written before any announcement status: what a Service
    was given is what users and their tools read, and a cold start has several announcement statuses to make
    for each Service (one for each node announcing it)."""
    return key.kind not in ANNOUNCEMENT_STATUSES


async def run_status_writer(*, bus: Bus, clients: KubeClients, namespace: str, stopping: asyncio.Event,
                            settings: StatusWriterSettings | None = None, sightings: Sightings | None = None) -> None:
    """Write status while leader; returns soon after ``stopping`` is set. ``sightings``: the observe
    side's Services and pools, whose status is put back when anyone else changes it."""
    settings = settings or StatusWriterSettings()
    async with status_writer_io(clients, settings) as (own, executor):
        writer = StatusWriter(bus=bus, clients=own, namespace=namespace, stopping=stopping,
                              settings=settings, executor=executor)
        with sightings.listening(writer.seen) if sightings is not None else contextlib.nullcontext():
            await writer.run()


@contextlib.asynccontextmanager
async def status_writer_io(clients: KubeClients, settings: StatusWriterSettings
                           ) -> AsyncIterator[tuple[KubeClients, Executor]]:
    """The status writer's own threads and connections: as many as writes may be in flight, plus the
    Events' and a list's."""
    size = max(1, settings.workers) + 2
    with ThreadPoolExecutor(max_workers=size, thread_name_prefix="status") as executor:
        own = clients.with_pool(size)
        try:
            yield own, executor
        finally:
            await asyncio.to_thread(own.close)


class StatusWriter:
    def __init__(self, *, bus: Bus, clients: KubeClients, namespace: str, stopping: asyncio.Event,
                 settings: StatusWriterSettings, executor: Executor | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self.stopping = stopping
        self.state = StatusState(namespace)
        #: writes on the loop over connections of the writer's own, when the configuration allows
        self.transport = transport_for(clients.api_client.configuration, size=max(1, settings.workers) + 1,
                                       request_timeout=settings.request_timeout) if settings.own_transport else None
        self.api = ObjectApi(clients, request_timeout=settings.request_timeout, executor=executor,
                             transport=self.transport)
        self.converger = Converger(self.api, namespace=namespace)
        self.gate = WriteGate(WritePacing(most_in_flight=settings.workers, default_pause=settings.throttled_pause,
                                          longest_pause=settings.longest_throttled_pause))
        self.recorder = EventRecorder(self.api, component=settings.event_component, instance=settings.instance,
                                      rate=settings.events_per_second, burst=settings.event_burst, gate=self.gate)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(goes_first=_written_first)
        self._failures: dict[ObjectKey, int] = {}
        #: status objects as last written by this writer: an unchanged report costs no request
        self._written: dict[ObjectKey, Target] = {}
        #: objects seen not showing what was last written (changed by someone else): read before skipping
        self._doubted: set[ObjectKey] = set()
        #: per queued object, the span of the newest decision it shows: its write joins that trace
        self._origins: dict[ObjectKey, trace.SpanContext] = {}
        self._tracer = tracer(__name__)
        self.ready = asyncio.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self.transport is not None:
                await self.transport.close()

    async def _run(self) -> None:
        if not await self._start_until_stopped():
            return
        consumers = [Consumer(self.bus, ConsumerSpec(feed.stream, feed.name, feed.subjects), self.handle)
                     for feed in FEEDS]
        # Every loop here resumes from what it keeps (the durable's position, the queue): restarted on failure.
        backoff = Backoff(first=self.settings.retry_delay, limit=self.settings.max_retry_delay)

        def restarted(run: Callable[[], Awaitable[None]], name: str) -> Coroutine[Any, Any, None]:
            return watch(run, name=name, on_failure=OnFailure.RESTART, backoff=backoff)

        async with asyncio.TaskGroup() as group:
            for feed, consumer in zip(FEEDS, consumers, strict=True):
                group.create_task(restarted(consumer.run, f"status-consumer-{feed.name}"))
            helpers = [group.create_task(restarted(self._worker, "status-writer"), name=f"status-writer-{index}")
                       for index in range(max(1, self.settings.workers))]
            helpers.append(group.create_task(restarted(self.recorder.run, "status-events"), name="status-events"))
            self.ready.set()
            log.info("status writer running objects=%d workers=%d", len(self.queue), len(helpers) - 1)
            await self.stopping.wait()
            for consumer in consumers:
                consumer.stop()
            for task in helpers:
                task.cancel()  # writes are idempotent: the next leader redoes any cut short
        self.queue.close()
        log.info("status writer stopped pending=%d", len(self.queue))

    async def _start_until_stopped(self) -> bool:
        """Rebuild and sync, retrying with backoff; False when stopped first."""
        delay = self.settings.retry_delay
        while not self.stopping.is_set():
            if await self._until_stopped(self._start()):
                return True
            if self.stopping.is_set():
                return False
            await self._pause(delay)
            delay = min(delay * 2, self.settings.max_retry_delay)
        return False

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work``; False when stopping came first (work cancelled) or it failed (logged)."""
        task = asyncio.create_task(work)
        stop = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not task.done():
                with contextlib.suppress(Exception):  # its error is logged below
                    await stopped(task)
        if task.cancelled():
            return False
        error = task.exception()
        if error is not None:
            log.warning("status writer start failed error=%r", error)
            return False
        return True

    async def _start(self) -> None:
        self.state = StatusState(self.state.namespace)
        started = time.monotonic()
        await self.rebuild()
        rebuilt = time.monotonic()
        if self.settings.initial_sync:
            pending = await initial_sync(self.api, self.state, shown=self.converger.shown,
                                         existing=self.converger.existing)
            log.info("status compared with Kubernetes objects=%d to_write=%d rebuild_s=%.2f compare_s=%.2f",
                     len(self.state.services), len(pending), rebuilt - started, time.monotonic() - rebuilt)
            for key in pending:
                self.queue.put(key)
            # Services handed over that Kubernetes already shows (or that are gone) need no memory
            waiting = set(pending)
            for ident, service in list(self.state.services.items()):
                if service.forgotten_once_shown and service_key(*ident) not in waiting:
                    del self.state.services[ident]
        else:
            for key in self.state.object_keys():
                self.queue.put(key)
        kube_proxy = self.state.kube_proxy
        if kube_proxy is not None and strict_arp_missing(kube_proxy):
            log_strict_arp(kube_proxy)
            self.recorder.record(KubeEvent(config_state_key(self.state.namespace), "", EventType.WARNING,
                                           Reason.STRICT_ARP_REQUIRED, strict_arp_message()))

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)

    # --- rebuilding from the streams ----------------------------------------------------------

    async def rebuild(self) -> None:
        """Fold every feed's last value per subject, up to what its durable consumer has handled."""
        for feed in FEEDS:
            floor = await self._durable_floor(feed)
            folded = 0
            async for received in self.bus.read(feed.stream, subjects=feed.subjects, last_per_subject=True):
                if received.sequence <= floor:
                    apply(self.state, received.event, subject=received.subject, sequence=received.sequence)
                    folded += 1
            log.info("status rebuilt stream=%s durable=%s floor=%d folded=%d", feed.stream.value,
                     feed.name, floor, folded)

    async def _durable_floor(self, feed: DurableSpec) -> int:
        """The stream sequence up to which the feed's durable consumer has handled everything.

        A missing durable is created to start after the current end: the rebuild covers the past."""
        floor = await durable_ack_floor(self.bus, feed)
        if floor is not None:
            return floor
        last = await self.bus.last_sequence(feed.stream)
        await create_durable(self.bus, feed, start_sequence=last + 1)
        return last

    # --- live events ------------------------------------------------------------------------

    async def handle(self, received: Received) -> None:
        """Fold one delivered event; queue what it changed. Never waits on the Kubernetes API."""
        change = apply(self.state, received.event, subject=received.subject, sequence=received.sequence)
        since = received.envelope.time.timestamp()
        origin = trace.get_current_span().get_span_context()  # the decision's trace, carried to the write
        for key in change.keys:
            if origin.is_valid:
                self._origins[key] = origin
            self.queue.put(key, since)
        for event in change.events:
            self.recorder.record(event)
            if event.reason is Reason.STRICT_ARP_REQUIRED and self.state.kube_proxy is not None:
                log_strict_arp(self.state.kube_proxy)
        metrics.PENDING.set(len(self.queue))

    # --- what Kubernetes shows now ---------------------------------------------------------------

    def seen(self, kind: ObjectKind, obj: Obj) -> None:
        """An object as the observe side read it: one that does not show what metalbus decided for it
        (someone else wrote its status, or it was made again under its name) is written again. Cheap:
        it runs on the observe side's loop, and makes no request unless the object needs a write."""
        metadata = meta(obj)
        namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
        if kind is ObjectKind.SERVICE:
            shown = self.converger.shown
            shown.record(obj)  # its next write needs no read first
            known = shown.get(namespace, name)
            if known is not None and known.resource_version != str(metadata.get("resourceVersion") or ""):
                return  # older than what the writer has seen since (its own write's answer): judged already
        key = service_key(namespace, name) if kind is ObjectKind.SERVICE else pool_key(self.state.namespace, name)
        desired = target(self.state, key)
        if isinstance(desired, ServiceTarget):
            if desired.uid and metadata.get("uid") not in (None, "", desired.uid):
                return  # a new Service under the old name: ipam decides for it
            if shows(desired, obj, ip_mode=self.converger.ip_mode):
                return
        elif isinstance(desired, PoolTarget) and namespace == self.state.namespace:
            if pool_shows(desired, obj):
                return
            self._doubted.add(key)  # what we last wrote is not what it shows: compare, even mid-write
        else:
            return
        if self.queue.waiting(key):
            return  # its write is coming: it reads the object first
        if not self.queue.busy(key):  # else most likely our own write half done: looked at again after it
            metrics.PUT_BACK.labels(key.kind.value).inc()
        self.queue.put(key)

    # --- writing ------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            key, since = await self.queue.get()
            try:
                await self.write(key, since)
            except Exception:  # a bug must not stop the writer: log it, try the object again later
                log.exception("status write crashed object=%s/%s/%s", key.kind, key.namespace, key.name)
                self.queue.put_later(key, since, self.settings.max_retry_delay)
            finally:
                self.queue.done(key)
                metrics.PENDING.set(len(self.queue))

    def _giver(self, taker: ServiceTarget) -> ObjectKey | None:
        """A Service Kubernetes shows holding an address ``taker`` is to show, and may not share it with: its
        status goes first. Either metalbus has decided it no longer holds the address, or the decision saying
        so is still on its way (both decisions give it the address, without one sharing key). One metalbus
        has no word on is not waited for."""
        ident = (taker.namespace, taker.name)
        shown = self.converger.shown
        already = set(shown_ips(shown.get(taker.namespace, taker.name)))  # nothing to wait for: it shows them
        for ip in taker.ips:
            if ip in already:
                continue
            for other in shown.showing(ip):
                theirs = self.state.services.get(other)
                if other == ident or theirs is None:
                    continue
                shares = taker.sharing_key is not None and theirs.sharing_key == taker.sharing_key
                if ip not in theirs.ips or not shares:
                    return service_key(*other)
        return None

    def _retry_delay(self, failures: int) -> float:
        """How long after its last failed write an object is tried again (doubling per failure in a row)."""
        return float(min(self.settings.retry_delay * 2 ** (failures - 1), self.settings.max_retry_delay))

    def _giving_only(self, desired: ServiceTarget) -> ServiceTarget | None:
        """``desired`` without the addresses it is to take: what it shows and keeps; None when that gives
        nothing away (it would write nothing)."""
        shown = self.converger.shown.get(desired.namespace, desired.name)
        showing = set(shown_ips(shown))
        kept = tuple(ip for ip in desired.ips if ip in showing)
        if set(kept) == showing:
            return None
        return dataclasses.replace(desired, ips=kept, pool=desired.pool if kept else None)

    async def write(self, key: ObjectKey, since: float | None) -> None:
        origin = self._origins.pop(key, None)
        desired = target(self.state, key)
        if desired is None:
            return
        kind = target_kind(desired).value
        if key.kind is not TargetKind.SERVICE and self._written.get(key) == desired and key not in self._doubted:
            metrics.SKIPPED.labels(kind).inc()  # Services are always compared: they are the contract
            return
        if isinstance(desired, ServiceTarget) and (giver := self._giver(desired)) is not None:
            # another Service still shows an address this one takes: its status is written first, so that no
            # two Services that do not share an address ever show it, not even for a moment. Meanwhile this
            # one gives up at once what it gives away (two Services trading addresses wait for nobody).
            metrics.HELD_FOR_GIVER.inc()
            if giver_failures := self._failures.get(giver, 0):
                # the giver's writes fail: it is tried again on its own backoff, and this one waits as long
                self.queue.put_later(key, since, max(GIVER_WAIT, self._retry_delay(giver_failures)))
            else:
                self.queue.put(giver)
                self.queue.put_later(key, since, GIVER_WAIT)
            held = self._giving_only(desired)
            if held is None:
                return
            desired = held
        self._doubted.discard(key)  # this write reads the object: a change seen from now on doubts it again
        parent = trace.set_span_in_context(trace.NonRecordingSpan(origin)) if origin is not None else None
        await self.gate.acquire()
        answer, retry_after = WriteAnswer.FAILED, None
        try:
            with self._tracer.start_as_current_span(
                f"write {kind}", context=parent, kind=trace.SpanKind.CLIENT,
                attributes={"k8s.namespace.name": key.namespace, "k8s.object.name": key.name},
            ) as span:
                outcome = await self.converger.converge(desired)
                span.set_attribute("metalbus.status.outcome", outcome.value)
            answer = WriteAnswer.ACCEPTED
        except TooManyRequests as error:
            answer, retry_after = WriteAnswer.TOO_MANY_REQUESTS, error.retry_after
            metrics.THROTTLED.labels(kind).inc()
            log.debug("status write throttled kind=%s object=%s/%s retry_after_s=%s", kind, key.namespace,
                     key.name, retry_after)
            self._written.pop(key, None)
            self.queue.put(key, since)  # again once the pause is over (the whole writer waits, not this object)
            return
        except MetalbusError as error:
            metrics.ERRORS.labels(kind).inc()
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = self._retry_delay(failures)
            log.warning("status write failed kind=%s object=%s/%s attempt=%d retry_in_s=%.1f error=%s",
                        kind, key.namespace, key.name, failures, delay, error)
            self._written.pop(key, None)  # what it shows now is not known: the retry compares
            self.queue.put_later(key, since, delay)
            return
        finally:
            self.gate.release(answer, retry_after=retry_after)
        self._failures.pop(key, None)
        if outcome is Outcome.GONE or key.kind is TargetKind.SERVICE:
            self._written.pop(key, None)
        else:
            self._written[key] = desired
        if outcome is Outcome.UNCHANGED:
            metrics.SKIPPED.labels(kind).inc()
        if since is not None and outcome is not Outcome.GONE:
            metrics.WRITE_LAG.labels(kind).observe(max(0.0, time.time() - since))
        if isinstance(desired, ServiceTarget) and desired.forgotten_once_shown:
            ident = (desired.namespace, desired.name)
            if self.state.services.get(ident) is desired:
                del self.state.services[ident]  # not ours any more and shown: nothing left to remember
