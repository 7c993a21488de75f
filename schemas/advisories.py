"""What the NATS server itself says on the bus (foreign payloads: unknown fields ignored).

The server publishes an advisory in the system account when a client connection closes
(``$SYS.ACCOUNT.<account>.DISCONNECT``); metalbus imports it into its own account as
``connections.closed``. Only the fields liveness reads are modelled.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import BusConnection

#: The reason the server gives when it closes its clients' connections because it is shutting down:
#: they reconnect to another server, so the announcer behind such a connection is not dead.
SERVER_SHUTDOWN = "Server Shutdown"


class _Foreign(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AdvisoryServer(_Foreign):
    id: str = Field(max_length=128)


class AdvisoryClient(_Foreign):
    id: int = Field(ge=0, description="the connection's client id on that server")
    acc: str = ""
    user: str = ""
    name: str = ""


class ClientDisconnected(_Foreign):
    """A client connection closed, and why (``Client Closed``, ``Stale Connection``, ``Server Shutdown``, ...)."""

    type: Literal["io.nats.server.advisory.v1.client_disconnect"]
    server: AdvisoryServer
    client: AdvisoryClient
    reason: str = Field(default="", max_length=256)

    @property
    def connection(self) -> BusConnection:
        return BusConnection(server_id=self.server.id, client_id=self.client.id)

    @property
    def server_shutting_down(self) -> bool:
        return self.reason == SERVER_SHUTDOWN
