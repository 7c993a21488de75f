"""A lease kept from a thread of its own, with its own event loop and NATS connection.

The owner's event loop may be busy for seconds (re-adopting a large world, replaying a long history,
deciding a big batch); renewing the lease must not wait for it, or two replicas take turns. The
keeper competes for the lease and renews it every ``interval`` on its own loop. A request is cut off
when the lease it would extend runs out anyway (``TTL`` after the last successful renewal was sent):
no renewal takes longer than the TTL, and the owner never believes in a lease the server may have let
expire. ``held`` is what the owner checks before each piece of work it writes.

A holder that dies need not cost a whole TTL: the server reports at once that its connection closed
(``connections.closed``, heard on the keeper's own connection: its user must be allowed to subscribe to
it, as ipam's is). A competing keeper that hears the connection the lease's entry names reported
closed takes the lease there and then (:meth:`BusLease.take_from_closed`), logs it and counts it in
``metalbus_lease_takeovers_total{lease,reason}``; its owner is told as on any acquisition. A connection
closed because its server shuts down is no death (its client reconnects to another server): that
report takes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from nats.aio.msg import Msg

from schemas.events import BusConnection
from services.common.aio import stopped
from services.common.bus import Bus, BusSettings
from services.common.errors import MetalbusError
from services.common.lease import TAKEOVERS, BusLease, death_reported
from services.common.subjects import CONNECTIONS_CLOSED

log = logging.getLogger(__name__)

T = TypeVar("T")

class LeaseKeeper:
    """Competes for one lease and renews it from a thread of its own (``start`` … ``stop``)."""

    def __init__(self, settings: BusSettings, *, name: str, holder: str, ttl: float, interval: float) -> None:
        self._settings = settings
        self._name = name
        self._holder = holder
        self.ttl = ttl
        self._interval = interval
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._owner: asyncio.AbstractEventLoop | None = None
        # Shared between the threads (single assignments, atomic under the GIL):
        self._competing = False
        self._valid_until = 0.0  # monotonic time the lease runs out, counted from a renewal's sending
        # The keeper's own loop only:
        self._bus: Bus | None = None
        self._lease: BusLease | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._turn: asyncio.Lock | None = None  # a renewal and a release never interleave
        #: On the owner's loop: set while the lease is held, and when it was lost (until taken again).
        self.acquired = asyncio.Event()
        self.lost = asyncio.Event()
        #: How many times the lease was taken, and lost (not given up).
        self.acquisitions = 0
        self.losses = 0

    @property
    def held(self) -> bool:
        """Whether the lease is ours now: renewed less than a TTL ago, counted from the renewal's sending."""
        return time.monotonic() < self._valid_until

    # --- the owner's side ---------------------------------------------------------------------

    async def start(self) -> None:
        self._owner = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"lease {self._name}", daemon=True)
        self._thread.start()
        await self._call(self._connect())

    def compete(self) -> None:
        """Try for the lease at once, then every interval until it is held; keep renewing it then."""
        if not self._competing:
            self._competing = True
            self._loop.call_soon_threadsafe(self._wake_up)

    async def release(self) -> None:
        """Stop competing and give the lease up at once, so a standby takes over without waiting."""
        self._competing = False
        self._valid_until = 0.0
        self.acquired.clear()
        if self._thread is not None:
            await self._call(self._release())

    async def stop(self) -> None:
        """Release the lease, close the connection and end the thread."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._competing = False
            self._valid_until = 0.0
            await self._call(self._close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(thread.join, 10)

    async def closed_reported(self, data: bytes) -> bool:
        """Act on a report of a closed connection (the body of a ``connections.closed`` advisory) as if
        the server had sent it: what the keeper's subscription does with each. True when the lease was
        taken. For reports no client may publish (a server shutting down, say)."""
        return await self._call(self._heard_closed(data))

    async def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    def _tell_owner(self, *, held: bool) -> None:
        if self._owner is not None and not self._owner.is_closed():
            self._owner.call_soon_threadsafe(self._on_owner_loop, held)

    def _on_owner_loop(self, held: bool) -> None:
        if held:
            self.lost.clear()
            self.acquired.set()
        else:
            self.acquired.clear()
            self.lost.set()

    # --- the keeper's thread ------------------------------------------------------------------

    def _run(self) -> None:
        """The thread: the loop until ``stop``, then what the client left running is ended and the loop closed."""
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            leftover = asyncio.all_tasks(self._loop)
            for task in leftover:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _connect(self) -> None:
        self._bus = await Bus.connect(self._settings, producer=f"{self._holder}/lease")
        self._lease = BusLease(self._bus, name=self._name, holder=self._holder, ttl=self.ttl)
        self._wake = asyncio.Event()
        self._turn = asyncio.Lock()
        self._task = asyncio.create_task(self._keep(self._lease, self._wake), name=f"lease {self._name}")
        self._task.add_done_callback(_log_death)
        await self._bus.subscribe(CONNECTIONS_CLOSED, cb=self._on_connection_closed)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _keep(self, lease: BusLease, wake: asyncio.Event) -> None:
        while True:
            if self._competing:
                try:
                    await self._round(lease)
                except Exception:  # a bug must not end the keeper: the lease is lost, the next round retries
                    log.exception("lease round failed lease=%s holder=%s", self._name, self._holder)
                    lease.forget()
                    if self._valid_until:
                        self._lost()
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._interval)

    async def _round(self, lease: BusLease) -> None:
        """One try for the lease, or one renewal of it, within the time the lease has left."""
        assert self._turn is not None
        async with self._turn:
            if not self._competing:
                return
            sent = time.monotonic()
            holding = lease.held
            budget = (self._valid_until if holding else sent + self.ttl) - sent
            try:
                async with asyncio.timeout(max(budget, 0.0)):
                    ok = await (lease.renew(retake=False) if holding else lease.try_acquire())
            except TimeoutError:
                lease.forget()
                ok = False
                log.warning("lease renewal cut off lease=%s holder=%s after_s=%.2f",
                            self._name, self._holder, max(budget, 0.0))
            except MetalbusError as error:
                lease.forget()
                ok = False
                log.warning("lease request failed lease=%s holder=%s error=%r", self._name, self._holder, error)
            if not self._competing:  # given up meanwhile: the release that follows deletes the entry
                return
            if ok:
                taken = not self.held
                self._valid_until = sent + self.ttl
                if taken:
                    self.acquisitions += 1
                    self._tell_owner(held=True)
            elif holding or self._valid_until:
                self._lost()

    async def _on_connection_closed(self, message: Msg) -> None:
        try:
            await self._heard_closed(message.data)
        except Exception:  # one report's trouble; the rounds go on
            log.exception("lease takeover failed lease=%s holder=%s", self._name, self._holder)

    async def _heard_closed(self, data: bytes) -> bool:
        """The server reports a connection closed: the holder's, the lease is taken at once (not at its
        expiry). True when it was."""
        if not self._competing or self.held or self._lease is None:
            return False
        closed = death_reported(data, component="lease")
        if closed is None:
            return False  # counted; a client of a server going down reconnects to another
        return await self._take_from_closed(self._lease, closed.connection, reason=closed.reason)

    async def _take_from_closed(self, lease: BusLease, closed: BusConnection, *, reason: str) -> bool:
        assert self._turn is not None
        async with self._turn:
            if not self._competing or lease.held:
                return False
            sent = time.monotonic()
            try:
                async with asyncio.timeout(self.ttl):
                    taken_from = await lease.take_from_closed(closed)
            except (TimeoutError, MetalbusError) as error:
                lease.forget()
                log.warning("lease takeover not made lease=%s holder=%s error=%r", self._name, self._holder, error)
                return False
            if taken_from is None or not self._competing:  # given up meanwhile: the release deletes the entry
                return False
            self._valid_until = sent + self.ttl
            self.acquisitions += 1
            TAKEOVERS.labels(lease=self._name, reason=reason).inc()
            log.warning("lease taken from a closed connection lease=%s holder=%s reason=%r taken_from=%s",
                        self._name, self._holder, reason, taken_from)
            self._tell_owner(held=True)
            return True

    def _lost(self) -> None:
        self._valid_until = 0.0
        self.losses += 1
        self._tell_owner(held=False)

    async def _release(self) -> None:
        assert self._turn is not None and self._lease is not None
        async with self._turn:
            try:
                async with asyncio.timeout(self.ttl):  # unanswered, the entry expires by itself
                    await self._lease.release()
            except TimeoutError:
                self._lease.forget()

    async def _close(self) -> None:
        if self._lease is not None:
            await self._release()
        task, self._task = self._task, None
        if task is not None:
            await stopped(task)
        if self._bus is not None:
            await self._bus.close()


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("lease keeper died error=%r", task.exception())
