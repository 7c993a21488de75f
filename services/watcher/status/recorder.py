"""Kubernetes Events (core/v1), recorded off the write path, rate limited, identical ones aggregated.

An Event identical to one recorded before (same object, type, reason and message) bumps that Event's
``count`` and ``lastTimestamp`` instead of making a new object, as client-go's recorder does. Events
are best effort: when the backlog passes ``max_pending`` the oldest are dropped (and counted). Given the
status writer's gate, Events go through it too: a 429 pauses them with the writes, and the refused Event is
recorded first once the pause is over (the server asked for it later, as client-go's recorder tries again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime

from services.common.errors import MetalbusError, NotFound, TooManyRequests
from services.watcher.status import metrics
from services.watcher.status.desired import KubeEvent, TargetKind
from services.watcher.status.objects import EVENTS, ObjectApi
from services.watcher.status.pacing import WriteAnswer
from services.watcher.status.queueing import TokenBucket, WriteGate

log = logging.getLogger(__name__)

API_VERSIONS = {kind: "metallb.io/v1beta1" for kind in TargetKind} | {TargetKind.SERVICE: "v1"}
AggregationKey = tuple[TargetKind, str, str, str, str, str]


class EventRecorder:
    def __init__(self, api: ObjectApi, *, component: str = "metalbus", instance: str = "",
                 rate: float = 100.0, burst: int = 200, max_pending: int = 10_000, remember: int = 4096,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), gate: WriteGate | None = None) -> None:
        self._api = api
        self._gate = gate
        self._component = component
        self._instance = instance
        self._bucket = TokenBucket(rate, burst)
        self._pending: deque[KubeEvent] = deque()
        self._max_pending = max_pending
        self._seen: OrderedDict[AggregationKey, tuple[str, int]] = OrderedDict()
        self._remember = remember
        self._clock = clock
        self._wakeup = asyncio.Event()

    def record(self, event: KubeEvent) -> None:
        """Queue ``event``; never blocks."""
        if len(self._pending) >= self._max_pending:
            dropped = self._pending.popleft()
            metrics.EVENTS.labels(dropped.reason.value, "dropped").inc()
        self._pending.append(event)
        self._wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Record queued Events until cancelled."""
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            event = self._pending.popleft()
            await self._bucket.take()
            if self._gate is not None:
                await self._gate.acquire()
            answer, retry_after = WriteAnswer.FAILED, None
            try:
                await self.emit(event)
                answer = WriteAnswer.ACCEPTED
            except TooManyRequests as error:
                answer, retry_after = WriteAnswer.TOO_MANY_REQUESTS, error.retry_after
                metrics.THROTTLED.labels("Event").inc()
                self._pending.appendleft(event)  # the gate holds the next one until the pause is over
            except MetalbusError as error:
                metrics.EVENTS.labels(event.reason.value, "failed").inc()
                log.warning("event not recorded reason=%s object=%s/%s error=%s", event.reason,
                            event.regarding.namespace, event.regarding.name, error)
            except Exception:  # best effort: a bug here must not stop the recorder
                metrics.EVENTS.labels(event.reason.value, "failed").inc()
                log.exception("event not recorded reason=%s", event.reason)
            finally:
                if self._gate is not None:
                    self._gate.release(answer, retry_after=retry_after)

    async def emit(self, event: KubeEvent) -> None:
        """Record one Event now (aggregating with an identical earlier one)."""
        regarding = event.regarding
        key: AggregationKey = (regarding.kind, regarding.namespace, regarding.name, event.type.value,
                               event.reason.value, event.message)
        stamp = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        seen = self._seen.get(key)
        if seen is not None:
            name, count = seen
            try:
                await self._api.patch(EVENTS, regarding.namespace, name,
                                      {"count": count + 1, "lastTimestamp": stamp})
            except NotFound:
                pass  # expired (Events live about an hour): make a new one
            else:
                self._remember_event(key, name, count + 1)
                metrics.EVENTS.labels(event.reason.value, "aggregated").inc()
                return
        name = f"{regarding.name}.{time.time_ns():x}"
        body = {
            "metadata": {"name": name, "namespace": regarding.namespace},
            "involvedObject": {"kind": regarding.kind.value, "namespace": regarding.namespace,
                               "name": regarding.name, "apiVersion": API_VERSIONS[regarding.kind],
                               **({"uid": event.uid} if event.uid else {})},
            "reason": event.reason.value,
            "message": event.message,
            "type": event.type.value,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": self._component},
            "reportingComponent": self._component,
            "reportingInstance": self._instance or self._component,
        }
        await self._api.create(EVENTS, regarding.namespace, body, answer=False)  # named here: nothing to read
        self._remember_event(key, name, 1)
        metrics.EVENTS.labels(event.reason.value, "created").inc()

    def _remember_event(self, key: AggregationKey, name: str, count: int) -> None:
        self._seen[key] = (name, count)
        self._seen.move_to_end(key)
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
