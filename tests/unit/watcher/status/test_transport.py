"""The status writer's own HTTP requests, against a small HTTP server on loopback that answers as told."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import kubernetes.client
import pytest

from services.common.errors import Conflict, Invalid, NotFound, RequestTimeout, RetryableError, TooManyRequests
from services.watcher.status.transport import ApiTransport, transport_for
from tests.tls import write_test_certificates

Reply = Callable[[bytes], bytes]


def plain(status: str, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", "Content-Type: application/json", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked(body: bytes) -> bytes:
    half = len(body) // 2
    parts = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (body[:half], body[half:]))
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + parts + b"0\r\n\r\n"


class Server:
    """Answers each request with ``reply(request)``; counts connections; closes after each answer if told."""

    def __init__(self, reply: Reply, *, close_after: bool = False, silent: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after
        self.silent = silent
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if self.silent:
                    await reader.read()  # no answer: until the client gives up and closes
                    break
                writer.write(self.reply(request))
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(server: Server, *, tls: ssl.SSLContext | None = None,
                  **configure: object) -> AsyncIterator[ApiTransport]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    configuration = kubernetes.client.Configuration()
    configuration.host = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    configuration.api_key = {"authorization": "Bearer first"}
    for name, value in configure.items():
        setattr(configuration, name, value)
    transport = ApiTransport(configuration, size=4, request_timeout=0.5)
    try:
        yield transport
    finally:
        await transport.close()
        listener.close()


async def test_answers_are_read_whole_and_connections_kept_alive() -> None:
    body = json.dumps({"metadata": {"name": "web", "resourceVersion": "7"}, "pad": "x" * 5000}).encode()
    replies = iter([plain("200 OK", body), chunked(body)])
    server = Server(lambda _: next(replies))
    async with serving(server) as transport:
        first = await transport.request("PATCH", "/api/v1/namespaces/default/services/web/status",
                                        body={"status": {}}, content_type="application/merge-patch+json")
        second = await transport.request("GET", "/api/v1/namespaces/default/services/web")
    assert first == second == json.loads(body)
    assert server.connections == 1
    patch = server.requests[0]
    assert patch.startswith(b"PATCH /api/v1/namespaces/default/services/web/status HTTP/1.1\r\n")
    assert b"Content-Type: application/merge-patch+json" in patch and b"Authorization: Bearer first" in patch
    assert patch.endswith(b'{"status":{}}')


async def test_a_connection_the_server_closed_is_replaced_without_a_failure() -> None:
    server = Server(lambda _: plain("200 OK", b"{}"), close_after=True)
    async with serving(server) as transport:
        for _ in range(3):
            assert await transport.request("GET", "/api/v1/namespaces/default/services/web") == {}
            await asyncio.sleep(0.01)  # the server's close reaches the client (no ordering promised without)
    assert server.connections == 3


async def test_answers_become_the_projects_errors() -> None:
    replies = iter([plain("409 Conflict", b"{}"), plain("404 Not Found", b"{}"), plain("410 Gone", b"{}"),
                    plain("429 Too Many Requests", b"{}", "Retry-After: 3"),
                    plain("503 Service Unavailable", b"{}"), plain("422 Unprocessable Entity", b'{"why": "bad"}'),
                    plain("200 OK", b"not json")])
    async with serving(Server(lambda _: next(replies))) as transport:
        with pytest.raises(Conflict):
            await transport.request("PATCH", "/x", body={})
        with pytest.raises(NotFound):
            await transport.request("GET", "/x")
        with pytest.raises(NotFound):
            await transport.request("GET", "/x")
        with pytest.raises(TooManyRequests) as refused:
            await transport.request("POST", "/x", body={})
        with pytest.raises(RetryableError) as unavailable:
            await transport.request("PATCH", "/x", body={})
        with pytest.raises(Invalid, match="bad"):
            await transport.request("PATCH", "/x", body={})
        with pytest.raises(RetryableError):
            await transport.request("GET", "/x")
    assert refused.value.retry_after == 3.0
    assert not isinstance(unavailable.value, TooManyRequests)


async def test_a_server_not_listening_is_a_retryable_failure() -> None:
    listener = await asyncio.start_server(lambda _reader, writer: writer.close(), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    transport = ApiTransport(configuration, size=2, request_timeout=0.5)
    try:
        with pytest.raises(RetryableError):
            await transport.request("GET", "/x")
    finally:
        await transport.close()
    with pytest.raises(RetryableError):  # closed: no new session
        await transport.request("GET", "/x")


async def test_requests_in_flight_share_at_most_size_connections() -> None:
    server = Server(lambda _: plain("200 OK", b"{}"))
    async with serving(server) as transport:  # size 4
        await asyncio.gather(*(transport.request("GET", f"/x/{index}") for index in range(40)))
    assert len(server.requests) == 40
    assert 1 <= server.connections <= 4


async def test_no_answer_in_time_is_a_timeout_and_the_token_is_refreshed_as_the_client_does() -> None:
    server = Server(lambda _: plain("200 OK", b"{}"), silent=True)

    def refresh(configuration: kubernetes.client.Configuration) -> None:
        configuration.api_key = {"authorization": "Bearer second"}

    async with serving(server, refresh_api_key_hook=refresh) as transport:
        with pytest.raises(RequestTimeout):
            await transport.request("GET", "/x")
    assert b"Authorization: Bearer second" in server.requests[0]


def test_a_proxy_or_basic_auth_keeps_the_official_client() -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = "https://10.0.0.1:6443"
    assert transport_for(configuration, size=4, request_timeout=1.0) is not None
    configuration.proxy = "http://proxy:3128"
    assert transport_for(configuration, size=4, request_timeout=1.0) is None


async def test_tls_with_the_configurations_ca_and_client_certificate(tmp_path: Path) -> None:
    files = write_test_certificates(tmp_path / "pki", hosts=["127.0.0.1"])
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(files / "tls.crt", files / "tls.key")
    server_tls.load_verify_locations(files / "ca.crt")
    server_tls.verify_mode = ssl.CERT_REQUIRED  # as an API server asks for the client's certificate
    server = Server(lambda _: plain("200 OK", b'{"kind": "Service"}'))
    async with serving(server, tls=server_tls, ssl_ca_cert=str(files / "ca.crt"),
                       cert_file=str(files / "tls.crt"), key_file=str(files / "tls.key")) as transport:
        assert await transport.request("GET", "/api/v1/namespaces/default/services/web") == {"kind": "Service"}
    other = write_test_certificates(tmp_path / "other", hosts=["127.0.0.1"])
    async with serving(Server(lambda _: plain("200 OK", b"{}")), tls=server_tls,
                       ssl_ca_cert=str(other / "ca.crt"), cert_file=str(files / "tls.crt"),
                       key_file=str(files / "tls.key")) as transport:
        with pytest.raises(RetryableError):  # a server the configured CA did not sign is refused
            await transport.request("GET", "/api/v1/namespaces/default/services/web")


async def test_tls_checks_the_configured_server_name_rather_than_the_address(tmp_path: Path) -> None:
    files = write_test_certificates(tmp_path / "pki", hosts=["kubernetes.default.svc"])
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(files / "tls.crt", files / "tls.key")
    answer = Server(lambda _: plain("200 OK", b'{"kind": "Service"}'))
    async with serving(answer, tls=server_tls, ssl_ca_cert=str(files / "ca.crt")) as transport:
        with pytest.raises(RetryableError):  # the certificate does not name 127.0.0.1
            await transport.request("GET", "/api/v1/namespaces/default/services/web")
    async with serving(answer, tls=server_tls, ssl_ca_cert=str(files / "ca.crt"),
                       tls_server_name="kubernetes.default.svc") as transport:
        assert await transport.request("GET", "/api/v1/namespaces/default/services/web") == {"kind": "Service"}
