"""What the NATS server reports on ``connections.closed``, built for tests that hand a report to a component
as if the server had sent it (no client may publish there)."""

from __future__ import annotations

from schemas.events import BusConnection


def closed_advisory(connection: BusConnection, reason: str) -> bytes:
    """What the server reports on ``connections.closed`` when ``connection`` closes for ``reason``."""
    return (b'{"type":"io.nats.server.advisory.v1.client_disconnect","server":{"id":"%s"},"client":{"id":%d},'
            b'"reason":"%s"}') % (connection.server_id.encode(), connection.client_id, reason.encode())
