"""A bus client on an event loop of its own thread, for synchronous network-lab tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from services.common.bus import Bus, BusSettings
from services.common.provision import provision

T = TypeVar("T")


class BusThread:
    """The test's bus client on an event loop of its own, so blocking lab tools never stall it."""

    def __init__(self, url: str, *, name: str = "lab", replicas: int = 1) -> None:
        """Connects to ``url`` and provisions the streams with ``replicas`` (as the cluster's own provisioning
        did: fewer would scale its streams down)."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"{name}-bus", daemon=True)
        self._thread.start()
        self._others: list[Bus] = []
        self.bus: Bus = self.call(Bus.connect(BusSettings(url=url, initial_attempts=20, replicas=replicas),
                                                  producer=f"test/{name}"))
        self.call(provision(self.bus))

    def connect(self, url: str, *, name: str) -> Bus:
        """One more connection on this loop, e.g. with a component's credential, to publish as it would."""
        other = self.call(Bus.connect(BusSettings(url=url, initial_attempts=20), producer=f"test/{name}"))
        self._others.append(other)
        return other

    def call(self, work: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout)

    def close(self) -> None:
        try:
            for connection in (*self._others, self.bus):
                self.call(connection.close(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
            self.loop.close()
