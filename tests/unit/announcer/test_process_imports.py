"""The announcer process loads no Kubernetes client (it has no Kubernetes credentials and reads decisions, not
the world) and no aiohttp (nats-py's websocket transport, unused): each costs memory on every node."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

PROBE = """
import sys
import services.cli
from services.announcer.service import announcer_main
loaded = sorted({name.split(".")[0] for name in sys.modules})
print(" ".join(loaded))
"""


def test_the_announcer_loads_no_kubernetes_client_nor_aiohttp() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)  # fmt: skip
    loaded = set(done.stdout.split())
    assert "services" in loaded  # the probe ran
    assert not loaded & {"kubernetes", "kubernetes_asyncio", "aiohttp", "scapy"}
