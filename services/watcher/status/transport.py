"""The status writer's own HTTP requests to the API server, on the event loop, through aiohttp.

Each status write is a small request whose answer the writer barely reads. Through the official client each
costs about 1 ms of CPU (its generated layers, urllib3 and a worker thread contending for the interpreter
lock with the loop); here, one ``aiohttp.ClientSession`` keeps the connections alive (at most ``size``, which
also bounds the requests in flight), writes and parses HTTP (its C parser), and the answer's JSON is read as
plain dicts. What to reach and how to authenticate come from the official client's ``Configuration`` (host,
TLS files, bearer token and its refresh hook, as the in-cluster and kubeconfig loaders set them); a
configuration this does not cover (a proxy, basic auth) gets no transport (:func:`transport_for`), and the
writer goes through the official client as before.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import kubernetes.client
from yarl import URL

from services.common.errors import RequestTimeout, RetryableError
from services.watcher.status.apierrors import failure_for_status

Obj = dict[str, Any]
#: seconds between two looks at the configuration's token (its refresh hook decides whether it changed)
AUTH_REFRESH = 5.0
_FIXED_HEADERS = {"Accept": "application/json", "User-Agent": "metalbus-watcher"}


class ApiTransport:
    """Requests to one API server over at most ``size`` keep-alive connections, ``size`` requests in flight.

    ``request_timeout`` bounds a request from asking to its answer read, a wait for a free connection
    included. The session is made on the first request (aiohttp wants a running loop). A request on a
    kept-alive connection the server closed at that moment is sent again by aiohttp for GET and DELETE only;
    a PATCH or POST fails as a :class:`RetryableError` and the writer writes again (aiohttp closes
    connections idle for 15 s itself, before the API server's own idle timeout)."""

    def __init__(self, configuration: kubernetes.client.Configuration, *, size: int = 16,
                 request_timeout: float = 10.0) -> None:
        self._base = configuration.host.rstrip("/")
        self._tls = urlsplit(self._base).scheme == "https"
        self._configuration = configuration
        self._ssl: ssl.SSLContext | bool = _ssl_context(configuration) if self._tls else True
        #: the name the server's certificate must carry when it is not the URL's host (kubeconfig's tls-server-name)
        self._server_hostname = (configuration.tls_server_name or None) if self._tls else None
        self._size = max(1, size)
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._auth: tuple[float, dict[str, str]] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def request(self, method: str, path: str, *, body: Obj | None = None,
                      content_type: str = "application/json", answer: bool = True) -> Obj:
        """The JSON answer of one request (``answer`` False: not decoded, empty); an answer other than 2xx
        raises the project's error for it, a network failure :class:`RetryableError`, no answer in time
        :class:`RequestTimeout`."""
        headers = self._auth_headers()
        payload = None
        if body is not None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            headers = {**headers, "Content-Type": content_type}
        session = self._session_now()
        try:
            # Kubernetes paths are plain ASCII with no characters to escape: the URL is taken as written
            async with session.request(method, URL(self._base + path, encoded=True), data=payload, headers=headers,
                                       server_hostname=self._server_hostname) as response:
                data = await response.read()  # read whole: the connection goes back to the pool for the next
                status, reason, answer_headers = response.status, response.reason or "", response.headers
        except TimeoutError as error:  # aiohttp's timeouts are TimeoutErrors, connecting included
            raise RequestTimeout(f"{method} {path}: no answer in {self._timeout.total} s") from error
        except (aiohttp.ClientError, OSError) as error:  # refused, reset, a TLS handshake that failed
            raise RetryableError(f"{method} {path}: {error!r}") from error
        if not 200 <= status < 300:
            raise failure_for_status(status, reason, answer_headers, data)
        return _json(data) if answer else {}

    async def close(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _session_now(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RetryableError("transport closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._size, limit_per_host=0, ssl=self._ssl)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, headers=_FIXED_HEADERS,
                                                  cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    def _auth_headers(self) -> dict[str, str]:
        """The authentication headers as the official client sends them (the bearer token, refreshed by its
        hook), asked of the configuration again at most every ``AUTH_REFRESH`` seconds."""
        now = time.monotonic()
        if self._auth is None or now - self._auth[0] >= AUTH_REFRESH:
            settings: Mapping[str, Any] = self._configuration.auth_settings()
            headers = {str(setting["key"]).title(): str(setting["value"]) for setting in settings.values()
                       if setting.get("in") == "header" and setting.get("value")}
            self._auth = (now, headers)
        return self._auth[1]


def _json(body: bytes) -> Obj:
    try:
        data = json.loads(body) if body else {}
    except ValueError as error:
        raise RetryableError(f"unreadable answer: {error}") from error
    return data if isinstance(data, dict) else {}


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
