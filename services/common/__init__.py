"""The runtime every service shares.

nats-py imports aiohttp for its websocket transport, which metalbus never uses (its URLs are ``nats://`` and
``tls://``): 14 MB of every process's memory, and the announcer's budget is 80 MB. So the client is imported
here, before any module of this package imports it, with aiohttp hidden: its websocket transport then says
it needs aiohttp if it is ever asked for. A service that uses aiohttp itself (the Kubernetes client) imports
it afterwards as usual.
"""

from __future__ import annotations

import sys


def _import_nats_without_aiohttp() -> None:
    if "aiohttp" in sys.modules or "nats.aio.transport" in sys.modules:
        return  # imported already: nothing to save
    sys.modules["aiohttp"] = None  # type: ignore[assignment]  # makes `import aiohttp` raise ImportError
    try:
        import nats.aio.transport  # noqa: F401  # the one module that imports aiohttp
    finally:
        del sys.modules["aiohttp"]


_import_nats_without_aiohttp()
