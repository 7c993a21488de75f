"""A lease held in NATS (a JetStream key-value entry that expires unless renewed).

One holder at a time: ``try_acquire`` creates the key only if it is absent (or expired, or released);
``renew`` rewrites it only at the revision the holder last wrote. The bucket's TTL is the lease
duration, so a holder that dies loses the lease after at most one TTL. The lease avoids two replicas
working at once; correctness never rests on it alone (ipam's writes are also fenced by stream sequence).
"""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors
from nats.js import api
from nats.js.kv import KeyValue

from services.common.bus import Bus

log = logging.getLogger(__name__)

LEASE_BUCKET_PREFIX = "metalbus-lease-"
#: JetStream's answer to creating a stream that exists with another configuration.
STREAM_NAME_IN_USE = 10058


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

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            bucket = f"{LEASE_BUCKET_PREFIX}{self._name}"
            config = api.KeyValueConfig(
                bucket=bucket, ttl=self.ttl, history=1, storage=api.StorageType.FILE,
                replicas=self._bus.settings.replicas,
            )
            try:
                self._kv = await self._bus.js.create_key_value(config)
            except nats.js.errors.BadRequestError as error:
                if error.err_code != STREAM_NAME_IN_USE:
                    raise
                self._kv = await self._retune(bucket)
        return self._kv

    async def _retune(self, bucket: str) -> KeyValue:
        """The bucket exists with another TTL (an older release's): give it this lease's."""
        info = await self._bus.js.stream_info(f"KV_{bucket}")
        info.config.max_age = self.ttl
        info.config.duplicate_window = min(info.config.duplicate_window or self.ttl, self.ttl)
        await self._bus.js.update_stream(info.config)
        log.info("lease bucket retuned bucket=%s ttl_s=%.2f", bucket, self.ttl)
        return await self._bus.js.key_value(bucket)

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it. True when this holder now holds it."""
        if self.held:
            return await self.renew()
        kv = await self._bucket()
        try:
            self._revision = await kv.create(self._name, self._holder.encode())
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.KeyNotFoundError):
            # Held by someone — or it expired between the client's create and its check: next time.
            return False
        except (TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError):
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
            self._revision = await kv.update(self._name, self._holder.encode(), last=self._revision)
            return True
        except nats.js.errors.KeyWrongLastSequenceError:
            # Expired while we were busy (nobody else holds it): take it again. Held by another: lost.
            self._revision = None
            if retake and await self.try_acquire():
                log.warning("lease had expired and was taken again lease=%s holder=%s", self._name, self._holder)
                return True
            log.warning("lease lost lease=%s holder=%s", self._name, self._holder)
        except (TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError) as e:
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
            await kv.delete(self._name, last=revision)
            log.info("lease released lease=%s holder=%s", self._name, self._holder)
        except (nats.errors.Error, nats.js.errors.Error) as error:
            log.warning("lease not released lease=%s error=%r", self._name, error)

    async def holder(self) -> str | None:
        kv = await self._bucket()
        try:
            entry = await kv.get(self._name)
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None
