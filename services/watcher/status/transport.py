"""The status writer's own HTTP/1.1 requests to the API server, on the event loop.

Each status write is a small request whose answer the writer barely reads. Through the official client each
costs about 1 ms of CPU (its generated layers, urllib3 and a worker thread contending for the interpreter
lock with the loop); here it costs about a tenth of that: keep-alive connections of the writer's own, the
request written in one piece, the answer's JSON read as plain dicts. What to reach and how to authenticate
come from the official client's ``Configuration`` (host, TLS files, bearer token and its refresh hook, as
the in-cluster and kubeconfig loaders set them); a configuration this does not cover (a proxy, basic auth)
gets no transport (:func:`transport_for`), and the writer goes through the official client as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import kubernetes.client

from services.common.errors import RequestTimeout, RetryableError
from services.watcher.status.apierrors import failure_for_status

Obj = dict[str, Any]
_HEAD_LIMIT = 64 * 1024
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._-]*")
#: seconds between two looks at the configuration's token (its refresh hook decides whether it changed)
AUTH_REFRESH = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class ApiTransport:
    """Requests to one API server over at most ``size`` keep-alive connections."""

    def __init__(self, configuration: kubernetes.client.Configuration, *, size: int = 16,
                 request_timeout: float = 10.0) -> None:
        url = urlsplit(configuration.host)
        self._tls = url.scheme == "https"
        self._host = url.hostname or "localhost"
        self._port = url.port or (443 if self._tls else 80)
        self._prefix = url.path.rstrip("/")
        self._fixed_head = f"Host: {url.netloc}\r\nAccept: application/json\r\nUser-Agent: metalbus-watcher\r\n"
        self._auth: tuple[float, str] | None = None
        self._configuration = configuration
        self._ssl = _ssl_context(configuration) if self._tls else None
        self._server_hostname = (configuration.tls_server_name or self._host) if self._tls else None
        self._timeout = request_timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max(1, size))
        self._closed = False

    async def request(self, method: str, path: str, *, body: Obj | None = None,
                      content_type: str = "application/json", answer: bool = True) -> Obj:
        """The JSON answer of one request (``answer`` False: not read, empty); an answer other than 2xx raises
        the project's error for it."""
        sent = await self.send(method, path, body=body, content_type=content_type)
        if not 200 <= sent.status < 300:
            raise failure_for_status(sent.status, sent.reason, sent.headers, sent.body)
        return _json(sent.body) if answer else {}

    async def send(self, method: str, path: str, *, body: Obj | None = None,
                   content_type: str = "application/json") -> Answer:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        target = path if _PLAIN_PATH.fullmatch(path) else quote(path)  # Kubernetes names need no escape
        typed = f"Content-Type: {content_type}\r\n" if body is not None else ""
        request = (f"{method} {self._prefix}{target} HTTP/1.1\r\n{self._fixed_head}{self._auth_head()}{typed}"
                   f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload
        async with self._slots:
            if self._closed:
                raise RetryableError("transport closed")
            # a kept-alive connection the server has closed meanwhile fails at once: once more on a new one
            for attempt in range(2):
                try:
                    connection, reused = await self._connection()
                except TimeoutError as error:
                    raise RequestTimeout(f"{method} {path}: no connection in {self._timeout} s") from error
                except OSError as error:  # refused, unreachable, a TLS handshake that failed
                    raise RetryableError(f"{method} {path}: {error!r}") from error
                try:
                    async with asyncio.timeout(self._timeout):
                        answer, keep = await self._exchange(connection, request, method)
                except TimeoutError as error:
                    connection.close()
                    raise RequestTimeout(f"{method} {path}: no answer in {self._timeout} s") from error
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
                    connection.close()
                    if reused and attempt == 0 and not isinstance(error, ValueError):
                        continue
                    raise RetryableError(f"{method} {path}: {error!r}") from error
                except BaseException:
                    connection.close()  # cancelled mid-request: the connection's state is unknown
                    raise
                if keep and not self._closed:
                    self._idle.append(connection)
                else:
                    connection.close()
                return answer
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
            with contextlib.suppress(Exception):
                await connection.writer.wait_closed()

    def _auth_head(self) -> str:
        """The authentication headers as the official client sends them (the bearer token, refreshed by its
        hook), asked of the configuration again at most every ``AUTH_REFRESH`` seconds."""
        now = time.monotonic()
        if self._auth is None or now - self._auth[0] >= AUTH_REFRESH:
            settings: Mapping[str, Any] = self._configuration.auth_settings()
            lines = [f"{str(setting['key']).title()}: {setting['value']}\r\n" for setting in settings.values()
                     if setting.get("in") == "header" and setting.get("value")]
            self._auth = (now, "".join(lines))
        return self._auth[1]

    async def _connection(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if not connection.writer.is_closing() and not connection.reader.at_eof():
                return connection, True
            connection.close()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self._host, self._port, ssl=self._ssl, server_hostname=self._server_hostname,
                                    limit=_HEAD_LIMIT),
            self._timeout)
        return _Connection(reader, writer), False

    @staticmethod
    async def _exchange(connection: _Connection, request: bytes, method: str) -> tuple[Answer, bool]:
        connection.writer.write(request)
        reader = connection.reader
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = [*lines[0].split(" ", 2), ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().title()] = value.strip()
        if method == "HEAD" or status in ("204", "304"):
            body = b""
        elif headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = await _chunked(reader)
        elif "Content-Length" in headers:
            body = await reader.readexactly(int(headers["Content-Length"]))
        else:
            body = await reader.read()  # the body runs to the end of the connection
            headers["Connection"] = "close"
        keep = headers.get("Connection", "").lower() != "close" and version == "HTTP/1.1"
        return Answer(int(status), reason, headers, body), keep


def _json(body: bytes) -> Obj:
    try:
        data = json.loads(body) if body else {}
    except ValueError as error:
        raise RetryableError(f"unreadable answer: {error}") from error
    return data if isinstance(data, dict) else {}


async def _chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _ssl_context(configuration: kubernetes.client.Configuration) -> ssl.SSLContext:
    """TLS as the official client sets up urllib3: the CA file, the client certificate, verification."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


def transport_for(configuration: kubernetes.client.Configuration, *, size: int,
                  request_timeout: float) -> ApiTransport | None:
    """A transport for ``configuration``, or None when it needs what only the official client does."""
    if configuration.proxy or configuration.username or configuration.password:
        return None
    if urlsplit(configuration.host).scheme not in ("http", "https"):
        return None
    return ApiTransport(configuration, size=size, request_timeout=request_timeout)

