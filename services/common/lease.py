"""A lease held in NATS (a JetStream key-value entry that expires unless renewed).

One holder at a time: ``try_acquire`` creates the key only if it is absent (or expired, or released);
``renew`` rewrites it only at the revision the holder last wrote. The bucket's TTL is the lease
duration, so a holder that dies loses the lease after at most one TTL.

The entry names its holder and the connection it was written on (:class:`LeaseEntry`; a plain holder
name, as earlier releases wrote, still reads). When the server reports that connection closed, a
rival need not wait for the TTL: ``take_from_closed`` rewrites the entry at the revision that named the
closed connection, so it fails harmlessly if the holder renewed meanwhile (from a new connection, say).

Safety never rests on the lease alone. A holder deposed that way (its connection closed while the
process lives on, e.g. cut off from its server) may still believe in its lease for up to a TTL after
its last renewal; but ipam's writes are fenced by the ``IPAM`` stream's expected last sequence, so once
the new holder has written, the deposed one cannot append on stale state: its next append is refused.
The lease avoids two replicas working at once; the fence keeps the stream right if they ever do.

Which reports depose a holder (:func:`death_reported`) and how a takeover is counted (:data:`TAKEOVERS`) are
shared with the watcher's Kubernetes Lease (``services/watcher/leader.py``), which names its holder's
connection the same way.
"""

from __future__ import annotations

import logging

from nats.js import api
from nats.js.kv import KeyValue
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.advisories import ClientDisconnected
from schemas.events import BusConnection
from schemas.refusal import Refused
from services.common.bus import Bus
from services.common.errors import Conflict, ConnectionClosed, MetalbusError, NotFound, RetryableError
from services.common.inbound import read_connection_closed
from services.common.nats_errors import translated
from services.common.subjects import LeaseSpec

log = logging.getLogger(__name__)

TAKEOVERS = Counter(
    "metalbus_lease_takeovers_total",
    "Leases taken before their entry expired, because the server reported the holder's connection closed "
    "(by the reason the server gave)",
    ["lease", "reason"],
)


def death_reported(data: bytes, *, component: str) -> ClientDisconnected | None:
    """The report of a closed connection (the body of a ``connections.closed`` advisory) when it may depose
    the lease holder behind that connection; None when it cannot be read (counted as refused) or when the
    connection closed because its server shuts down: that is no death, its client reconnects to another."""
    closed = read_connection_closed(data, component=component)
    if isinstance(closed, Refused) or closed.server_shutting_down:
        return None
    return closed


class LeaseEntry(BaseModel):
    """What a lease's entry holds: who holds it, and the connection the holder wrote it on."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    holder: str = Field(max_length=256)
    connection: BusConnection | None = None

    def encoded(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decoded(cls, value: bytes | None) -> LeaseEntry | None:
        """The entry from its value: None for an empty one, a plain holder name (an earlier release's
        value) with no connection."""
        if not value:
            return None
        if value.startswith(b"{"):
            try:
                return cls.model_validate_json(value)
            except ValidationError:
                pass
        return cls(holder=value.decode(errors="replace")[:256])


async def lease_bucket(bus: Bus, lease: LeaseSpec) -> KeyValue:
    """The lease's bucket with the lease's TTL: bound as it is, else made (or given this TTL, an older
    release's bucket having another). Making and retuning are the administrative step's; a service
    user may only bind, and is refused the rest."""
    stream = f"KV_{lease.bucket}"
    try:
        with translated(f"stream info {stream}"):
            info = await bus.js.stream_info(stream)
    except NotFound:
        config = api.KeyValueConfig(bucket=lease.bucket, ttl=lease.ttl, history=1, storage=api.StorageType.FILE,
                                    replicas=bus.settings.replicas, max_bytes=1024 * 1024)
        with translated(f"create bucket {lease.bucket}"):
            return await bus.js.create_key_value(config)
    with translated(f"bind bucket {lease.bucket}"):
        if info.config.max_age != lease.ttl:
            info.config.max_age = lease.ttl
            info.config.duplicate_window = min(info.config.duplicate_window or lease.ttl, lease.ttl)
            await bus.js.update_stream(info.config)
            log.info("lease bucket retuned bucket=%s ttl_s=%.2f", lease.bucket, lease.ttl)
        return await bus.js.key_value(lease.bucket)


class BusLease:
    def __init__(self, bus: Bus, *, name: str, holder: str, ttl: float = 2.0) -> None:
        self._bus = bus
        self._name = name
        self._holder = holder
        self.ttl = ttl
        self._kv: KeyValue | None = None
        self._revision: int | None = None

    @property
    def held(self) -> bool:
        return self._revision is not None

    def _value(self) -> bytes:
        """The entry this holder writes: its name and the connection it writes on (as the server names it)."""
        return LeaseEntry(holder=self._holder, connection=self._bus.connection).encoded()

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await lease_bucket(self._bus, LeaseSpec(self._name, self.ttl))
        return self._kv

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it. True when this holder now holds it."""
        if self.held:
            return await self.renew()
        kv = await self._bucket()
        try:
            with translated(f"take lease {self._name}"):
                self._revision = await kv.create(self._name, self._value())
        except (Conflict, NotFound):
            # Held by someone — or it expired between the client's create and its check: next time.
            return False
        except (RetryableError, ConnectionClosed):
            return False
        log.info("lease acquired lease=%s holder=%s", self._name, self._holder)
        return True

    async def renew(self, *, retake: bool = True) -> bool:
        """Extend the lease. False (and no longer held) if someone else took it or the bus is gone.
        An entry that expired while nobody else took it is taken again with ``retake``; without, an
        expiry is a loss (the holder had no lease for a moment)."""
        if self._revision is None:
            return False
        kv = await self._bucket()
        try:
            with translated(f"renew lease {self._name}"):
                self._revision = await kv.update(self._name, self._value(), last=self._revision)
            return True
        except Conflict:
            # Expired while we were busy (nobody else holds it): take it again. Held by another: lost.
            self._revision = None
            if retake and await self.try_acquire():
                log.warning("lease had expired and was taken again lease=%s holder=%s", self._name, self._holder)
                return True
            log.warning("lease lost lease=%s holder=%s", self._name, self._holder)
        except (RetryableError, ConnectionClosed) as e:
            log.warning("lease not renewed lease=%s holder=%s error=%r", self._name, self._holder, e)
        self._revision = None
        return False

    def forget(self) -> None:
        """Stop believing in the lease without a word to the server (a renewal cut off midway: its
        outcome is unknown, so the entry is left to expire)."""
        self._revision = None

    async def release(self) -> None:
        """Give the lease up at once, so a standby can take over without waiting for the TTL."""
        if self._revision is None:
            return
        revision, self._revision = self._revision, None
        kv = await self._bucket()
        try:
            with translated(f"release lease {self._name}"):
                await kv.delete(self._name, last=revision)
            log.info("lease released lease=%s holder=%s", self._name, self._holder)
        except MetalbusError as error:
            log.warning("lease not released lease=%s error=%r", self._name, error)

    async def take_from_closed(self, closed: BusConnection) -> str | None:
        """Take the lease from a holder whose connection the server reported closed: rewrite the entry
        at the revision that names ``closed``. The holder taken from, or None when the entry names
        another connection (or none, or this holder), or changed meanwhile (renewed, released, taken)."""
        if self.held:
            return None
        kv = await self._bucket()
        try:
            with translated(f"read lease {self._name}"):
                found = await kv.get(self._name)
            entry = LeaseEntry.decoded(found.value)
            if entry is None or entry.connection != closed or entry.holder == self._holder or found.revision is None:
                return None
            with translated(f"take lease {self._name}"):
                self._revision = await kv.update(self._name, self._value(), last=found.revision)
        except (Conflict, NotFound, RetryableError, ConnectionClosed):
            return None
        return entry.holder

    async def holder(self) -> str | None:
        kv = await self._bucket()
        try:
            with translated(f"read lease {self._name}"):
                found = await kv.get(self._name)
        except NotFound:
            return None
        entry = LeaseEntry.decoded(found.value)
        return entry.holder if entry is not None else None
