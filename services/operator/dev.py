"""``metalbus dev``: NATS with JetStream and every metalbus service as local processes.

For development on one machine, with the accounts and the authenticator of a real deployment (each
service its own NATS user): the announcer runs as this host's node, the watcher uses
``--kubeconfig`` (or ``KUBECONFIG``) when given and is left out otherwise. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from services.common.credentials import BusCredentials
from services.common.nats_server import EmbeddedNats
from services.common.permissions import BusUser


def run_dev(*, port: int, store: Path | None, kubeconfig: str | None, node: str | None) -> int:
    stop = threading.Event()  # Ctrl-C or SIGTERM
    changed = threading.Event()  # any of the above, or a child exited

    def on_stop_signal(*_: object) -> None:
        stop.set()
        changed.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_stop_signal)
    signal.signal(signal.SIGCHLD, lambda *_: changed.set())
    with contextlib.ExitStack() as stack:
        if store is None:
            store = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="metalbus-dev-")))
        credentials = BusCredentials.create(store / "credentials")
        server = stack.enter_context(EmbeddedNats(port=port, store_dir=store, credentials=credentials))
        print(f"nats-server with JetStream at {server.plain_url}, metalbus's accounts, streams provisioned;"
              f" credentials in {credentials.directory}", flush=True)
        print(f"operator commands: export NATS_URL={server.url_for(BusUser.OPERATOR)}", flush=True)
        base = [sys.executable, "-m", "services.cli"]
        node = node or socket.gethostname()
        commands = {
            "ipam": [*base, "ipam", "--nats", server.url_for(BusUser.IPAM)],
            "announcer": [*base, "announcer", "--nats", server.node_url(node), "--node", node],
        }
        if kubeconfig:
            commands["watcher"] = [*base, "watcher", "--nats", server.url_for(BusUser.WATCHER),
                                   "--kubeconfig", kubeconfig]
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
