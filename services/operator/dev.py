"""``metalbus dev``: NATS with JetStream and every metalbus service as local processes.

For development on one machine: the announcer runs as this host's node, the watcher uses
``--kubeconfig`` (or ``KUBECONFIG``) when given and is left out otherwise. Ctrl-C stops everything.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from services.common.nats_server import EmbeddedNats


def run_dev(*, port: int, store: Path | None, kubeconfig: str | None, node: str | None) -> int:
    stop = threading.Event()  # Ctrl-C or SIGTERM
    changed = threading.Event()  # any of the above, or a child exited

    def on_stop_signal(*_: object) -> None:
        stop.set()
        changed.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop_signal)
    signal.signal(signal.SIGCHLD, lambda *_: changed.set())
    with EmbeddedNats(port=port, store_dir=store) as server:
        print(f"nats-server with JetStream at {server.url}", flush=True)
        base = [sys.executable, "-m", "services.cli"]
        commands = {
            "ipam": [*base, "ipam", "--nats", server.url],
            "announcer": [*base, "announcer", "--nats", server.url, "--node", node or socket.gethostname()],
        }
        if kubeconfig:
            commands["watcher"] = [*base, "watcher", "--nats", server.url, "--kubeconfig", kubeconfig]
        else:
            print("no --kubeconfig/KUBECONFIG: the watcher is not started", flush=True)
        children = {name: subprocess.Popen(command) for name, command in commands.items()}
        print(f"running: {', '.join(children)} (Ctrl-C stops everything)", flush=True)
        try:
            while not stop.is_set():
                changed.wait()
                changed.clear()
                exited = [name for name, child in children.items() if child.poll() is not None]
                if exited:
                    print(f"{', '.join(exited)} exited; stopping", file=sys.stderr, flush=True)
                    break
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            codes = {name: child.wait(20) for name, child in children.items()}
    return 0 if stop.is_set() and all(code == 0 for code in codes.values()) else 1
