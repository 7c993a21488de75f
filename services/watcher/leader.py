"""Leader election over a coordination.k8s.io/v1 Lease, as client-go does it.

A candidate takes the Lease when nobody holds it or when the holder's record has not changed for a
whole lease duration (measured on our own clock from when we saw it change, so clock skew between
replicas does not matter). The holder renews it every ``renew_every``; when it cannot renew for
``renew_deadline`` (shorter than the duration) it gives up before anybody else may take over; a renewal the API
server leaves unanswered is cut off at that deadline, so no renewal outlasts the Lease.
Every write carries the resourceVersion it read: a 409 Conflict means someone else wrote first.
A graceful stop releases the Lease (empty holder) so the other replica takes over at once.

:func:`lead` runs a piece of work only while this replica leads and stops it when leadership ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
from kubernetes.client.exceptions import ApiException

from services.watcher.observe.metrics import LEADER

log = logging.getLogger(__name__)

LEASE_NAME = "metalbus-watcher"
CONFLICT = 409
NOT_FOUND = 404

#: The work done while leading; the event is set when leadership ends (lost or stopping).
Work = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    name: str = LEASE_NAME
    duration: float = 15.0
    renew_every: float = 2.0
    #: Give leadership up when no renewal succeeded for this long (must be below ``duration``).
    renew_deadline: float = 10.0
    #: How often a candidate tries to take the Lease.
    retry_every: float = 2.0
    #: How long the work may take to finish after a graceful stop before it is cancelled.
    stop_grace: float = 5.0


class Attempt(enum.Enum):
    HELD = "held"
    """We hold the Lease (acquired or renewed)."""
    TAKEN = "taken"
    """Another replica holds a live Lease."""
    FAILED = "failed"
    """An error or a conflicting write; try again."""


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        *,
        coordination: kubernetes.client.CoordinationV1Api,
        namespace: str,
        identity: str,
        settings: LeaseSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coordination = coordination
        self.namespace = namespace
        self.identity = identity
        self.settings = settings or LeaseSettings()
        self._clock = clock
        # Lease calls get a thread of their own: renewals never queue behind other blocking calls.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A client call on the Lease thread (bodies are plain dicts, answers raw when asked)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    async def _read(self) -> dict[str, Any] | None:
        try:
            response = await self._call(
                self.coordination.read_namespaced_lease, self.settings.name, self.namespace,
                _preload_content=False, _request_timeout=5.0,
            )
        except ApiException as error:
            if error.status == NOT_FOUND:
                return None
            raise
        lease = json.loads(response.data)
        return lease if isinstance(lease, dict) else None

    def _spec(self, *, acquire_time: str, transitions: int, holder: str | None = None) -> dict[str, Any]:
        now = _micro_time(datetime.now(UTC))
        return {
            "holderIdentity": self.identity if holder is None else holder,
            "leaseDurationSeconds": max(1, round(self.settings.duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> Attempt:
        """One attempt to take or keep the Lease."""
        try:
            return await self._attempt()
        except ApiException as error:
            if error.status != CONFLICT:
                log.warning("lease call failed status=%s reason=%s", error.status, error.reason)
            return Attempt.FAILED
        except Exception as error:  # connection errors, timeouts: the caller retries
            log.warning("lease call failed error=%r", error)
            return Attempt.FAILED

    async def _attempt(self) -> Attempt:
        lease = await self._read()
        now = self._clock()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.settings.name, "namespace": self.namespace},
                "spec": self._spec(acquire_time="", transitions=0),
            }
            await self._call(self.coordination.create_namespaced_lease, self.namespace, body, _request_timeout=5.0)
            self._observed, self._observed_at = None, now
            return Attempt.HELD
        metadata, spec = lease.get("metadata") or {}, lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.settings.duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return Attempt.TAKEN
        mine = holder == self.identity
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        new_spec = self._spec(acquire_time=str(spec.get("acquireTime") or "") if mine else "", transitions=transitions)
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.settings.name, "namespace": self.namespace,
                         "resourceVersion": metadata.get("resourceVersion")},
            "spec": new_spec,
        }
        await self._call(
            self.coordination.replace_namespaced_lease, self.settings.name, self.namespace, body,
            _request_timeout=5.0,
        )
        if not mine:
            log.info("lease acquired name=%s identity=%s previous=%s", self.settings.name, self.identity, holder)
        return Attempt.HELD

    async def release(self) -> None:
        """Give the Lease up if we hold it, so another replica can take it at once."""
        try:
            lease = await self._read()
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return
            body = dict(lease)
            body["spec"] = {
                **self._spec(acquire_time=str(spec.get("acquireTime") or ""),
                             transitions=int(spec.get("leaseTransitions") or 0), holder=""),
                "leaseDurationSeconds": 1,
            }
            await self._call(
                self.coordination.replace_namespaced_lease, self.settings.name, self.namespace, body,
                _request_timeout=5.0,
            )
            log.info("lease released name=%s identity=%s", self.settings.name, self.identity)
        except Exception as error:  # best effort: the Lease expires anyway
            log.warning("lease release failed error=%r", error)

    async def keep(self, term: asyncio.Event) -> None:
        """Renew until ``term`` is set (returns) or leadership is lost (returns too)."""
        last_renewed = self._clock()
        while not term.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(term.wait(), self.settings.renew_every)
                return
            attempt = await self._renewal(deadline=last_renewed + self.settings.renew_deadline)
            if attempt is Attempt.HELD:
                last_renewed = self._clock()
            elif attempt is Attempt.TAKEN:
                log.warning("lease taken by another replica identity=%s", self.identity)
                return
            elif self._clock() - last_renewed >= self.settings.renew_deadline:
                log.warning("lease not renewed in time, stepping down identity=%s", self.identity)
                return

    async def _renewal(self, *, deadline: float) -> Attempt:
        """One renewal (after a conflict or an error, read again at once, once), cut off at ``deadline``: however
        long the API server takes to answer (two calls of up to 5 s each, twice), leadership is given up by the
        renew deadline, before the Lease can expire for the other replica."""
        async def renew() -> Attempt:
            attempt = await self.try_acquire_or_renew()
            if attempt is Attempt.FAILED:
                attempt = await self.try_acquire_or_renew()
            return attempt

        try:
            return await asyncio.wait_for(renew(), max(0.0, deadline - self._clock()))
        except TimeoutError:
            log.warning("lease renewal unanswered by the renew deadline identity=%s", self.identity)
            return Attempt.FAILED


async def _wait_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)


async def lead(
    *,
    elector: LeaderElector,
    work: Work,
    stopping: asyncio.Event,
    on_change: Callable[[bool], None] | None = None,
) -> None:
    """Run for leadership until ``stopping``; run ``work`` during every term, stop it when the term ends.

    ``on_change(True)`` when a term starts, ``on_change(False)`` when it ends and after a first attempt
    that found another leader (this replica is then a standby).
    """
    settings = elector.settings
    standing_by = False
    while not stopping.is_set():
        if await elector.try_acquire_or_renew() is not Attempt.HELD:
            if not standing_by and on_change:
                on_change(False)
            standing_by = True
            await _wait_or_stop(stopping, settings.retry_every)
            continue
        standing_by = True  # after the term, trying again is standing by
        LEADER.set(1)
        if on_change:
            on_change(True)
        log.info("leading identity=%s", elector.identity)
        failed = False
        try:
            failed = await _term(elector, work, stopping)
        finally:
            LEADER.set(0)
            if on_change:
                on_change(False)
            if stopping.is_set() or failed:
                await asyncio.shield(elector.release())
        log.info("no longer leading identity=%s", elector.identity)
        if failed:
            await _wait_or_stop(stopping, settings.retry_every)


async def _term(elector: LeaderElector, work: Work, stopping: asyncio.Event) -> bool:
    """One term of leadership; True when the work failed."""
    term = asyncio.Event()
    work_task = asyncio.create_task(work(term), name="leader-work")
    keep_task = asyncio.create_task(elector.keep(term), name="leader-keep")
    stop_task = asyncio.create_task(stopping.wait(), name="leader-stop")
    tasks = {work_task, keep_task, stop_task}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        term.set()
        if stop_task.done() and not work_task.done():
            await asyncio.wait({work_task}, timeout=elector.settings.stop_grace)
    finally:
        term.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if work_task.cancelled():
        return False
    error = work_task.exception()
    if error is not None:
        log.error("leader work failed identity=%s error=%r", elector.identity, error, exc_info=error)
        return True
    return False
