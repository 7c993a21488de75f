"""Leader election over a coordination.k8s.io/v1 Lease, as client-go does it, and a known death taken at once.

A candidate takes the Lease when nobody holds it or when the holder's record has not changed for a
whole lease duration (measured on our own clock from when we saw it change, so clock skew between
replicas does not matter). The holder renews it every ``renew_every``; when it cannot renew for
``renew_deadline`` (shorter than the duration) it gives up before anybody else may take over; a renewal the API
server leaves unanswered is cut off at that deadline, so no renewal outlasts the Lease.
Every write carries the resourceVersion it read: a 409 Conflict means someone else wrote first.
A graceful stop releases the Lease (empty holder) so the other replica takes over at once.

A leader that dies without a word (kill -9, a crashed node) need not cost the whole 15 s: every record the
holder writes names, in the annotation ``metalbus.io/bus-connection``, the NATS connection of its process
(rewritten at each renewal, and a renewal is made at once after a reconnection). Every replica hears the
server's reports of closed connections (``connections.closed``). A standby that hears the connection named
by the Lease it last read reported closed reads the Lease again and, when that record still names the
closed connection, takes the Lease there and then: a replace at that record's resourceVersion. It logs
``lease taken from a closed connection`` and counts it in ``metalbus_lease_takeovers_total{lease,reason}``.
Where death cannot be known (a partition, a frozen process whose connection the server has not closed
yet) the Lease's duration still rules.

Why this is as safe as the Lease alone:

- Only the server reports a closed connection: every user is denied publishing on ``connections.closed``.
  A connection closed because its server shuts down is no death (the client reconnects to another server):
  that report takes nothing (:func:`services.common.lease.death_reported`, the rule ipam's lease keeps).
- The replace is made at the resourceVersion of the record that named the closed connection. If the holder
  wrote since (renewed from the connection it reconnected on, released, or another replica took it), the
  API server refuses it (409) and nothing is taken.
- A holder that lives on although its connection closed (cut off from its server, or closed as stale while
  its loop was held) finds the Lease taken at its next renewal, at most ``renew_every`` later (at once when
  it reconnects to NATS), and steps down; if the API server does not answer it, it steps down by the renew
  deadline as before. Until then it may still act, but: it cannot publish on the bus it lost, and what it
  publishes once reconnected (or flushes from its client's buffer) is fenced by the expected last sequence
  of each ``K8S`` subject, so it cannot overwrite what the new leader observed
  (``observe/publishing.py``); what it reads to write status comes over that same lost connection, and a
  status it writes late is put back by the new leader's status writer, which owns status.
- A report of a connection the standby's last read did not name takes nothing without asking the API
  server: a leader that reconnected and died again within a read (``retry_every``) of the standby is
  replaced when its Lease expires, as before. A standby's last read is never one of no Lease: when both
  replicas start at once and its create is refused (the other's came first), it reads the record made.

:func:`lead` runs a piece of work only while this replica leads and stops it when leadership ends.
"""

from __future__ import annotations

import asyncio
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
from pydantic import ValidationError

from schemas.events import BusConnection
from services.common.lease import TAKEOVERS, death_reported
from services.watcher.observe.metrics import LEADER

log = logging.getLogger(__name__)

LEASE_NAME = "metalbus-watcher"
#: The annotation of the Lease naming the holder's NATS connection (a :class:`BusConnection` as JSON).
BUS_CONNECTION_ANNOTATION = "metalbus.io/bus-connection"
#: A connection not (yet) known: named by no record.
_UNKNOWN = BusConnection()
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


def named_connection(lease: dict[str, Any]) -> BusConnection | None:
    """The bus connection a Lease record names (its holder's), or None (none, or not one that reads)."""
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(BUS_CONNECTION_ANNOTATION)
    if not isinstance(value, str):
        return None
    try:
        connection = BusConnection.model_validate_json(value)
    except ValidationError:
        return None
    return None if connection == _UNKNOWN else connection


class LeaderElector:
    def __init__(
        self,
        *,
        coordination: kubernetes.client.CoordinationV1Api,
        namespace: str,
        identity: str,
        settings: LeaseSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        connection: Callable[[], BusConnection] | None = None,
    ) -> None:
        """``connection``: this process's bus connection, named in every record it writes (none: a takeover
        from a closed connection is never made from this holder)."""
        self.coordination = coordination
        self.namespace = namespace
        self.identity = identity
        self.settings = settings or LeaseSettings()
        self._clock = clock
        # Lease calls get a thread of their own: renewals never queue behind other blocking calls.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._connection = connection
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        #: The holder's connection the Lease named when last read (a report of another takes nothing).
        self._named: BusConnection | None = None
        #: Set by :func:`lead` while this replica stands by: only then is a closed connection acted on.
        self.standing_by = False
        #: Set when the Lease was taken from a closed connection (the standby's wait ends at once).
        self.taken = asyncio.Event()
        #: Set on a bus reconnection: the leader renews at once, naming its new connection.
        self.renew_now = asyncio.Event()

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

    def _metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The metadata of a record this replica writes over ``metadata`` (read): its resourceVersion, and the
        annotations with this process's bus connection named (or none, while not connected)."""
        annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != BUS_CONNECTION_ANNOTATION}
        connection = self._connection() if self._connection is not None else _UNKNOWN
        if connection != _UNKNOWN:
            annotations[BUS_CONNECTION_ANNOTATION] = connection.model_dump_json()
        written: dict[str, Any] = {"name": self.settings.name, "namespace": self.namespace,
                                   "annotations": annotations}
        if metadata.get("resourceVersion"):
            written["resourceVersion"] = metadata["resourceVersion"]
        return written

    def _taking_over(self, metadata: dict[str, Any], spec: dict[str, Any], *, mine: bool) -> dict[str, Any]:
        """The record that renews the Lease (``mine``) or takes it from the holder of ``spec``, written at the
        resourceVersion read."""
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if mine else 1)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": self._metadata(metadata),
            "spec": self._spec(acquire_time=str(spec.get("acquireTime") or "") if mine else "",
                               transitions=transitions),
        }

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
                "metadata": self._metadata({}),
                "spec": self._spec(acquire_time="", transitions=0),
            }
            try:
                await self._call(self.coordination.create_namespaced_lease, self.namespace, body,
                                 _request_timeout=5.0)
            except ApiException as error:
                if error.status != CONFLICT:
                    raise
                # another replica made it first: what it wrote, and the connection it names, is read now, so
                # that replica's death is known at once from here on (not only after the next attempt)
                lease = await self._read()
                if lease is None:
                    raise
            else:
                self._named = None
                self._observed, self._observed_at = None, now
                return Attempt.HELD
        self._named = named_connection(lease)
        metadata, spec = lease.get("metadata") or {}, lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.settings.duration)
        if holder and holder != self.identity and now < self._observed_at + duration:
            return Attempt.TAKEN
        mine = holder == self.identity
        body = self._taking_over(metadata, spec, mine=mine)
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

    async def closed_reported(self, data: bytes) -> bool:
        """Act on a report of a closed connection (the body of a ``connections.closed`` advisory): while
        standing by, when it names the holder's connection (as the Lease last read named it) and its server is
        not shutting down, take the Lease at once. True when it was taken."""
        if not self.standing_by:
            return False
        closed = death_reported(data, component="watcher")
        if closed is None or self._named is None or closed.connection != self._named:
            return False
        try:
            taken_from = await self._take_from_closed(closed.connection)
        except ApiException as error:
            if error.status == CONFLICT:  # the holder wrote since (renewed, say): nothing taken
                log.info("lease not taken, it changed meanwhile lease=%s identity=%s", self.settings.name,
                         self.identity)
            else:
                log.warning("lease takeover failed lease=%s status=%s reason=%s", self.settings.name,
                            error.status, error.reason)
            return False
        except Exception as error:  # connection errors, timeouts: the Lease expires as before
            log.warning("lease takeover failed lease=%s error=%r", self.settings.name, error)
            return False
        if taken_from is None:
            return False
        TAKEOVERS.labels(lease=self.settings.name, reason=closed.reason).inc()
        log.warning("lease taken from a closed connection lease=%s identity=%s previous=%s reason=%r",
                    self.settings.name, self.identity, taken_from, closed.reason)
        self.taken.set()
        return True

    async def _take_from_closed(self, closed: BusConnection) -> str | None:
        """Take the Lease when the record read now still names ``closed`` for another holder: a replace at that
        record's resourceVersion (a 409 if anybody wrote since). The holder taken from, or None."""
        lease = await self._read()
        if lease is None:
            return None
        self._named = named_connection(lease)
        metadata, spec = lease.get("metadata") or {}, lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        if not holder or holder == self.identity or self._named != closed or not self.standing_by:
            return None
        await self._call(
            self.coordination.replace_namespaced_lease, self.settings.name, self.namespace,
            self._taking_over(metadata, spec, mine=False), _request_timeout=5.0,
        )
        return holder

    async def keep(self, term: asyncio.Event) -> None:
        """Renew until ``term`` is set (returns) or leadership is lost (returns too)."""
        last_renewed = self._clock()
        while not term.is_set():
            await _wait_any((term, self.renew_now), self.settings.renew_every)
            self.renew_now.clear()
            if term.is_set():
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


async def _wait_any(events: tuple[asyncio.Event, ...], seconds: float) -> None:
    """Until one of ``events`` is set, for at most ``seconds``."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def _wait_or_stop(stopping: asyncio.Event, seconds: float) -> None:
    await _wait_any((stopping,), seconds)


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
    try:
        while not stopping.is_set():
            elector.taken.clear()  # a takeover from here on ends the wait below
            if await elector.try_acquire_or_renew() is not Attempt.HELD:
                if not standing_by and on_change:
                    on_change(False)
                standing_by = elector.standing_by = True
                await _wait_any((stopping, elector.taken), settings.retry_every)
                continue
            elector.standing_by = False
            standing_by = True  # after the term, trying again is standing by
            await _one_term(elector, work, stopping, on_change)
    finally:
        elector.standing_by = False


async def _one_term(
    elector: LeaderElector, work: Work, stopping: asyncio.Event, on_change: Callable[[bool], None] | None
) -> None:
    """Lead (the Lease is held) until the term ends; released on a stop or a failure of the work."""
    settings = elector.settings
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
