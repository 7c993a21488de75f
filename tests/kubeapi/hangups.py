"""Notice watch clients that hang up, so their sessions end at once rather than at the next write.

One thread blocks in ``select`` over the sockets of open watch streams (plus a wake-up socket); a socket that
turns readable with end-of-file means the client is gone.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import threading
from typing import Literal

from tests.kubeapi.store import Store
from tests.kubeapi.watching import End, WatchSession

Op = tuple[Literal["add", "remove", "close"], socket.socket | None, WatchSession | None]


class HangupMonitor:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._ops: queue.SimpleQueue[Op] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="kubeapi-hangups", daemon=True)
        self._thread.start()

    def add(self, sock: socket.socket, session: WatchSession) -> None:
        self._send(("add", sock, session))

    def remove(self, sock: socket.socket) -> None:
        self._send(("remove", sock, None))

    def close(self) -> None:
        self._send(("close", None, None))
        self._thread.join()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _send(self, op: Op) -> None:
        self._ops.put(op)
        self._wake_w.send(b"x")

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    self._wake_r.recv(4096)
                    if not self._apply_ops():
                        return
                else:
                    self._check(key.fileobj, key.data)  # type: ignore[arg-type]

    def _apply_ops(self) -> bool:
        while True:
            try:
                kind, sock, session = self._ops.get_nowait()
            except queue.Empty:
                return True
            if kind == "close":
                return False
            try:
                if kind == "add":
                    self._selector.register(sock, selectors.EVENT_READ, session)  # type: ignore[arg-type]
                else:
                    self._selector.unregister(sock)  # type: ignore[arg-type]
            except (KeyError, ValueError, OSError):
                pass  # already closed, or already unregistered after a hang-up

    def _check(self, sock: socket.socket, session: WatchSession) -> None:
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        if not data:
            with self._store.cond:
                if session.stop is None and session.end is None:
                    session.stop = End.CLIENT_GONE
                    self._store.cond.notify_all()
